// The facade every transport calls. Knows protobuf messages of the Open
// Inference Protocol, never gRPC: statuses are absl::Status, converted once
// at the transport's edge.
#ifndef DYTSERVE_SERVER_CORE_INFERENCE_ENGINE_H_
#define DYTSERVE_SERVER_CORE_INFERENCE_ENGINE_H_

#include <atomic>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "inference/grpc_service.pb.h"
#include "server/core/infer_task.h"
#include "server/core/model_repository.h"

namespace dytserve {

class InferenceEngine {
 public:
  struct Options {
    std::string server_name = "dytserve";
    std::string server_version;
    // Triton's strict readiness: ready only when every model found loaded.
    bool strict_readiness = true;
  };

  InferenceEngine(Options options, std::unique_ptr<ModelRepository> repository, size_t failed_models);
  ~InferenceEngine();

  // Validates `request` and queues it. On OK the engine owns the call and
  // will fill `response` and call `call.done` exactly once, later, from a
  // batch thread. On an error nothing was queued, `call.done` is never
  // called, and the caller answers with the returned status:
  // NOT_FOUND (model/version), INVALID_ARGUMENT (request vs config),
  // RESOURCE_EXHAUSTED (queue full), UNAVAILABLE (shutting down).
  absl::Status Submit(const inference::ModelInferRequest& request, inference::ModelInferResponse* response,
                      InferCall call);

  bool Live() const { return true; }
  bool Ready() const;
  bool ModelReady(absl::string_view name, absl::string_view version) const;
  inference::ServerMetadataResponse ServerMetadata() const;
  absl::StatusOr<inference::ModelMetadataResponse> ModelMetadata(absl::string_view name,
                                                                 absl::string_view version) const;

  const ModelRepository& repository() const { return *repository_; }

  // New calls get UNAVAILABLE; queued ones are completed with UNAVAILABLE.
  void Shutdown();

 private:
  const Options options_;
  std::unique_ptr<ModelRepository> repository_;
  const size_t failed_models_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_INFERENCE_ENGINE_H_
