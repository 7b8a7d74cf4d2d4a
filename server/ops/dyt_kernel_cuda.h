// The CUDA DyT kernel's launcher; plain pointers, so that the .cu file needs
// no LibTorch headers. Built only with DYTSERVE_WITH_CUDA.
#ifndef DYTSERVE_SERVER_OPS_DYT_KERNEL_CUDA_H_
#define DYTSERVE_SERVER_OPS_DYT_KERNEL_CUDA_H_

#include <cuda_runtime.h>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {

// Same arguments as the CPU kernels, on device memory; weight and bias are
// float on the device. `alpha_device` (one float on the device) replaces
// args.alpha when not null, so that no host sync is needed to read it.
// Launches on `stream`; returns the launch error.
cudaError_t LaunchDytCuda(const DytArgs& args, const float* alpha_device, cudaStream_t stream);

}  // namespace dytserve::ops

#endif  // DYTSERVE_SERVER_OPS_DYT_KERNEL_CUDA_H_
