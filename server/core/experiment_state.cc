#include "server/core/experiment_state.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/ab_stats.h"

namespace dytserve {
namespace {

// Guardrails and shares are re-evaluated after this many answers or outcomes.
constexpr uint64_t kEvaluateEvery = 32;
// Monte Carlo draws that estimate Thompson sampling's shares for the gauge.
constexpr int kShareDraws = 400;

uint64_t MinSamples(const v1::Guardrail& g) { return g.min_samples() > 0 ? g.min_samples() : 100; }

std::string RuleName(const v1::Guardrail& g) {
  switch (g.kind()) {
    case v1::Guardrail::ERROR_RATIO:
      return "error_ratio";
    case v1::Guardrail::P99_LATENCY:
      return "p99_latency";
    case v1::Guardrail::ACCURACY:
      return "accuracy";
    default:
      return "unknown";
  }
}

}  // namespace

double BetaDraw(std::mt19937_64& gen, double a, double b) {
  std::gamma_distribution<double> ga(a, 1.0), gb(b, 1.0);
  const double x = ga(gen), y = gb(gen);
  return x + y > 0 ? x / (x + y) : 0.5;
}

ExperimentState::ExperimentState(std::string experiment, Hooks hooks, uint64_t seed)
    : experiment_(std::move(experiment)), hooks_(std::move(hooks)), gen_(seed != 0 ? seed : std::random_device{}()) {}

void ExperimentState::Configure(const v1::Experiment& config) {
  absl::MutexLock lock(&mu_);
  policy_ = config.policy();
  guardrails_.assign(config.guardrails().begin(), config.guardrails().end());
  std::vector<Arm> arms;
  for (const v1::Arm& a : config.arms()) {
    if (a.shadow()) continue;
    Arm arm;
    for (Arm& old : arms_) {
      if (old.name == a.name()) arm = std::move(old);
    }
    arm.name = a.name();
    arm.weight = a.weight();
    arm.seed = StableHash(a.name());
    arms.push_back(std::move(arm));
  }
  arms_ = std::move(arms);
  any_tripped_ = std::any_of(arms_.begin(), arms_.end(), [](const Arm& a) { return !a.tripped.empty(); });
  Evaluate();
}

bool ExperimentState::Plain() const {
  absl::MutexLock lock(&mu_);
  return policy_.kind() == v1::Policy::FIXED && policy_.min_share() == 0 && !any_tripped_;
}

std::vector<size_t> ExperimentState::Eligible() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < arms_.size(); ++i) {
    if (arms_[i].weight > 0 && arms_[i].tripped.empty()) out.push_back(i);
  }
  return out;
}

size_t ExperimentState::PolicyPick(const std::vector<size_t>& eligible, std::mt19937_64& gen) const {
  switch (policy_.kind()) {
    case v1::Policy::THOMPSON: {
      size_t best = eligible[0];
      double best_draw = -1;
      for (size_t i : eligible) {
        const Arm& a = arms_[i];
        const double draw = BetaDraw(gen, 1 + a.successes, 1 + std::max(0.0, a.trials - a.successes));
        if (draw > best_draw) {
          best = i;
          best_draw = draw;
        }
      }
      return best;
    }
    case v1::Policy::EPSILON_GREEDY: {
      const double epsilon = policy_.epsilon() > 0 ? policy_.epsilon() : 0.1;
      if (absl::Bernoulli(gen, epsilon)) return eligible[absl::Uniform<size_t>(gen, 0, eligible.size())];
      size_t best = eligible[0];
      double best_mean = -1;
      for (size_t i : eligible) {
        const double mean = (1 + arms_[i].successes) / (2 + arms_[i].trials);
        if (mean > best_mean) {
          best = i;
          best_mean = mean;
        }
      }
      return best;
    }
    default: {
      uint64_t total = 0;
      for (size_t i : eligible) total += arms_[i].weight;
      uint64_t draw = absl::Uniform<uint64_t>(gen, 0, total);
      for (size_t i : eligible) {
        if (draw < arms_[i].weight) return i;
        draw -= arms_[i].weight;
      }
      return eligible.back();
    }
  }
}

size_t ExperimentState::PickUnkeyed() {
  absl::MutexLock lock(&mu_);
  std::vector<size_t> eligible = Eligible();
  if (eligible.empty()) return 0;  // Configure never leaves none; be safe
  const double keep = policy_.min_share() * static_cast<double>(eligible.size());
  if (keep > 0 && absl::Bernoulli(gen_, std::min(1.0, keep))) {
    return eligible[absl::Uniform<size_t>(gen_, 0, eligible.size())];
  }
  return PolicyPick(eligible, gen_);
}

