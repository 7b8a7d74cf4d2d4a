# LibTorch from the pinned PyPI torch wheel in the project's virtual
# environment (scripts/setup.sh), as one target: dytserve::torch.
#
# Why not find_package(Torch): the wheel is a CUDA 13.0 build, and its CMake
# config looks for a CUDA toolkit even when only the CPU libraries are wanted;
# with Debian's libtorch-dev installed it picked Debian's libc10.so; and its
# include folder carries Protobuf 3.13 headers, which must not shadow Debian's
# Protobuf 3.21 (the one runtime the process links). Here every path is
# pinned to the wheel, and Protobuf's headers are left out.
#
# CPU build (default): links libtorch_cpu.so and libc10.so only, plus a
# link-only libtorch.so of our own (torch_glue.cc), so that neither the
# server nor an AOTInductor package (whose .so lists libtorch.so as NEEDED)
# loads libtorch_cuda.so and the CUDA libraries behind it (+235 MB RSS,
# +15 shared libraries, measured). The wheel's libtorch_cpu.so still NEEDS
# libcudart and libcupti (Kineto), which come from the venv's nvidia wheels.
# CUDA build (DYTSERVE_WITH_CUDA): also libtorch_cuda.so, libc10_cuda.so and
# the wheel's own libcudart; our libtorch.so then NEEDS libtorch_cuda.so too.

set(DYTSERVE_VENV "${PROJECT_SOURCE_DIR}/.venv" CACHE PATH "The project's virtual environment (scripts/setup.sh)")
set(DYTSERVE_PYTHON "${DYTSERVE_VENV}/bin/python" CACHE FILEPATH "The venv's Python: exports models, runs model tests")
set(DYTSERVE_TORCH_VERSION 2.11.0)

file(GLOB _torch_dirs "${DYTSERVE_VENV}/lib/python3*/site-packages/torch")
list(LENGTH _torch_dirs _n)
if(NOT _n EQUAL 1 OR NOT EXISTS "${_torch_dirs}/lib/libtorch_cpu.so")
  message(FATAL_ERROR "dytserve: no torch wheel in DYTSERVE_VENV='${DYTSERVE_VENV}' (looked for "
                      "lib/python3*/site-packages/torch/lib/libtorch_cpu.so). Run scripts/setup.sh, or point "
                      "-DDYTSERVE_VENV at a virtual environment holding torch==${DYTSERVE_TORCH_VERSION}.")
endif()
set(DYTSERVE_TORCH_DIR "${_torch_dirs}" CACHE INTERNAL "")
set(DYTSERVE_TORCH_LIB_DIR "${DYTSERVE_TORCH_DIR}/lib")
get_filename_component(DYTSERVE_SITE_PACKAGES "${DYTSERVE_TORCH_DIR}" DIRECTORY)

file(STRINGS "${DYTSERVE_TORCH_DIR}/version.py" _torch_version_line REGEX "^__version__")
string(REGEX MATCH "'([0-9.]+)" _ "${_torch_version_line}")
if(NOT CMAKE_MATCH_1 STREQUAL DYTSERVE_TORCH_VERSION)
  message(FATAL_ERROR "dytserve: ${DYTSERVE_TORCH_DIR} is torch '${CMAKE_MATCH_1}', "
                      "the project pins ${DYTSERVE_TORCH_VERSION} (models/requirements.txt); run scripts/setup.sh")
endif()
message(STATUS "dytserve: LibTorch ${CMAKE_MATCH_1} from ${DYTSERVE_TORCH_DIR}")

# The wheel's headers without its google/ (Protobuf 3.13): a folder of links.
set(_inc "${CMAKE_BINARY_DIR}/torch-include")
file(MAKE_DIRECTORY "${_inc}")
file(GLOB _entries RELATIVE "${DYTSERVE_TORCH_DIR}/include" "${DYTSERVE_TORCH_DIR}/include/*")
foreach(_e IN LISTS _entries)
  if(NOT _e STREQUAL "google" AND NOT EXISTS "${_inc}/${_e}")
    file(CREATE_LINK "${DYTSERVE_TORCH_DIR}/include/${_e}" "${_inc}/${_e}" SYMBOLIC)
  endif()
endforeach()

function(_dytserve_torch_lib name file)
  add_library(${name} SHARED IMPORTED GLOBAL)
  set_target_properties(${name} PROPERTIES IMPORTED_LOCATION "${file}" IMPORTED_NO_SONAME FALSE)
