// One inference request on its way through a batcher, and the function a
// model instance's batch thread runs on a batch of them.
#ifndef DYTSERVE_SERVER_CORE_INFER_TASK_H_
#define DYTSERVE_SERVER_CORE_INFER_TASK_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "inference/grpc_service.pb.h"
#include "server/core/batcher.h"
#include "server/core/tensor_codec.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

class Model;

// What a transport hands the engine with each call; nothing in it is gRPC.
struct InferCall {
  absl::Time deadline = absl::InfiniteFuture();
  // May be empty (no cancellation signal). Called from the batch thread.
  std::function<bool()> is_cancelled;
  // Called exactly once with the outcome, after the response is filled.
  std::function<void(absl::Status)> done;
  // From the transport's metadata (gRPC: "x-routing-key"); a request
  // parameter "routing_key" takes precedence. Empty: none.
  std::string routing_key;
  // The transport's thread may run the forward pass itself when the model
  // is idle (Batcher::Schedule's may_run_inline): a unary call's handler
  // has nothing else to do meanwhile; a stream's reader has.
  bool may_run_inline = false;
};

class InferTask : public BatchTask {
 public:
  // `response` is not owned and must outlive the call to `call.done`.
  // `model_metrics` keeps the in-flight gauge; the request's outcome, total
  // and queue time go to `request_metrics` (its experiment arm's series).
  InferTask(DecodedRequest request, inference::ModelInferResponse* response, InferCall call,
            std::shared_ptr<ModelMetrics> model_metrics, std::shared_ptr<RequestMetrics> request_metrics,
            absl::Time received_at);
  ~InferTask() override;

  int64_t rows() const override { return request_.rows; }
  absl::Time deadline() const override { return call_.deadline; }
  bool IsCancelled() const override { return call_.is_cancelled && call_.is_cancelled(); }
  void Complete(absl::Status status) override;

  const DecodedRequest& request() const { return request_; }
  inference::ModelInferResponse* response() { return response_; }
  absl::Time received_at() const { return received_at_; }
  RequestMetrics& request_metrics() { return *request_metrics_; }

 private:
  DecodedRequest request_;
  inference::ModelInferResponse* const response_;
  InferCall call_;
  std::shared_ptr<ModelMetrics> metrics_;
  std::shared_ptr<RequestMetrics> request_metrics_;
  const absl::Time received_at_;
  bool completed_ = false;
};

// Runs one batch on `model`: tasks whose non-batch input shapes agree are
// concatenated along dim 0 and share a forward pass; outputs are split back
// by rows. Completes every task. A model error fails only this batch's tasks,
// with INTERNAL and the model's message.
void RunInferBatch(Model& model, int instance, ModelMetrics& metrics, Batcher::Batch batch);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_INFER_TASK_H_
