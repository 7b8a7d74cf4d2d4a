# Sanitizer and fuzzing builds (docs/testing.md says how to run them).
#
#   DYTSERVE_SANITIZE   ""                  (default) no sanitizer
#                       "address,undefined" ASan + UBSan on every project target
#                       "thread"            TSan; only the torch-free tests are registered
#   DYTSERVE_FUZZ       ON: build tests/fuzz/request_fuzzer (libFuzzer; needs clang)
#
# The flags go on the project's own targets only. LibTorch, gRPC, protobuf and
# Abseil stay the uninstrumented Debian builds: ASan and UBSan work with
# uninstrumented libraries; TSan does not see synchronization inside them,
# which is why only the batcher tests (no LibTorch; Abseil's mutex annotated by
# tests/sanitizers/tsan_absl_annotations.cc) run under it.

set(DYTSERVE_SANITIZE "" CACHE STRING "Sanitizers for all project targets: empty, address,undefined, or thread")
set_property(CACHE DYTSERVE_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")
option(DYTSERVE_FUZZ "Build the libFuzzer request fuzzer and its CTest (needs clang)" OFF)
set(DYTSERVE_FUZZ_SECONDS 60 CACHE STRING "How long the request_fuzzer CTest fuzzes")

if(DYTSERVE_SANITIZE STREQUAL "address,undefined")
  # -fno-sanitize-recover: a UBSan finding aborts the process, so the test
  # that triggered it fails instead of printing a line nobody reads.
  set(DYTSERVE_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all)
elseif(DYTSERVE_SANITIZE STREQUAL "thread")
  set(DYTSERVE_SANITIZER_FLAGS -fsanitize=thread)
elseif(NOT DYTSERVE_SANITIZE STREQUAL "")
  message(FATAL_ERROR "DYTSERVE_SANITIZE='${DYTSERVE_SANITIZE}': use \"\", \"address,undefined\" or \"thread\"")
endif()

if(DYTSERVE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "DYTSERVE_FUZZ needs libFuzzer: configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(DYTSERVE_SANITIZE STREQUAL "thread")
    message(FATAL_ERROR "DYTSERVE_FUZZ goes with DYTSERVE_SANITIZE=address,undefined (or none), not thread")
  endif()
endif()

if(DYTSERVE_SANITIZER_FLAGS)
  list(APPEND DYTSERVE_SANITIZER_FLAGS -fno-omit-frame-pointer)
  add_compile_options(${DYTSERVE_SANITIZER_FLAGS})
  add_link_options(${DYTSERVE_SANITIZER_FLAGS})
  # For the few test assertions about latency, which a sanitizer's slowdown
  # breaks without saying anything about correctness.
  add_compile_definitions(DYTSERVE_SANITIZER_BUILD)
  message(STATUS "dytserve: sanitizers ${DYTSERVE_SANITIZE}")
endif()

# Runtime defaults (halt on error, suppression files) compiled into each
# executable, so that every way of starting one -- ctest, gtest discovery,
# an integration test spawning the server, a developer's shell -- gets them.
# ASAN_OPTIONS and friends in the environment still override them.
function(dytserve_add_sanitizer_defaults)
  if(NOT DYTSERVE_SANITIZER_FLAGS)
    return()
  endif()
  set(DYTSERVE_SANITIZER_DIR ${PROJECT_SOURCE_DIR}/tests/sanitizers)
  set(defaults ${PROJECT_BINARY_DIR}/sanitizer_defaults.cc)
  configure_file(${PROJECT_SOURCE_DIR}/tests/sanitizers/sanitizer_defaults.cc.in ${defaults} @ONLY)
  set(dirs ${PROJECT_SOURCE_DIR})
  while(dirs)
    list(POP_FRONT dirs dir)
    get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
    list(APPEND dirs ${subdirs})
    get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(target IN LISTS targets)
      get_target_property(type ${target} TYPE)
      if(type STREQUAL "EXECUTABLE")
        target_sources(${target} PRIVATE ${defaults})
      endif()
    endforeach()
  endwhile()
endfunction()
