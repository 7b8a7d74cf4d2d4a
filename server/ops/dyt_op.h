// dytserve::dyt(x, alpha, weight?, bias?, channels_last) -> weight * tanh(alpha * x) + bias,
// fused: one pass over memory. Registered with TORCH_LIBRARY, so TorchScript
// graphs (and Python, after torch.ops.load_library) can call it.
#ifndef DYTSERVE_SERVER_OPS_DYT_OP_H_
#define DYTSERVE_SERVER_OPS_DYT_OP_H_

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

namespace dytserve::ops {

// The CPU implementation behind the operator.
// - x: any shape and strides; fp32, fp16 and bf16 take the fused kernel,
//   other floating types an unfused (but correct) path.
// - alpha: one element. weight, bias: `channels` elements (any shape of that
//   many, e.g. [C] or [C, 1, 1]) or absent.
// - channels_last: channels are x's last dim; otherwise dim 1 ([N, C, ...]).
// The result is contiguous, of x's dtype and shape.
at::Tensor Dyt(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
               const c10::optional<at::Tensor>& bias, bool channels_last);

struct DytArgs;

// Shared by the CPU and CUDA implementations: TORCH_CHECKs the arguments and
// returns the channel count; describes contiguous `xc` (dtype, layout) in `args`.
int64_t CheckDytArgs(const at::Tensor& x, const at::Tensor& alpha, const c10::optional<at::Tensor>& weight,
                     const c10::optional<at::Tensor>& bias, bool channels_last);
void DescribeDytLayout(const at::Tensor& xc, int64_t channels, bool channels_last, DytArgs* args);

enum class DytIsa { kAuto, kScalar, kAvx2, kAvx512 };
// Forces a kernel (tests cover each path); kAuto picks the best the CPU has.
// A forced ISA the CPU lacks falls back to the best available.
void SetDytIsa(DytIsa isa);
DytIsa ActiveDytIsa();
const char* DytIsaName(DytIsa isa);

// fp32 outputs of more bytes than this are written with non-temporal
// stores; negative restores the default, the last-level cache's size.
void SetDytStreamThreshold(int64_t bytes);

// Makes sure this file's operator registration is linked into the binary.
void EnsureDytRegistered();

}  // namespace dytserve::ops

#endif  // DYTSERVE_SERVER_OPS_DYT_OP_H_