endfunction()
_dytserve_torch_lib(dytserve_torch_cpu "${DYTSERVE_TORCH_LIB_DIR}/libtorch_cpu.so")
_dytserve_torch_lib(dytserve_c10 "${DYTSERVE_TORCH_LIB_DIR}/libc10.so")
_dytserve_torch_lib(dytserve_wheel_gomp "${DYTSERVE_TORCH_LIB_DIR}/libgomp.so.1")

# Where ld finds what the wheel's libraries NEED (libcudart, libcupti, ...):
# the nvidia-* wheels beside torch, which its RPATH names with $ORIGIN.
file(GLOB DYTSERVE_NVIDIA_LIB_DIRS "${DYTSERVE_SITE_PACKAGES}/nvidia/*/lib")
set(_rpath_link "")
foreach(_d IN LISTS DYTSERVE_NVIDIA_LIB_DIRS DYTSERVE_TORCH_LIB_DIR)
  string(APPEND _rpath_link ",-rpath-link,${_d}")
endforeach()

add_library(dytserve_torch INTERFACE)
add_library(dytserve::torch ALIAS dytserve_torch)
target_include_directories(dytserve_torch SYSTEM INTERFACE "${_inc}" "${_inc}/torch/csrc/api/include")
# The wheel is built with the C++11 ABI, as Debian's gRPC, Protobuf and Abseil are.
target_compile_definitions(dytserve_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
target_link_options(dytserve_torch INTERFACE "LINKER:${_rpath_link}")

# Our link-only libtorch.so (torch_glue.cc): it defines nothing and NEEDS
# the libraries the wheel's own libtorch.so needs, less libtorch_cuda.so in
# the CPU build. The dynamic loader matches an AOTInductor .so's NEEDED
# libtorch.so to it by soname. The wheel's libtorch.so is never linked: it
# also exports pieces of GCC 13's libstdc++ it was linked with
# (std::filesystem, std::chrono's tzdb, the string streams), which then
# interpose on the system libstdc++'s; std::filesystem::remove_all called
# through it jumped to address 0.
add_library(dytserve_torch_glue SHARED "${PROJECT_SOURCE_DIR}/server/ops/torch_glue.cc")
set_target_properties(dytserve_torch_glue PROPERTIES OUTPUT_NAME torch
  LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/lib")
target_link_options(dytserve_torch_glue PRIVATE "LINKER:${_rpath_link}")
if(DYTSERVE_WITH_CUDA)
  _dytserve_torch_lib(dytserve_torch_cuda "${DYTSERVE_TORCH_LIB_DIR}/libtorch_cuda.so")
  _dytserve_torch_lib(dytserve_c10_cuda "${DYTSERVE_TORCH_LIB_DIR}/libc10_cuda.so")
  find_library(DYTSERVE_WHEEL_CUDART NAMES libcudart.so.13 PATHS ${DYTSERVE_NVIDIA_LIB_DIRS} NO_DEFAULT_PATH REQUIRED)
  _dytserve_torch_lib(dytserve_wheel_cudart "${DYTSERVE_WHEEL_CUDART}")
  # libtorch_cuda holds no symbol we call by name either; without
  # --no-as-needed a linker that drops unused libraries would drop it, and
  # with it its registration of the CUDA backend.
  target_link_libraries(dytserve_torch_glue PRIVATE
    "$<LINK_LIBRARY:DYTSERVE_NO_AS_NEEDED,dytserve_torch_cuda,dytserve_torch_cpu>" dytserve_c10_cuda dytserve_c10)
  target_link_libraries(dytserve_torch INTERFACE
    "$<LINK_LIBRARY:DYTSERVE_NO_AS_NEEDED,dytserve_torch_glue,dytserve_torch_cuda>"
    dytserve_c10_cuda dytserve_torch_cpu dytserve_c10 dytserve_wheel_cudart)
else()
  target_link_libraries(dytserve_torch_glue PRIVATE
    "$<LINK_LIBRARY:DYTSERVE_NO_AS_NEEDED,dytserve_torch_cpu>" dytserve_c10)
  target_link_libraries(dytserve_torch INTERFACE
    "$<LINK_LIBRARY:DYTSERVE_NO_AS_NEEDED,dytserve_torch_glue>" dytserve_torch_cpu dytserve_c10)
endif()

set(CMAKE_LINK_LIBRARY_USING_DYTSERVE_NO_AS_NEEDED "LINKER:--push-state,--no-as-needed" "<LINK_ITEM>" "LINKER:--pop-state")
set(CMAKE_LINK_LIBRARY_USING_DYTSERVE_NO_AS_NEEDED_SUPPORTED TRUE)
