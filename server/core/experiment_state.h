// What an experiment learns while it runs: each serving arm's reward (for an
// adaptive policy), requests, errors, latency and labelled accuracy (for the
// guardrails), and whether a guardrail took the arm out. Unlike the compiled
// experiment (an immutable snapshot), this state is shared by every snapshot
// of one experiment: an update, a hot reload or a model reload keeps it, and
// it can be saved and restored across restarts.
#ifndef DYTSERVE_SERVER_CORE_EXPERIMENT_STATE_H_
#define DYTSERVE_SERVER_CORE_EXPERIMENT_STATE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dytserve/v1/control.pb.h"
#include "server/core/routing.h"

namespace dytserve {

// Latency buckets for the p99 guardrail: upper bounds in ms, log-spaced.
inline constexpr std::array<double, 28> kArmLatencyBoundsMs = {
    0.25, 0.5, 0.75, 1,   1.5,  2,    3,    4,    5,    7.5,  10,    15,    20,    30,
    40,   50,  75,   100, 150,  200,  300,  500,  750,  1000, 2000,  5000,  10000, 60000};

class ExperimentState {
 public:
  // Told when a guardrail takes an arm out (to log and count it), and with
  // each arm's share after an evaluation (a gauge). May be empty.
  struct Hooks {
    std::function<void(const std::string& arm, const std::string& rule, const std::string& why)> on_trip;
    std::function<void(const std::string& arm, double share, bool tripped)> on_share;
  };
  // `seed` 0: a random generator; otherwise a fixed one (simulations).
  ExperimentState(std::string experiment, Hooks hooks, uint64_t seed = 0);

  // (Re)applies a configuration: arms keep their figures by name, new arms
  // start empty, removed ones are forgotten. Call before routing with it.
  void Configure(const v1::Experiment& config);

  // Whether requests can be routed on the configured weights alone (fixed
  // policy, no arm taken out): the hot path then skips this state.
  bool Plain() const;
  // Index of the serving arm (configuration order) for a request without a
  // routing key.
  size_t PickUnkeyed();
  // With a routing key: the configured weights, arms taken out at 0, so a
  // key keeps its arm while that arm serves.
  std::vector<WeightedArm> KeyedWeights() const;

  // A serving arm answered (by index, in configuration order).
  void OnAnswered(size_t arm, bool ok, absl::Duration latency);
  // Feedback for a request the arm named `arm` served: a label that was
  // correct or not, or a reward in [0, 1].
  void OnLabel(absl::string_view arm, bool correct);
  void OnReward(absl::string_view arm, double reward);

  // Brings an arm a guardrail took out back, its guardrail figures reset.
  absl::Status Resume(absl::string_view arm);

  v1::ExperimentState Snapshot() const;
  // Takes the figures of a saved state for the arms it names that exist.
  void Restore(const v1::ExperimentState& saved);

 private:
  struct Arm {
    std::string name;
    uint32_t weight = 0;
    uint64_t seed = 0;
    double successes = 0;  // reward
    double trials = 0;
    uint64_t requests = 0;
    uint64_t errors = 0;
    double correct = 0;
    double labels = 0;
    std::array<uint64_t, kArmLatencyBoundsMs.size() + 1> latency{};  // last: above the last bound
    std::string tripped;
    double share = 0;
    // Per guardrail: the next look of its sequential test (see control.proto).
    std::vector<int> next_look;
  };
  // Guardrails, then the shares; every kEvaluateEvery events and on demand.
  void Evaluate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckGuardrails() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether rule `rule`'s sequential test looks at `arm` now that the
  // smaller count is `n`; `level` receives the one-sided level of this look.
  bool DueForLook(Arm& arm, size_t rule, double n, uint64_t min_samples, double* level, double p_value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ComputeShares() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Trip(Arm& arm, const std::string& rule, const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Event() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The arms a request without a key may get (weight > 0, not taken out).
  std::vector<size_t> Eligible() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One pick by the policy (no minimum share) among `eligible`.
  size_t PolicyPick(const std::vector<size_t>& eligible, std::mt19937_64& gen) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static double P99Ms(const Arm& arm);

  const std::string experiment_;
  const Hooks hooks_;
  mutable absl::Mutex mu_;
  v1::Policy policy_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::Guardrail> guardrails_ ABSL_GUARDED_BY(mu_);
  std::vector<Arm> arms_ ABSL_GUARDED_BY(mu_);  // the serving arms, configuration order
  bool any_tripped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t events_ ABSL_GUARDED_BY(mu_) = 0;
  // Not absl::BitGen: its seeding is salted per process, and simulations
  // must replay exactly from a seed.
  std::mt19937_64 gen_ ABSL_GUARDED_BY(mu_);
};

// A draw from Beta(a, b), a, b > 0.
double BetaDraw(std::mt19937_64& gen, double a, double b);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_EXPERIMENT_STATE_H_
