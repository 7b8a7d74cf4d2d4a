// TorchScript models (<version>/model.pt), scripted or traced by any PyTorch
// from 1.13 to the pinned one. At load: freezing (optimization.freeze) and
// the DyT rewrite (ops/dyt_fusion.h), each kept only if the result still
// matches the original on a warm-up input.
#ifndef DYTSERVE_SERVER_CORE_TORCHSCRIPT_BACKEND_H_
#define DYTSERVE_SERVER_CORE_TORCHSCRIPT_BACKEND_H_

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "server/core/backend.h"
#include "server/core/model_config.h"

namespace dytserve {

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadTorchScriptBackend(const std::filesystem::path& file,
                                                                     const ModelSpec& spec);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_TORCHSCRIPT_BACKEND_H_
