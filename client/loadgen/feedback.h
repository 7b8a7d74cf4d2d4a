// Outcome feedback from the load generator, so that a rehearsal on one
// machine shows real per-arm accuracy: requests go through the client
// library, and for a share of the answers the true label is reported back
// after a delay, the way labels arrive in production (a click, a review).
//
// Where the truth comes from:
// - a dataset (--dataset): each request is one held-out example whose label
//   is known (the default repository's digits_test.json);
// - synthetic (--feedback=synthetic:ARM=RATE,...): each arm is right with a
//   chosen probability, whatever it answered: the label sent is its top-1
//   prediction or, with probability 1 - RATE, another class.
#ifndef DYTSERVE_CLIENT_LOADGEN_FEEDBACK_H_
#define DYTSERVE_CLIENT_LOADGEN_FEEDBACK_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dytserve/client.h"
#include "loadgen/senders.h"

namespace dytserve::loadgen {

// Held-out examples with their labels (the layout export_repository.py writes).
struct Dataset {
  std::string name;
  std::vector<std::vector<Tensor>> inputs;  // one request per example
  std::vector<int64_t> labels;
};
// Reads `path`; errors name the file and the field.
absl::StatusOr<Dataset> LoadDataset(const std::string& path);

// "synthetic:ln=0.95,dyt=0.93" -> {ln: 0.95, dyt: 0.93}; rates in [0, 1].
absl::StatusOr<std::map<std::string, double>> ParseSyntheticFeedback(const std::string& flag);

struct FeedbackPlan {
  // Dataset mode: the label of each request's inputs, by their address in
  // the request source (inputs are passed by reference to senders).
  std::unordered_map<const std::vector<Tensor>*, int64_t> labels;
  // Synthetic mode: each arm's true rate.
  std::map<std::string, double> arm_rates;
  double fraction = 1;  // of the answers that get feedback
  absl::Duration delay = absl::ZeroDuration();
  uint64_t seed = 7;
};

struct FeedbackTally {
  int64_t sent = 0;
  int64_t recorded = 0;  // the server credited an arm
  int64_t failed = 0;    // the Feedback call failed
  std::map<std::string, int64_t> labels_by_arm;
  std::map<std::string, int64_t> correct_by_arm;
};

// Sends inferences through `client` (not owned) and, for a share of the
// answers, the outcome through `feedback` after the plan's delay.
class FeedbackSender : public Sender {
 public:
  FeedbackSender(Client* client, std::unique_ptr<Client> feedback, FeedbackPlan plan);
  // Sends the feedback still pending at once (its delay cut short) and
  // stops; call when no inference is in flight any more. Idempotent.
  void Finish();
  ~FeedbackSender() override;  // Finish()

  void InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) override;
  FeedbackTally tally() const;

 private:
  struct Pending {
    absl::Time due;
    std::string id;
    Client::FeedbackOutcome outcome;
  };
  void Loop();

  Client* const client_;
  const std::unique_ptr<Client> feedback_;
  const FeedbackPlan plan_;
  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);  // due times in order: one fixed delay
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  FeedbackTally tally_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Arg-max over the last dim of the first output's first vector; -1 when it
// is not FP32 scores.
int64_t TopOne(const InferResult& result, int64_t* classes);

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_FEEDBACK_H_
