// Many async inference requests with a bounded number in flight, for the
// integration tests. Header-only: the support library does not link the client.
#ifndef DYTSERVE_TESTS_SUPPORT_ASYNC_REQUESTS_H_
#define DYTSERVE_TESTS_SUPPORT_ASYNC_REQUESTS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "dytserve/client.h"

namespace dytserve::testing {

struct Outcome {
  absl::Status status = absl::UnknownError("no answer");
  std::string arm;    // the response parameter "arm", if any
  std::string model;  // the model that answered
};

// Sends `n` requests to `name`, at most `window` in flight; `options(i)`
// (may be empty) gives request i's options, and `midway` (may be empty) runs
// once half were sent. State lives in a shared_ptr, so a late callback never
// touches a finished caller's stack.
inline std::vector<Outcome> SendAsync(Client& client, const std::string& name, const std::vector<Tensor>& inputs,
                                      int n, const std::function<InferOptions(int)>& options, int window = 64,
                                      const std::function<void()>& midway = {}) {
  struct State {
    absl::Mutex mu;
    int in_flight ABSL_GUARDED_BY(mu) = 0;
    int window = 0;
    std::vector<Outcome> outcomes;
  };
  auto state = std::make_shared<State>();
  state->window = window;
  state->outcomes.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    if (i == n / 2 && midway) midway();
    {
      absl::MutexLock lock(&state->mu);
      state->mu.Await(absl::Condition(
          +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->in_flight < s->window; }, state.get()));
      ++state->in_flight;
    }
    client.InferAsync(name, inputs, options ? options(i) : InferOptions{}, [state, i](absl::StatusOr<InferResult> r) {
      Outcome& o = state->outcomes[static_cast<size_t>(i)];
      o.status = r.status();
      if (r.ok()) {
        o.arm = r->parameters["arm"];
        o.model = r->model_name;
      }
      absl::MutexLock lock(&state->mu);
      --state->in_flight;
    });
  }
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->in_flight == 0; }, state.get()));
  return state->outcomes;
}


// Sends every one of `requests` to `model` at once (each its own call, all in
// flight together, so the batcher may join them) and returns their results in
// order.
inline std::vector<absl::StatusOr<InferResult>> InferAll(Client& client, const std::string& model,
                                                         const std::vector<std::vector<Tensor>>& requests) {
  struct State {
    absl::Mutex mu;
    size_t pending ABSL_GUARDED_BY(mu) = 0;
    std::vector<absl::StatusOr<InferResult>> results;
  };
  auto state = std::make_shared<State>();
  state->results.assign(requests.size(), absl::UnknownError("no answer"));
  {
    absl::MutexLock lock(&state->mu);
    state->pending = requests.size();
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    client.InferAsync(model, requests[i], {}, [state, i](absl::StatusOr<InferResult> r) {
      absl::MutexLock lock(&state->mu);
      state->results[i] = std::move(r);
      --state->pending;
    });
  }
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->pending == 0; }, state.get()));
  return std::move(state->results);
}

}  // namespace dytserve::testing

#endif  // DYTSERVE_TESTS_SUPPORT_ASYNC_REQUESTS_H_
