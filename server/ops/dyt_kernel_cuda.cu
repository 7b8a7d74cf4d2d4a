// One pass over memory: each thread handles 4 consecutive elements with one
// vector load and one vector store when the tensor allows (length and
// pointers multiples of 4 elements), else one element per thread.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "server/ops/dyt_kernel_cuda.h"

namespace dytserve::ops {
namespace {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__half v) { return __half2float(v); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

struct Params {
  float alpha;
  const float* alpha_device;
  const float* weight;
  const float* bias;
  int64_t channels;
  int64_t inner;  // 1: channels last
  int64_t numel;
};

__device__ __forceinline__ float Apply(const Params& p, float alpha, float x, int64_t index) {
  const int64_t channel = p.inner == 1 ? index % p.channels : (index / p.inner) % p.channels;
  const float w = p.weight ? p.weight[channel] : 1.0f;
  const float b = p.bias ? p.bias[channel] : 0.0f;
  return fmaf(tanhf(alpha * x), w, b);
}

// Storage of 4 elements of T, loaded and stored as one transaction.
template <typename T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};

template <typename T>
__global__ void DytVec4(const T* __restrict__ x, T* __restrict__ y, Params p) {
  const float alpha = p.alpha_device ? *p.alpha_device : p.alpha;
  const int64_t packs = p.numel / 4;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < packs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Pack4<T> in = reinterpret_cast<const Pack4<T>*>(x)[i];
    Pack4<T> out;
#pragma unroll
    for (int k = 0; k < 4; ++k) out.v[k] = FromFloat<T>(Apply(p, alpha, ToFloat(in.v[k]), i * 4 + k));
    reinterpret_cast<Pack4<T>*>(y)[i] = out;
  }
}

template <typename T>
__global__ void DytScalar(const T* __restrict__ x, T* __restrict__ y, Params p) {
  const float alpha = p.alpha_device ? *p.alpha_device : p.alpha;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = FromFloat<T>(Apply(p, alpha, ToFloat(x[i]), i));
  }
}

template <typename T>
cudaError_t Launch(const DytArgs& a, const float* alpha_device, cudaStream_t stream) {
  Params p{a.alpha, alpha_device, a.weight, a.bias, a.channels, a.inner,
           a.inner == 1 ? a.outer * a.channels : a.outer * a.channels * a.inner};
  if (p.numel == 0) return cudaSuccess;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  constexpr int kThreads = 256;
  const bool aligned = p.numel % 4 == 0 && reinterpret_cast<uintptr_t>(x) % (4 * sizeof(T)) == 0 &&
                       reinterpret_cast<uintptr_t>(y) % (4 * sizeof(T)) == 0;
  const int64_t work = aligned ? p.numel / 4 : p.numel;
  const int blocks = static_cast<int>(work / kThreads + 1 < 65535 ? work / kThreads + 1 : 65535);
  if (aligned) {
    DytVec4<T><<<blocks, kThreads, 0, stream>>>(x, y, p);
  } else {
    DytScalar<T><<<blocks, kThreads, 0, stream>>>(x, y, p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchDytCuda(const DytArgs& args, const float* alpha_device, cudaStream_t stream) {
  switch (args.dtype) {
    case DytDtype::kFloat: return Launch<float>(args, alpha_device, stream);
    case DytDtype::kHalf: return Launch<__half>(args, alpha_device, stream);
    case DytDtype::kBFloat16: return Launch<__nv_bfloat16>(args, alpha_device, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace dytserve::ops
