# SPDX-License-Identifier: Apache-2.0
# Small helpers in the style of abseil's AbseilHelpers.cmake.

# physpool_library(NAME name SRCS ... DEPS ...)
# Defines physpool_<name> with the alias physpool::<name>; headers are
# included as "<folder>/<file>.h" from the source root.
function(physpool_library)
  cmake_parse_arguments(PL "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(physpool_${PL_NAME} ${PL_SRCS})
  add_library(physpool::${PL_NAME} ALIAS physpool_${PL_NAME})
  target_include_directories(physpool_${PL_NAME} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
  target_link_libraries(physpool_${PL_NAME} PUBLIC ${PL_DEPS})
endfunction()

# physpool_test(NAME name SRCS ... DEPS ... [LABELS ...])
# A GoogleTest binary registered with ctest under its own name.
function(physpool_test)
  if(NOT PHYSPOOL_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(PT "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${PT_NAME} ${PT_SRCS})
  target_link_libraries(${PT_NAME} PRIVATE ${PT_DEPS} GTest::gtest_main)
  add_test(NAME ${PT_NAME} COMMAND ${PT_NAME})
  set_tests_properties(${PT_NAME} PROPERTIES LABELS "${PT_LABELS}")
endfunction()

# physpool_fuzzer(NAME name SRCS ... DEPS ...)
# A libFuzzer binary; only with PHYSPOOL_BUILD_FUZZERS (clang).
function(physpool_fuzzer)
  if(NOT PHYSPOOL_BUILD_FUZZERS)
    return()
  endif()
  cmake_parse_arguments(PF "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${PF_NAME} ${PF_SRCS})
  target_compile_options(${PF_NAME} PRIVATE -fsanitize=fuzzer)
  target_link_options(${PF_NAME} PRIVATE -fsanitize=fuzzer)
  target_link_libraries(${PF_NAME} PRIVATE ${PF_DEPS})
endfunction()
