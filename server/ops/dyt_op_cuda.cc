// The CUDA implementation of dytserve::dyt. Built only with
// DYTSERVE_WITH_CUDA (a CUDA LibTorch); CPU builds never see this file.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "server/ops/dyt_kernel_cuda.h"
#include "server/ops/dyt_op.h"

namespace dytserve::ops {
namespace {

at::Tensor DytCuda(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
                   const c10::optional<at::Tensor>& bias, bool channels_last) {
  const at::ScalarType type = x.scalar_type();
  if (type != at::kFloat && type != at::kHalf && type != at::kBFloat16) {
    return Dyt(x, alpha, weight, bias, channels_last);  // checks, then the unfused path
  }
  const int64_t channels = CheckDytArgs(x, alpha, weight, bias, channels_last);
  c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc, at::MemoryFormat::Contiguous);
  const auto on_device = at::TensorOptions().device(x.device()).dtype(at::kFloat);
  const at::Tensor a = alpha.reshape({1}).to(on_device).contiguous();
  const at::Tensor w = weight.has_value() ? weight->reshape({channels}).to(on_device).contiguous() : at::Tensor();
  const at::Tensor b = bias.has_value() ? bias->reshape({channels}).to(on_device).contiguous() : at::Tensor();

  DytArgs args;
  args.x = xc.data_ptr();
  args.y = y.data_ptr();
  args.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  DescribeDytLayout(xc, channels, channels_last, &args);
  const cudaError_t error = LaunchDytCuda(args, a.data_ptr<float>(), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(error == cudaSuccess, "dytserve::dyt: CUDA launch failed: ", cudaGetErrorString(error));
  return y;
}

}  // namespace

void EnsureDytCudaRegistered() {}

TORCH_LIBRARY_IMPL(dytserve, CUDA, m) { m.impl("dyt", &DytCuda); }

}  // namespace dytserve::ops
