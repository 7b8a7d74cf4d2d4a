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
#include "server/core/feedback.h"
#include "server/core/infer_task.h"
#include "server/core/model_repository.h"
#include "server/core/router.h"
#include "server/core/shadow.h"

namespace dytserve {

class InferenceEngine {
 public:
  struct Options {
    std::string server_name = "dytserve";
    std::string server_version;
    // Triton's strict readiness: ready only when every model found loaded.
    bool strict_readiness = true;
    // Limits on one request, checked on the shapes it declares before
    // anything is decoded or allocated. 0: no limit beyond the model's own
    // (max_batch_size) and the transport's message size.
    int64_t max_request_elements = 0;  // summed over its inputs
    int64_t max_request_rows = 0;
    // Who served each answered request, for outcome feedback: at most this
    // many ids (0: no feedback), each for this long.
    size_t feedback_capacity = 100000;
    absl::Duration feedback_ttl = absl::Hours(1);
  };

  // `metrics` must outlive the engine; the engine's router creates the
  // metric handles of experiments with it.
  InferenceEngine(Options options, std::unique_ptr<ModelRepository> repository, ServerMetrics* metrics);
  ~InferenceEngine();

  // Validates `request` and queues it. On OK the engine owns the call and
  // will fill `response` and call `call.done` exactly once, later, from a
  // batch thread. On an error nothing was queued, `call.done` is never
  // called, and the caller answers with the returned status:
  // NOT_FOUND (model/version), INVALID_ARGUMENT (request vs config),
  // RESOURCE_EXHAUSTED (queue full), UNAVAILABLE (shutting down).
  //
  // A request may name an experiment instead of a model: the router picks an
  // arm, the response names the arm's model and version and carries the
  // parameters "experiment" and "arm"; shadow arms get a copy whose outcome
  // is only measured.
  //
  // Every response carries an id: the request's, or a new random one. Who
  // answered it is remembered for Feedback().
  absl::Status Submit(const inference::ModelInferRequest& request, inference::ModelInferResponse* response,
                      InferCall call);

  // Creates the experiments of <root>/experiments.pbtxt; each that fails is
  // listed in `failures` and, like a model that failed, keeps a strict
  // server unready. An unreadable or malformed file is the returned error.
  absl::Status LoadExperiments(const std::filesystem::path& root, std::vector<absl::Status>* failures);

  // Credits an outcome reported later to whoever served request `id`, and
  // counts it in dytserve_feedback_total. INVALID_ARGUMENT when the outcome
  // is out of range; otherwise what became of it. Unknown, expired and
  // duplicate ids are counted apart and credited to no arm.
  absl::StatusOr<FeedbackResult> Feedback(absl::string_view id, const Outcome& outcome);

  // Repository control (Triton's explicit mode): see ModelRepository. Both
  // refresh the experiments, so arms follow the versions now served.
  absl::StatusOr<std::vector<int64_t>> LoadModel(absl::string_view name, absl::Duration drain_timeout);
  absl::Status UnloadModel(absl::string_view name, absl::Duration drain_timeout);

  bool Live() const { return true; }
  bool Ready() const;
  bool ModelReady(absl::string_view name, absl::string_view version) const;
  inference::ServerMetadataResponse ServerMetadata() const;
  absl::StatusOr<inference::ModelMetadataResponse> ModelMetadata(absl::string_view name,
                                                                 absl::string_view version) const;
  // Triton's extensions. An experiment's config is its first serving arm's,
  // under the experiment's name. Statistics: an empty name lists every
  // model, an empty version every served version of the model.
  absl::StatusOr<inference::ModelConfigResponse> ModelConfig(absl::string_view name, absl::string_view version) const;
  absl::StatusOr<inference::ModelStatisticsResponse> ModelStatistics(absl::string_view name,
                                                                     absl::string_view version) const;
  // Triton's repository index: one entry per served version, and one for
  // each model that serves none (with its reason). `ready_only`: served only.
  inference::RepositoryIndexResponse RepositoryIndex(bool ready_only) const;

  const ModelRepository& repository() const { return *repository_; }
  ModelRepository& repository() { return *repository_; }
  Router& router() { return router_; }

  // New calls get UNAVAILABLE; queued ones are completed with UNAVAILABLE.
  void Shutdown();

 private:
  // Wraps `call->done` so that an answered request's server is remembered
  // under `id` before the transport answers (the response is gone after).
  void RememberOnAnswer(std::string id, Served served, inference::ModelInferResponse* response, InferCall* call);

  const Options options_;
  std::unique_ptr<ModelRepository> repository_;
  ServerMetrics* const metrics_;
  FeedbackStore feedback_;
  absl::StatusOr<std::unique_ptr<BatchTask>> MakeTask(ModelVersion& model, std::shared_ptr<RequestMetrics> metrics,
                                                       const inference::ModelInferRequest& request,
                                                       inference::ModelInferResponse* response, InferCall call,
                                                       absl::Time received);
  // The version whose spec describes `name` (metadata, config): the model's,
  // or an experiment's first serving arm's; `experiment` says which.
  absl::StatusOr<std::shared_ptr<ModelVersion>> Describing(absl::string_view name, absl::string_view version,
                                                           bool* experiment) const;
  absl::Status Schedule(ModelVersion& model, RequestMetrics& metrics, std::unique_ptr<BatchTask> task,
                        absl::Time received, bool may_run_inline);
  absl::Status SubmitToExperiment(const CompiledExperiment& experiment, const inference::ModelInferRequest& request,
                                  inference::ModelInferResponse* response, InferCall call, absl::Time received);
  // A task for the shadow arm holding its own copy of `request`'s inputs;
  // its outcome goes only to the shadow's metrics and `comparison`. Null
  // when the shadow refuses the request (recorded in its metrics).
  std::unique_ptr<BatchTask> MakeShadowTask(const RoutedArm& shadow, const inference::ModelInferRequest& request,
                                            absl::Time deadline, absl::Time received,
                                            std::shared_ptr<ShadowComparison> comparison);

  // Experiments of experiments.pbtxt that failed (models: the repository's index).
  std::atomic<size_t> failed_loads_;
  Router router_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_INFERENCE_ENGINE_H_
