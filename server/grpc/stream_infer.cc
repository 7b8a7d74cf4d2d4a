#include "server/grpc/stream_infer.h"

#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/grpc/status.h"

namespace dytserve {
namespace {

using Reactor = grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>;

class StreamInfer final : public Reactor {
 public:
  StreamInfer(grpc::CallbackServerContext* ctx, InferenceEngine* engine) : ctx_(ctx), engine_(engine) {
    const auto& metadata = ctx->client_metadata();
    if (auto it = metadata.find("x-routing-key"); it != metadata.end()) routing_key_.assign(it->second.data(), it->second.size());
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side, or the call is over
      Act(Locked([this] { reads_done_ = true; }));
      return;
    }
    // One request in flight per answer; the slot keeps both alive until the
    // engine has called back.
    auto* slot = new Slot{std::move(incoming_), {}};
    {
      absl::MutexLock lock(&mu_);
      ++pending_;
    }
    InferCall call;
    call.deadline = DeadlineOf(*ctx_);
    call.routing_key = routing_key_;
    call.is_cancelled = [ctx = ctx_] { return ctx->IsCancelled(); };
    call.done = [this, slot](absl::Status status) { Answer(slot, std::move(status)); };
    absl::Status submitted = engine_->Submit(slot->request, &slot->response, std::move(call));
    if (!submitted.ok()) Answer(slot, std::move(submitted));  // the engine did not take it
    incoming_.Clear();
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    Act(Locked([this, ok] {
      outgoing_.pop_front();
      writing_ = false;
      if (!ok) {
        // The stream is gone (cancelled, or the client left): what is left
        // can no longer be delivered.
        broken_ = true;
        outgoing_.clear();
      }
    }));
  }

  void OnCancel() override {
    Act(Locked([this] { broken_ = true; }));
  }

  void OnDone() override {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      last = pending_ == 0;
    }
    if (last) delete this;
  }

 private:
  struct Slot {
    inference::ModelInferRequest request;
    inference::ModelInferResponse response;
  };
  // What to do once the lock is released: gRPC calls are never made under it
  // (a reaction may run inline and take it again).
  struct Next {
    const inference::ModelStreamInferResponse* write = nullptr;
    bool finish = false;
  };

  template <typename F>
  Next Locked(F change) {
    absl::MutexLock lock(&mu_);
    change();
    return Decide();
  }

  Next Decide() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Next next;
    if (finished_ || writing_) return next;
    if (!outgoing_.empty() && !broken_) {
      writing_ = true;
      next.write = &outgoing_.front();  // a deque keeps its front in place while others are added
      return next;
    }
    if (reads_done_ && pending_ == 0) {
      finished_ = true;
      next.finish = true;
    }
    return next;
  }

  void Act(const Next& next) {
    if (next.write != nullptr) StartWrite(next.write);
    if (next.finish) Finish(grpc::Status::OK);
  }

  void Answer(Slot* slot, absl::Status status) {
    inference::ModelStreamInferResponse answer;
    if (status.ok()) {
      *answer.mutable_infer_response() = std::move(slot->response);
    } else {
      answer.set_error_message(std::string(status.message()));
      // Which request failed, as Triton does: the id travels with the error.
      inference::ModelInferResponse* r = answer.mutable_infer_response();
      r->set_model_name(slot->request.model_name());
      r->set_model_version(slot->request.model_version());
      r->set_id(slot->request.id());
    }
    delete slot;
    bool last = false;
    Next next;
    {
      absl::MutexLock lock(&mu_);
      if (!broken_ && !finished_) outgoing_.push_back(std::move(answer));
      --pending_;
      next = Decide();
      last = done_ && pending_ == 0;
    }
    if (last) {
      delete this;  // gRPC finished with the call before this answer came
      return;
    }
    Act(next);
  }

  grpc::CallbackServerContext* const ctx_;
  InferenceEngine* const engine_;
  std::string routing_key_;
  inference::ModelInferRequest incoming_;  // only the reading side touches it

  absl::Mutex mu_;
  std::deque<inference::ModelStreamInferResponse> outgoing_ ABSL_GUARDED_BY(mu_);
  int pending_ ABSL_GUARDED_BY(mu_) = 0;  // submitted, not yet answered
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// A stream refused before it starts (its token check failed).
class Refused final : public Reactor {
 public:
  explicit Refused(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

Reactor* StartStreamInfer(grpc::CallbackServerContext* ctx, InferenceEngine* engine, absl::Status auth) {
  if (!auth.ok()) return new Refused(auth);
  return new StreamInfer(ctx, engine);
}

}  // namespace dytserve
