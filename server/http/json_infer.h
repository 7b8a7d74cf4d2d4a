// The v2 REST protocol's JSON inference messages, converted to and from the
// protobuf messages the engine takes, including Triton's binary-tensor
// extension (a JSON header of Inference-Header-Content-Length bytes, then
// each binary tensor's bytes in order). Errors are INVALID_ARGUMENT naming
// the field.
#ifndef DYTSERVE_SERVER_HTTP_JSON_INFER_H_
#define DYTSERVE_SERVER_HTTP_JSON_INFER_H_

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "inference/grpc_service.pb.h"

namespace dytserve {

struct JsonInferRequest {
  inference::ModelInferRequest request;
  // Outputs to answer as binary (their "binary_data" parameter, or every
  // output with the request parameter "binary_data_output").
  std::set<std::string> binary_outputs;
  bool all_binary = false;
};

// `body` is the whole HTTP body; `header_length` the value of
// Inference-Header-Content-Length ("" when absent: all of it is JSON).
absl::StatusOr<JsonInferRequest> ParseInferRequest(absl::string_view body, absl::string_view header_length,
                                                   const std::string& model, const std::string& version);

struct JsonInferResponse {
  std::string body;
  // Set when binary tensors follow the JSON: its length.
  size_t json_length = 0;
  bool binary = false;
};
JsonInferResponse RenderInferResponse(const inference::ModelInferResponse& response, const JsonInferRequest& asked);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_HTTP_JSON_INFER_H_
