// Outcome feedback: labels and rewards that arrive after the answer (a click,
// a review), credited to whoever served the request. The store remembers, per
// request id, the experiment, arm, model and version that answered and the
// top-1 prediction, bounded in entries and in age; an outcome takes its
// entry once. Knows nothing of gRPC or HTTP.
#ifndef DYTSERVE_SERVER_CORE_FEEDBACK_H_
#define DYTSERVE_SERVER_CORE_FEEDBACK_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace dytserve {

struct Served {
  std::string experiment;  // empty: the model was called by its own name
  std::string arm;         // empty with `experiment`
  std::string model;
  std::string version;
  // Index of the largest value in the first output's first row; -1 when that
  // output is not a floating-point vector of scores.
  int64_t top1 = -1;
};

// What a client reports about one request: exactly one of the three.
struct Outcome {
  enum class Kind { kLabel, kReward, kValue };
  Kind kind = Kind::kLabel;
  int64_t label = 0;  // kLabel: the true class, compared with Served::top1
  double number = 0;  // kReward: in [0, 1]; kValue: any finite number
};

// An error naming the bad field when `outcome` is out of range.
absl::Status CheckOutcome(const Outcome& outcome);

enum class FeedbackResult {
  kRecorded,   // the entry was taken; `served` says by whom
  kUnknown,    // never seen, or forgotten (evicted, or twice the TTL old)
  kExpired,    // seen, but older than the TTL
  kDuplicate,  // an outcome was already recorded for it
};
absl::string_view FeedbackResultName(FeedbackResult result);

class FeedbackStore {
 public:
  struct Options {
    // Entries held at most; the oldest go first. 0 turns the store off.
    size_t capacity = 100000;
    // Outcomes for requests older than this are refused as expired.
    absl::Duration ttl = absl::Hours(1);
    Clock* clock = RealClock::Get();  // not owned
  };
  explicit FeedbackStore(Options options);

  bool enabled() const { return options_.capacity > 0; }
  // The first answer for an id is the one remembered: a client that reuses
  // ids gets outcomes credited to the first request.
  void Remember(std::string id, Served served);
  // Takes the entry of `id` once; `served` is filled only on kRecorded.
  FeedbackResult Take(absl::string_view id, Served* served);
  size_t size() const;

 private:
  struct Entry {
    Served served;
    absl::Time at;
    bool taken = false;
  };
  // Forgets entries past capacity and those older than twice the TTL (an
  // outcome for one still within it is told "expired", not "unknown").
  void Prune(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> order_ ABSL_GUARDED_BY(mu_);  // ids, oldest first
};

// A request id for a request that came without one: 128 random bits in hex.
std::string NewRequestId();

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_FEEDBACK_H_
