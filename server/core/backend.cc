#include "server/core/backend.h"

#include <system_error>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/core/aoti_backend.h"
#include "server/core/tensor_codec.h"
#include "server/core/torchscript_backend.h"

namespace dytserve {

namespace fs = std::filesystem;

absl::string_view FormatName(ModelFormat format) {
  return format == ModelFormat::kAotInductor ? "torch_aoti" : "torchscript";
}

absl::string_view ModelFileName(ModelFormat format) {
  return format == ModelFormat::kAotInductor ? "model.pt2" : "model.pt";
}

absl::StatusOr<std::optional<ModelFormat>> FormatOfPlatform(const ModelSpec& spec) {
  const std::string& platform = spec.config.platform();
  if (platform.empty()) return std::optional<ModelFormat>();
  if (platform == "torchscript" || platform == "pytorch_libtorch") return std::optional(ModelFormat::kTorchScript);
  if (platform == "torch_aoti") return std::optional(ModelFormat::kAotInductor);
  return ModelError(spec, "platform", absl::StrCat("'", platform, "' is not a model format this server loads"));
}

absl::StatusOr<ModelFormat> FormatOfVersion(const fs::path& version_dir, const ModelSpec& spec) {
  absl::StatusOr<std::optional<ModelFormat>> wanted = FormatOfPlatform(spec);
  if (!wanted.ok()) return wanted.status();
  std::error_code ec;
  if (wanted->has_value()) {
    const fs::path file = version_dir / std::string(ModelFileName(**wanted));
    if (!fs::is_regular_file(file, ec)) {
      return absl::NotFoundError(absl::StrCat("model '", spec.name, "': platform '", spec.config.platform(),
                                              "' but ", file.string(), " is not there"));
    }
    return **wanted;
  }
  const bool pt = fs::is_regular_file(version_dir / "model.pt", ec);
  const bool pt2 = fs::is_regular_file(version_dir / "model.pt2", ec);
  if (pt && pt2) {
    return ModelError(spec, "platform",
                      absl::StrCat(version_dir.string(), " holds both model.pt and model.pt2; set platform to "
                                   "\"torchscript\" or \"torch_aoti\" to say which is served"));
  }
  if (!pt && !pt2) {
    return absl::NotFoundError(
        absl::StrCat("model '", spec.name, "': ", version_dir.string(), " holds neither model.pt nor model.pt2"));
  }
  return pt2 ? ModelFormat::kAotInductor : ModelFormat::kTorchScript;
}

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadBackend(const fs::path& file, ModelFormat format,
                                                          const ModelSpec& spec) {
  switch (format) {
    case ModelFormat::kAotInductor:
      return LoadAotiBackend(file, spec);
    case ModelFormat::kTorchScript:
      break;
  }
  return LoadTorchScriptBackend(file, spec);
}

absl::Status ForwardFailure(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  // The backtrace belongs in a debugger, not in a client's error message.
  const std::string what = c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
  // The last line only: TorchScript's traceback above it quotes source code,
  // which may say anything.
  absl::string_view last = absl::StripTrailingAsciiWhitespace(what);
  if (const size_t newline = last.rfind('\n'); newline != absl::string_view::npos) last.remove_prefix(newline + 1);
  const std::string lower = absl::AsciiStrToLower(last);
  const bool out_of_memory = dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
                             absl::StrContains(lower, "out of memory") ||
                             absl::StrContains(lower, "not enough memory");
  return out_of_memory ? absl::ResourceExhaustedError(what) : absl::InternalError(what);
}

std::vector<at::Tensor> SampleInputs(const ModelSpec& spec, int64_t rows, int64_t length, bool random) {
  std::vector<at::Tensor> inputs;
  for (const TensorSpec& in : spec.inputs) {
    std::vector<int64_t> shape = spec.WireShape(in);
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) shape[i] = (spec.batched() && i == 0) ? rows : length;
    }
    const at::ScalarType type = ScalarTypeOf(in.type);
    if (in.generated()) {
      inputs.push_back(at::ones(shape, at::TensorOptions().dtype(type)));
    } else if (random && at::isFloatingType(type)) {
      inputs.push_back(at::randn(shape, at::TensorOptions().dtype(at::kFloat)).to(type));
    } else {
      inputs.push_back(at::zeros(shape, at::TensorOptions().dtype(type)));
    }
  }
  return inputs;
}

absl::Status ModelError(const ModelSpec& spec, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "': ", field, ": ", what));
}

}  // namespace dytserve
