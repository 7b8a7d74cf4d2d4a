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
  TORCH_CHECK(x.dim() >= (channels_last ? 1 : 2), "dytserve::dyt: x of rank ", x.dim(), " has no channel dim");
  TORCH_CHECK(alpha.numel() == 1, "dytserve::dyt: alpha must have one element, got ", alpha.numel());
  const int64_t channels = channels_last ? x.size(-1) : x.size(1);
  for (const auto* p : {&weight, &bias}) {
    TORCH_CHECK(!p->has_value() || (*p)->numel() == channels, "dytserve::dyt: weight/bias must have ", channels,
                " elements (the channel dim), got ", (*p)->numel());
  }
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
  args.dtype = type == at::kFloat ? DytDtype::kFloat : type == at::kHalf ? DytDtype::kHalf : DytDtype::kBFloat16;
  args.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  args.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  args.channels = channels;
  if (channels_last) {
    args.outer = channels == 0 ? 0 : xc.numel() / channels;
    args.inner = 1;
  } else {
    args.outer = xc.size(0);
    args.inner = channels == 0 || args.outer == 0 ? 0 : xc.numel() / (args.outer * channels);
  }
  const cudaError_t error = LaunchDytCuda(args, a.data_ptr<float>(), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(error == cudaSuccess, "dytserve::dyt: CUDA launch failed: ", cudaGetErrorString(error));
  return y;
}

}  // namespace

void EnsureDytCudaRegistered() {}

TORCH_LIBRARY_IMPL(dytserve, CUDA, m) { m.impl("dyt", &DytCuda); }

}  // namespace dytserve::ops
