// Triton's model configuration (inference.ModelConfig) beside dytserve's own:
// a Triton config.pbtxt for a PyTorch model is read as it is, and the
// ModelConfig call answers Triton's tools in Triton's shape.
#ifndef DYTSERVE_SERVER_CORE_TRITON_CONFIG_H_
#define DYTSERVE_SERVER_CORE_TRITON_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dytserve/v1/model_config.pb.h"
#include "inference/model_config.pb.h"
#include "server/core/backend.h"
#include "server/core/model_config.h"

namespace dytserve {

// Reads `text` as a Triton config and converts it. INVALID_ARGUMENT naming
// `source` and every field that dytserve does not serve (each by its path,
// e.g. "input[0].reshape", "sequence_batching"), or every value it cannot
// honour; nothing is dropped silently.
absl::StatusOr<v1::ModelConfig> ParseTritonModelConfig(absl::string_view text, absl::string_view source);

// A served model's configuration in Triton's shape: what perf_analyzer and
// model_analyzer read (max_batch_size, inputs, outputs, dynamic batching,
// instances). Inputs the server generates (masks) are left out: clients never
// send them. `device` is where the instances run ("cpu", "cuda:N").
inference::ModelConfig ToTritonModelConfig(const ModelSpec& spec, ModelFormat format, absl::string_view device);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_TRITON_CONFIG_H_
