// The Open Inference Protocol's v2 HTTP/REST endpoint over InferenceEngine:
// the same engine calls, limits, tokens and errors as the gRPC service,
// answered as JSON ({"error": ...} with 400, 401, 403, 404, 429, 503, ...).
//
//   GET  /v2/health/live | /v2/health/ready | /v2
//   GET  /v2/models/{m}[/versions/{v}][/ready | /config | /stats]
//   POST /v2/models/{m}[/versions/{v}]/infer      JSON, or Triton's binary tensors
//   GET  /v2/models/stats                          every model's statistics
//   POST /v2/repository/index | /v2/repository/models/{m}/load | .../unload   (admin token)
#ifndef DYTSERVE_SERVER_HTTP_REST_SERVICE_H_
#define DYTSERVE_SERVER_HTTP_REST_SERVICE_H_

#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/inference_engine.h"
#include "server/grpc/auth.h"
#include "server/http/http_server.h"

namespace dytserve {

// HTTP status of an engine status.
int HttpCode(const absl::Status& status);

class RestService {
 public:
  // None is owned; all must outlive the service. `on_models_changed` runs
  // after a load or unload.
  RestService(InferenceEngine* engine, const TokenAuth* inference_auth, const TokenAuth* admin_auth,
              const TokenAuth* feedback_auth, absl::Duration drain_timeout, std::function<void()> on_models_changed)
      : engine_(engine),
        inference_auth_(inference_auth),
        admin_auth_(admin_auth),
        feedback_auth_(feedback_auth),
        drain_timeout_(drain_timeout),
        on_models_changed_(std::move(on_models_changed)) {}
  // Joins the load/unload threads.
  ~RestService();

  void Handle(const HttpRequest& request, HttpRespond respond);

 private:
  void Infer(const HttpRequest& request, const std::string& model, const std::string& version, HttpRespond respond);
  // POST /v2/feedback {"id": "...", "label": 3 | "reward": 0.7 | "value": 1.5}
  // -> {"recorded": true|false}: Control/Feedback's twin.
  void Feedback(const HttpRequest& request, HttpRespond respond);
  // Runs `work` on a thread of its own (a load takes seconds), then answers.
  void Background(std::function<absl::Status()> work, HttpRespond respond);

  InferenceEngine* const engine_;
  const TokenAuth* const inference_auth_;
  const TokenAuth* const admin_auth_;
  const TokenAuth* const feedback_auth_;
  const absl::Duration drain_timeout_;
  const std::function<void()> on_models_changed_;
  absl::Mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_HTTP_REST_SERVICE_H_
