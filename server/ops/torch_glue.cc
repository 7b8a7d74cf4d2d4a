// Intentionally empty: this is the CPU build's libtorch.so (cmake/TorchWheel.cmake).
// The wheel's libtorch.so is link-time glue that NEEDS libtorch_cpu.so and
// libtorch_cuda.so; ours NEEDS only libtorch_cpu.so, so that an AOTInductor
// package's NEEDED libtorch.so resolves without loading the CUDA libraries.
