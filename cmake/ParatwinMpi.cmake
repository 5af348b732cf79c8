# MPI (optional): `mpirun paratwin plan` splits layouts over ranks, `mpirun paratwin run` starts one
# process per node or GPU (cli/mpi_world.*). PARATWIN_ENABLE_MPI=AUTO uses
# MPI when find_package finds it (Debian: libopenmpi-dev), ON requires it, OFF never uses it. Sets PARATWIN_HAVE_MPI.
set(PARATWIN_ENABLE_MPI AUTO CACHE STRING "Use MPI for mpirun runs: ON, OFF or AUTO (on when MPI is found)")
set_property(CACHE PARATWIN_ENABLE_MPI PROPERTY STRINGS ON OFF AUTO)
set(PARATWIN_HAVE_MPI OFF)
# paratwin calls MPI's C API only: no link to the deprecated C++ bindings (libmpi_cxx), which not every
# distribution's Open MPI ships.
set(MPI_CXX_SKIP_MPICXX ON)
if(PARATWIN_ENABLE_MPI STREQUAL "ON")
  find_package(MPI REQUIRED COMPONENTS CXX)
  set(PARATWIN_HAVE_MPI ON)
elseif(PARATWIN_ENABLE_MPI STREQUAL "AUTO")
  find_package(MPI QUIET COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(PARATWIN_HAVE_MPI ON)
  endif()
elseif(NOT PARATWIN_ENABLE_MPI STREQUAL "OFF")
  message(FATAL_ERROR "PARATWIN_ENABLE_MPI must be ON, OFF or AUTO, not '${PARATWIN_ENABLE_MPI}'")
endif()
