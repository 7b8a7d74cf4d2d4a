// Model formats behind one interface. A ModelBackend is one loaded copy of
// one model version on one device; everything format-specific (TorchScript's
// freezing and DyT rewrite, AOTInductor's call-spec checks) stays inside its
// implementation. Model (model.h) and everything above it see only this.
#ifndef DYTSERVE_SERVER_CORE_BACKEND_H_
#define DYTSERVE_SERVER_CORE_BACKEND_H_

#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/model_config.h"

namespace dytserve {

enum class ModelFormat {
  kTorchScript,  // <version>/model.pt: torch.jit.save of a scripted or traced module
  kAotInductor,  // <version>/model.pt2: torch._inductor.aoti_compile_and_package
};

// "torchscript" or "torch_aoti": the config's `platform` values.
absl::string_view FormatName(ModelFormat format);
// "model.pt" or "model.pt2".
absl::string_view ModelFileName(ModelFormat format);
// What `platform` (config.pbtxt) asks for: nullopt when empty (found from the
// files), an error naming the field when it is not a known format.
absl::StatusOr<std::optional<ModelFormat>> FormatOfPlatform(const ModelSpec& spec);
// The format of <version_dir>: the config's platform if set (its file must
// exist), else whichever of model.pt and model.pt2 is there. Both, or
// neither, is NOT_FOUND / INVALID_ARGUMENT naming the folder.
absl::StatusOr<ModelFormat> FormatOfVersion(const std::filesystem::path& version_dir, const ModelSpec& spec);

struct BackendFacts {
  ModelFormat format = ModelFormat::kTorchScript;
  c10::Device device{c10::kCPU};
  // Parameters, buffers and constants, counted at load.
  int64_t weight_bytes = 0;
  // DyT subgraphs replaced by the fused operator, and of those, the ones
  // whose affine was folded into the next Linear (TorchScript only:
  // AOTInductor compiles DyT into its own fused kernels at export).
  int fused_dyt = 0;
  int folded_dyt = 0;
};

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  // Inputs in config order, batch dimension first, on facts().device;
  // outputs in config order, on any device. Errors: RESOURCE_EXHAUSTED when
  // an allocator ran out of memory (the caller may retry a smaller batch),
  // INTERNAL with the model's own message otherwise. Thread-compatible: one
  // batch thread per instance calls it.
  virtual absl::StatusOr<std::vector<at::Tensor>> Forward(std::vector<at::Tensor> inputs) = 0;

  virtual const BackendFacts& facts() const = 0;
};

// Loads `file` in `format` for `spec`, on the device the spec's
// instance_group asks for ("auto": CUDA when there is one, and for
// AOTInductor whatever the package was compiled for). Checks what the format
// can tell without running the model; Model::Load runs the sample check.
// Errors are INVALID_ARGUMENT naming the model and the field or file.
absl::StatusOr<std::unique_ptr<ModelBackend>> LoadBackend(const std::filesystem::path& file, ModelFormat format,
                                                          const ModelSpec& spec);

// A failed forward, as a status: RESOURCE_EXHAUSTED for out-of-memory (by
// exception type, or by the last line of the message, since allocator
// failures also arrive as plain errors through TorchScript's interpreter
// and AOTInductor's C shim), else INTERNAL. No backtrace in the message.
absl::Status ForwardFailure(const std::exception& e);

// Inputs built from the config, on the CPU: `rows` rows (ignored when the
// model is unbatched), variable dims of `length`; random normal floats or
// zeros, zero integers, and generated masks of ones (every position real).
std::vector<at::Tensor> SampleInputs(const ModelSpec& spec, int64_t rows, int64_t length, bool random);

// "model 'NAME': FIELD: WHAT", INVALID_ARGUMENT: the shape of every load error.
absl::Status ModelError(const ModelSpec& spec, absl::string_view field, absl::string_view what);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_BACKEND_H_
