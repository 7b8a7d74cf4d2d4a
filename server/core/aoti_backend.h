// AOTInductor packages (<version>/model.pt2, torch._inductor.aoti_compile_and_package),
// one AOTIModelPackageLoader per instance: each extracts and loads its own
// copy of the package's shared object, so instances share no state.
//
// Checked at load, before anything runs: the package's device (a CUDA
// package on a CPU-only server is refused), its CPU instruction set against
// this host's, the PyTorch version that exported it (when the package says:
// dytserve's exporter records it), the count, names and order of its inputs
// and outputs (its call spec) against the config, and, when the exporter
// recorded them, their data types, dims and the largest batch.
#ifndef DYTSERVE_SERVER_CORE_AOTI_BACKEND_H_
#define DYTSERVE_SERVER_CORE_AOTI_BACKEND_H_

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/backend.h"
#include "server/core/model_config.h"

namespace dytserve {

// Metadata keys that models/dytserve_models/aoti.py writes into a package
// (inductor config aot_inductor.metadata). JSON values, except the version.
inline constexpr char kAotiTorchVersionKey[] = "dytserve.torch_version";
inline constexpr char kAotiInputsKey[] = "dytserve.inputs";    // [{"name","datatype","shape"}], -1 = variable
inline constexpr char kAotiOutputsKey[] = "dytserve.outputs";
inline constexpr char kAotiMaxBatchKey[] = "dytserve.max_batch_size";

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadAotiBackend(const std::filesystem::path& file,
                                                              const ModelSpec& spec);

// The package's metadata (AOTInductor's own keys and the exporter's), read
// without loading its shared object. For tools and tests.
absl::StatusOr<std::map<std::string, std::string>> ReadAotiMetadata(const std::filesystem::path& file);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_AOTI_BACKEND_H_
