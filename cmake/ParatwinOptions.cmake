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
  target_compile_options(paratwin_options INTERFACE "$<$<COMPILE_LANGUAGE:CXX>:${_paratwin_san}>")
  target_link_options(paratwin_options INTERFACE ${_paratwin_san})
  # Tests shorten their exhaustive sweeps under the sanitizers (tests/test_sweep.hpp).
  target_compile_definitions(paratwin_options INTERFACE PARATWIN_SANITIZED=1)
endif()

# Adds a paratwin library `paratwin_<name>` with the alias `paratwin::<name>` from an explicit file list.
function(paratwin_add_library name)
  add_library(paratwin_${name} ${ARGN})
  add_library(paratwin::${name} ALIAS paratwin_${name})
  target_include_directories(paratwin_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(paratwin_${name} PUBLIC paratwin_options)
  set_target_properties(paratwin_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
