// Intentionally empty: this is the build's libtorch.so (cmake/TorchWheel.cmake).
// The wheel's libtorch.so is link-time glue that NEEDS libtorch_cpu.so and
// libtorch_cuda.so (and exports pieces of GCC 13's libstdc++ that interpose on
// the system's). Ours NEEDS libtorch_cpu.so, and libtorch_cuda.so only in the
// CUDA build, so that an AOTInductor package's NEEDED libtorch.so resolves to
// it without loading the CUDA libraries in the CPU build.
