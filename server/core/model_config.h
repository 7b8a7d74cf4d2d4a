// Reading and validating config.pbtxt. A config is checked here on its own;
// model.h checks it against the TorchScript module it describes.
#ifndef DYTSERVE_SERVER_CORE_MODEL_CONFIG_H_
#define DYTSERVE_SERVER_CORE_MODEL_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "dytserve/v1/model_config.pb.h"
#include "server/core/datatype.h"

namespace dytserve {

struct TensorSpec {
  std::string name;
  DataType type;
  // Without the batch dimension; -1 is variable.
  std::vector<int64_t> dims;
  double pad_value = 0;
};

// A validated config with defaults applied, in the shape the server uses.
struct ModelSpec {
  std::string name;
  int max_batch_size = 0;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  int instance_count = 1;
  std::string device = "cpu";  // "cpu", "cuda:N" or "auto"
  v1::ModelConfig config;      // as written, defaults applied

  bool batched() const { return max_batch_size > 0; }
  // The shape a request sees: dims with a leading -1 batch dim when batched.
  std::vector<int64_t> WireShape(const TensorSpec& spec) const;
  const TensorSpec* FindInput(absl::string_view name) const;
  const TensorSpec* FindOutput(absl::string_view name) const;
};

// Parses protobuf text format strictly: unknown fields and syntax errors are
// INVALID_ARGUMENT naming `source`, the line and the column.
absl::StatusOr<v1::ModelConfig> ParseModelConfig(absl::string_view text, absl::string_view source);

// Checks a parsed config and applies defaults. `dir_name` is the model's
// directory, which an empty `name` defaults to and a set one must equal.
// Errors are INVALID_ARGUMENT naming the model and the field.
absl::StatusOr<ModelSpec> BuildModelSpec(v1::ModelConfig config, absl::string_view dir_name);

// Reads <model_dir>/config.pbtxt and builds its spec.
absl::StatusOr<ModelSpec> LoadModelSpec(const std::filesystem::path& model_dir);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_CONFIG_H_