std::vector<WeightedArm> ExperimentState::KeyedWeights() const {
  absl::MutexLock lock(&mu_);
  std::vector<WeightedArm> out;
  for (const Arm& a : arms_) out.push_back({a.tripped.empty() ? a.weight : 0, a.seed});
  return out;
}

void ExperimentState::OnAnswered(size_t arm, bool ok, absl::Duration latency) {
  absl::MutexLock lock(&mu_);
  if (arm >= arms_.size()) return;
  Arm& a = arms_[arm];
  ++a.requests;
  if (!ok) ++a.errors;
  const double ms = absl::ToDoubleMilliseconds(latency);
  const size_t bucket =
      std::lower_bound(kArmLatencyBoundsMs.begin(), kArmLatencyBoundsMs.end(), ms) - kArmLatencyBoundsMs.begin();
  ++a.latency[bucket];
  if (policy_.reward() == v1::Policy::SLO) {
    a.trials += 1;
    a.successes += ok && ms <= policy_.slo_ms() ? 1 : 0;
  }
  Event();
}

void ExperimentState::OnLabel(absl::string_view arm, bool correct) {
  absl::MutexLock lock(&mu_);
  for (Arm& a : arms_) {
    if (a.name != arm) continue;
    a.labels += 1;
    a.correct += correct ? 1 : 0;
    if (policy_.reward() == v1::Policy::FEEDBACK) {
      a.trials += 1;
      a.successes += correct ? 1 : 0;
    }
    Event();
  }
}

void ExperimentState::OnReward(absl::string_view arm, double reward) {
  absl::MutexLock lock(&mu_);
  for (Arm& a : arms_) {
    if (a.name != arm || policy_.reward() != v1::Policy::FEEDBACK) continue;
    a.trials += 1;
    a.successes += std::clamp(reward, 0.0, 1.0);
    Event();
  }
}

void ExperimentState::Event() {
  if (++events_ % kEvaluateEvery == 0) Evaluate();
}

void ExperimentState::Evaluate() {
  CheckGuardrails();
  ComputeShares();
}

double ExperimentState::P99Ms(const Arm& arm) {
  uint64_t total = 0;
  for (uint64_t c : arm.latency) total += c;
  if (total == 0) return 0;
  const double rank = 0.99 * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < arm.latency.size(); ++i) {
    seen += arm.latency[i];
    if (static_cast<double>(seen) >= rank) {
      return i < kArmLatencyBoundsMs.size() ? kArmLatencyBoundsMs[i] : kArmLatencyBoundsMs.back() * 2;
    }
  }
  return kArmLatencyBoundsMs.back() * 2;
}

bool ExperimentState::DueForLook(Arm& arm, size_t rule, double n, uint64_t min_samples, double* level,
                                 double p_value) {
  if (arm.next_look.size() != guardrails_.size()) arm.next_look.assign(guardrails_.size(), 0);
  int& k = arm.next_look[rule];
  if (n < static_cast<double>(min_samples) * std::ldexp(1.0, k)) return false;
  // Catch up with every threshold passed at once; the test at the last one
  // spends the smallest of their levels, so the total stays bounded.
  while (n >= static_cast<double>(min_samples) * std::ldexp(1.0, k + 1)) ++k;
  *level = (p_value / 2) / std::ldexp(1.0, k + 1);
  ++k;
  return true;
}

void ExperimentState::CheckGuardrails() {
  if (guardrails_.empty() || arms_.empty()) return;
  size_t base = 0;
  while (base < arms_.size() && arms_[base].weight == 0) ++base;
  if (base == arms_.size()) return;
  const Arm& b = arms_[base];
  for (Arm& a : arms_) {
    if (a.weight == 0 || !a.tripped.empty()) continue;
    const bool is_base = &a == &b;
    for (size_t r = 0; r < guardrails_.size() && a.tripped.empty(); ++r) {
      const v1::Guardrail& g = guardrails_[r];
      const uint64_t min = MinSamples(g);
      double level = 0;
      if (g.kind() == v1::Guardrail::ERROR_RATIO && !is_base &&
          DueForLook(a, r, static_cast<double>(std::min(a.requests, b.requests)), min, &level,
                     g.p_value() > 0 ? g.p_value() : 0.01)) {
        const double ra = static_cast<double>(a.errors) / a.requests, rb = static_cast<double>(b.errors) / b.requests;
        const double p = stats::TwoProportionPValue(a.errors, a.requests, b.errors, b.requests) / 2;
        if (ra > rb && p < level) {
          Trip(a, RuleName(g),
               absl::StrFormat("error ratio %.4f above the baseline's %.4f (one-sided p = %.2g < %.2g at this look; "
                               "%d and %d requests)",
                               ra, rb, p, level, a.requests, b.requests));
        }
      } else if (g.kind() == v1::Guardrail::P99_LATENCY && a.requests >= min) {
        const double p99 = P99Ms(a);
        if (p99 > g.p99_ms()) {
          Trip(a, RuleName(g), absl::StrFormat("p99 latency about %.3g ms above %.3g ms (%d requests)", p99,
                                               g.p99_ms(), a.requests));
        }
      } else if (g.kind() == v1::Guardrail::ACCURACY && !is_base &&
                 DueForLook(a, r, std::min(a.labels, b.labels), min, &level, g.p_value() > 0 ? g.p_value() : 0.05)) {
        const double z = stats::ZForUpperTail(level);
        const stats::Interval d = stats::Newcombe(a.correct, a.labels, b.correct, b.labels, z);
        if (d.valid() && d.high < -g.margin()) {
          Trip(a, RuleName(g),
               absl::StrFormat("accuracy %.2f points below the baseline's, beyond the margin of %.2f (upper bound "
                               "%.2f at one-sided level %.2g; %.0f and %.0f labels)",
                               -100 * d.estimate, 100 * g.margin(), 100 * d.high, level, a.labels, b.labels));
        }
      }
    }
  }
}

