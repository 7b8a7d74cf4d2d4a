// dytserve::Client: a gRPC client for any Open Inference Protocol (KServe v2)
// server, dytserve first among them.
//
// One or many endpoints (requests go round-robin across them), optional TLS,
// a default deadline, sync and async (callback) inference, metadata and
// grpc.health.v1 health. Thread-safe: share one Client across threads.
#ifndef DYTSERVE_CLIENT_CLIENT_H_
#define DYTSERVE_CLIENT_CLIENT_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dytserve/experiment.h"
#include "dytserve/tensor.h"

namespace inference {
class ModelInferRequest;
}  // namespace inference

namespace dytserve {

struct ClientOptions {
  // At least one. Several "host:port" endpoints share one channel whose
  // round-robin policy spreads calls over the replicas that are up (hosts are
  // resolved once, at Create). One endpoint may also be any gRPC target,
  // e.g. "dns:///dytserve.ns.svc:8001" (a headless Service): round-robin over
  // every address it resolves to, re-resolved as pods come and go.
  std::vector<std::string> endpoints;
  // Attempts per inference or metadata call when the answer is UNAVAILABLE
  // (a replica going away or draining) or a CANCELLED the server sent (a
  // call that reached a replica as it shut down): gRPC retries on another
  // replica with a short backoff. 1 turns retries off; at most 5.
  int max_attempts = 3;
  bool tls = false;
  // PEM roots to trust; empty uses the system's. Client cert/key enable mTLS.
  std::string tls_root_certs;
  std::string tls_client_cert;
  std::string tls_client_key;
  // Sent as "authorization: Bearer <token>" when not empty.
  std::string bearer_token;
  absl::Duration default_deadline = absl::Seconds(30);
  int max_message_mb = 64;
};

struct InferOptions {
  std::string model_version;         // empty: the server's choice
  std::vector<std::string> outputs;  // empty: every output
  std::string request_id;
  // String request parameters; "routing_key" makes experiment routing sticky.
  std::map<std::string, std::string> parameters;
  // Extra gRPC metadata (lower-case keys), e.g. "x-routing-key".
  std::map<std::string, std::string> metadata;
  // Server-side time budget, sent as the int64 parameter "timeout_us"; it can
  // only shorten the model's default_timeout_us. 0: not sent.
  int64_t timeout_us = 0;
  absl::Duration deadline = absl::ZeroDuration();  // zero: the client default
};

struct InferResult {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::map<std::string, std::string> parameters;  // every kind printed as text
  std::vector<Tensor> outputs;

  const Tensor* Find(absl::string_view name) const;
};

struct TensorInfo {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;  // -1: variable (the batch dim included)
};

struct ModelMetadata {
  std::string name;
  std::vector<std::string> versions;
  std::string platform;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
};

struct ServerMetadata {
  std::string name;
  std::string version;
  std::vector<std::string> extensions;
};

enum class HealthStatus { kUnknown, kServing, kNotServing, kServiceUnknown };
const char* HealthStatusName(HealthStatus status);

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();

  absl::StatusOr<InferResult> Infer(absl::string_view model, const std::vector<Tensor>& inputs,
                                    const InferOptions& options = {});
  // `done` runs once, on a gRPC thread; keep it short. Destroying the Client
  // waits for the callbacks of calls still in flight to return.
  void InferAsync(absl::string_view model, const std::vector<Tensor>& inputs, const InferOptions& options,
                  std::function<void(absl::StatusOr<InferResult>)> done);

  absl::StatusOr<bool> ServerLive();
  absl::StatusOr<bool> ServerReady();
  absl::StatusOr<bool> ModelReady(absl::string_view model, absl::string_view version = "");
  absl::StatusOr<ServerMetadata> GetServerMetadata();
  absl::StatusOr<ModelMetadata> GetModelMetadata(absl::string_view model, absl::string_view version = "");
  // grpc.health.v1 Check; `service` "" is the whole server, else a model name.
  absl::StatusOr<HealthStatus> Health(absl::string_view service = "");

  // dytserve.v1.Control; the server checks the bearer token when it runs
  // with --admin_token_file.
  absl::StatusOr<Experiment> CreateExperiment(const Experiment& experiment);
  // Replaces the experiment's arms as a whole.
  absl::StatusOr<Experiment> UpdateExperiment(const Experiment& experiment);
  absl::StatusOr<Experiment> GetExperiment(absl::string_view name);
  absl::StatusOr<std::vector<Experiment>> ListExperiments();
  absl::Status DeleteExperiment(absl::string_view name);
  // Brings back an arm a guardrail took out (every endpoint), and what each
  // serving arm's policy and guardrails know now (the first endpoint).
  absl::Status ResumeArm(absl::string_view experiment, absl::string_view arm);
  absl::StatusOr<std::vector<ArmStatus>> GetExperimentState(absl::string_view experiment);
  // The model repository (Triton's explicit model control). Load and unload
  // go to every endpoint; a load that fails leaves the served versions.
  absl::StatusOr<std::vector<RepositoryModel>> RepositoryIndex();
  absl::StatusOr<std::vector<int64_t>> LoadModel(absl::string_view name);
  absl::Status UnloadModel(absl::string_view name);

  // Reports the outcome of the request whose response carried `id` (set one
  // of label, reward or value). The server checks the bearer token against
  // its --feedback_token_file. Each endpoint is asked in turn until one says
  // it served the request: true then; false when none did (unknown, expired
  // or already judged; those replicas count it as unknown).
  struct FeedbackOutcome {
    std::optional<int64_t> label;
    std::optional<double> reward;  // in [0, 1]
    std::optional<double> value;
  };
  absl::StatusOr<bool> Feedback(absl::string_view id, const FeedbackOutcome& outcome);

  // Builds the wire request Infer would send; exposed for tools that need the
  // protocol message itself (load generators, tests).
  static void BuildRequest(absl::string_view model, const std::vector<Tensor>& inputs, const InferOptions& options,
                           inference::ModelInferRequest* request);

  // The library's own state (src/client_impl.h); opaque to users.
  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dytserve

#endif  // DYTSERVE_CLIENT_CLIENT_H_
