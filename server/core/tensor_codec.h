// Converts between Open Inference Protocol tensors and torch::Tensor, and
// validates a request against a model's spec. Every rejection is
// INVALID_ARGUMENT with a message naming the offending input and field.
#ifndef DYTSERVE_SERVER_CORE_TENSOR_CODEC_H_
#define DYTSERVE_SERVER_CORE_TENSOR_CODEC_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "inference/grpc_service.pb.h"
#include "server/core/datatype.h"
#include "server/core/model_config.h"

namespace dytserve {

struct DecodedRequest {
  // One tensor per config input, in the config's order (the model's
  // positional argument order). Generated inputs (masks) are left undefined
  // here and built with the batch.
  std::vector<at::Tensor> inputs;
  // Rows along the batch dimension; 1 for models without one.
  int64_t rows = 1;
  // Indices into ModelSpec::outputs, in the order the response lists them.
  std::vector<int> outputs;
};

absl::StatusOr<DecodedRequest> DecodeRequest(const inference::ModelInferRequest& request,
                                             const ModelSpec& spec);

// Appends `tensor` as an output named `name` with raw contents.
absl::Status AppendRawOutput(absl::string_view name, const at::Tensor& tensor,
                             inference::ModelInferResponse* response);

// Lower-level pieces, shared with the client side of tests.
absl::StatusOr<DataType> DataTypeOf(const at::Tensor& tensor);
at::ScalarType ScalarTypeOf(DataType type);
// Copies the tensor's elements, row-major and little-endian, into a string.
std::string ToRawBytes(const at::Tensor& tensor);
// Builds a tensor of `shape` and `type` from raw bytes; the size must match.
absl::StatusOr<at::Tensor> FromRawBytes(absl::string_view bytes, DataType type,
                                        const std::vector<int64_t>& shape);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_TENSOR_CODEC_H_