void ExperimentState::Trip(Arm& arm, const std::string& rule, const std::string& why) {
  if (Eligible().size() <= 1) return;  // the last arm that serves stays
  arm.tripped = absl::StrCat(rule, ": ", why);
  any_tripped_ = true;
  if (hooks_.on_trip) hooks_.on_trip(arm.name, rule, why);
}

void ExperimentState::ComputeShares() {
  const std::vector<size_t> eligible = Eligible();
  for (Arm& a : arms_) a.share = 0;
  if (!eligible.empty()) {
    std::vector<double> p(arms_.size(), 0);
    if (policy_.kind() == v1::Policy::FIXED) {
      uint64_t total = 0;
      for (size_t i : eligible) total += arms_[i].weight;
      for (size_t i : eligible) p[i] = static_cast<double>(arms_[i].weight) / total;
    } else {
      for (int d = 0; d < kShareDraws; ++d) p[PolicyPick(eligible, gen_)] += 1.0 / kShareDraws;
    }
    const double keep = std::min(1.0, policy_.min_share() * static_cast<double>(eligible.size()));
    for (size_t i : eligible) arms_[i].share = keep / eligible.size() + (1 - keep) * p[i];
  }
  if (hooks_.on_share) {
    for (const Arm& a : arms_) hooks_.on_share(a.name, a.share, !a.tripped.empty());
  }
}

absl::Status ExperimentState::Resume(absl::string_view arm) {
  absl::MutexLock lock(&mu_);
  for (Arm& a : arms_) {
    if (a.name != arm) continue;
    a.tripped.clear();
    a.requests = a.errors = 0;
    a.correct = a.labels = 0;
    a.latency.fill(0);
    a.next_look.clear();
    any_tripped_ = std::any_of(arms_.begin(), arms_.end(), [](const Arm& x) { return !x.tripped.empty(); });
    ComputeShares();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("experiment '", experiment_, "' has no serving arm '", arm, "'"));
}

v1::ExperimentState ExperimentState::Snapshot() const {
  absl::MutexLock lock(&mu_);
  v1::ExperimentState out;
  out.set_experiment(experiment_);
  for (const Arm& a : arms_) {
    v1::ArmState* s = out.add_arms();
    s->set_arm(a.name);
    s->set_reward_successes(a.successes);
    s->set_reward_trials(a.trials);
    s->set_requests(a.requests);
    s->set_errors(a.errors);
    s->set_correct(a.correct);
    s->set_labels(a.labels);
    s->set_tripped(a.tripped);
    s->set_share(a.share);
    for (uint64_t c : a.latency) s->add_latency_buckets(c);
  }
  return out;
}

void ExperimentState::Restore(const v1::ExperimentState& saved) {
  absl::MutexLock lock(&mu_);
  for (const v1::ArmState& s : saved.arms()) {
    for (Arm& a : arms_) {
      if (a.name != s.arm()) continue;
      a.successes = s.reward_successes();
      a.trials = s.reward_trials();
      a.requests = s.requests();
      a.errors = s.errors();
      a.correct = s.correct();
      a.labels = s.labels();
      a.tripped = s.tripped();
      if (static_cast<size_t>(s.latency_buckets_size()) == a.latency.size()) {
        for (size_t i = 0; i < a.latency.size(); ++i) a.latency[i] = s.latency_buckets(static_cast<int>(i));
      }
    }
  }
  any_tripped_ = std::any_of(arms_.begin(), arms_.end(), [](const Arm& x) { return !x.tripped.empty(); });
  ComputeShares();
}

}  // namespace dytserve
