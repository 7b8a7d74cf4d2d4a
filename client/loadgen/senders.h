// How the load generator sends one inference: unary gRPC through the client
// library, Triton's ModelStreamInfer streams, or the v2 REST endpoint with
// JSON or binary tensors. Every sender is asynchronous: InferAsync returns at
// once and `done` runs later on a sender's thread.
#ifndef DYTSERVE_CLIENT_LOADGEN_SENDERS_H_
#define DYTSERVE_CLIENT_LOADGEN_SENDERS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dytserve/client.h"

namespace dytserve::loadgen {

class Sender {
 public:
  using Done = std::function<void(absl::Status)>;
  virtual ~Sender() = default;
  // `inputs` must stay alive and unchanged while the sender exists (senders
  // may encode a request once and reuse it).
  virtual void InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) = 0;
};

// Unary ModelInfer through `client` (not owned).
std::unique_ptr<Sender> GrpcUnarySender(Client* client);
// `streams` ModelStreamInfer streams to `target`, requests spread over them.
// A non-empty `bearer_token` is sent as "authorization: Bearer <token>".
absl::StatusOr<std::unique_ptr<Sender>> GrpcStreamSender(const std::string& target, int streams,
                                                         const std::string& bearer_token = "");
// POST /v2/models/{m}/infer to `target` (host:port) over `connections`
// keep-alive connections; `binary`: Triton's binary tensors both ways.
absl::StatusOr<std::unique_ptr<Sender>> HttpSender(const std::string& target, bool binary, int connections,
                                                   absl::Duration timeout, const std::string& bearer_token = "");

// GET /v2/models/{model} from the REST endpoint at `target`.
absl::StatusOr<ModelMetadata> HttpModelMetadata(const std::string& target, const std::string& model,
                                                const std::string& bearer_token = "");

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_SENDERS_H_
