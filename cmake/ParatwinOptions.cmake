# One INTERFACE target carries the project's warning and sanitizer flags; every paratwin target links it.
add_library(paratwin_options INTERFACE)
add_library(paratwin::options ALIAS paratwin_options)

set(_paratwin_cxx_warnings -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
    -Wnon-virtual-dtor -Woverloaded-virtual)
target_compile_options(paratwin_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:${_paratwin_cxx_warnings}>")
if(PARATWIN_WERROR)
  target_compile_options(paratwin_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:-Werror>"
                                                    "$<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings>")
endif()

if(PARATWIN_SANITIZE)
  set(_paratwin_san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  # -O1 whatever the build type: the property tests sweep every configuration, and at -O0 under ASan they take
  # minutes. GCC 12's -Wmaybe-uninitialized misfires under ASan + optimisation inside libstdc++ (<regex>, via
  # Catch2); the Release build keeps that warning.
  target_compile_options(paratwin_options INTERFACE
                         "$<$<COMPILE_LANGUAGE:CXX>:${_paratwin_san};-O1;-Wno-maybe-uninitialized>")
  target_link_options(paratwin_options INTERFACE ${_paratwin_san})
endif()

# Adds a paratwin library `paratwin_<name>` with the alias `paratwin::<name>` from an explicit file list.
function(paratwin_add_library name)
  add_library(paratwin_${name} ${ARGN})
  add_library(paratwin::${name} ALIAS paratwin_${name})
  target_include_directories(paratwin_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(paratwin_${name} PUBLIC paratwin_options)
  set_target_properties(paratwin_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
