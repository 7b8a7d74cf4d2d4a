#include "server/core/feedback.h"

#include <cmath>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dytserve {

absl::Status CheckOutcome(const Outcome& outcome) {
  switch (outcome.kind) {
    case Outcome::Kind::kLabel:
      if (outcome.label < 0) return absl::InvalidArgumentError(absl::StrCat("label: ", outcome.label, " is negative"));
      return absl::OkStatus();
    case Outcome::Kind::kReward:
      if (!(outcome.number >= 0 && outcome.number <= 1)) {
        return absl::InvalidArgumentError(absl::StrCat("reward: ", outcome.number, " is not in [0, 1]"));
      }
      return absl::OkStatus();
    case Outcome::Kind::kValue:
      if (!std::isfinite(outcome.number)) {
        return absl::InvalidArgumentError(absl::StrCat("value: ", outcome.number, " is not a finite number"));
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("outcome: unknown kind");
}

absl::string_view FeedbackResultName(FeedbackResult result) {
  switch (result) {
    case FeedbackResult::kRecorded:
      return "recorded";
    case FeedbackResult::kUnknown:
      return "unknown";
    case FeedbackResult::kExpired:
      return "expired";
    case FeedbackResult::kDuplicate:
      return "duplicate";
  }
  return "unknown";
}

FeedbackStore::FeedbackStore(Options options) : options_(std::move(options)) {}

void FeedbackStore::Remember(std::string id, Served served) {
  if (!enabled() || id.empty()) return;
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = entries_.try_emplace(id);
  if (!inserted) return;
  it->second.served = std::move(served);
  it->second.at = now;
  order_.push_back(std::move(id));
  Prune(now);
}

FeedbackResult FeedbackStore::Take(absl::string_view id, Served* served) {
  const absl::Time now = options_.clock->Now();
  absl::MutexLock lock(&mu_);
  Prune(now);
  auto it = entries_.find(id);
  if (it == entries_.end()) return FeedbackResult::kUnknown;
  if (it->second.taken) return FeedbackResult::kDuplicate;
  if (now - it->second.at > options_.ttl) return FeedbackResult::kExpired;
  it->second.taken = true;
  *served = it->second.served;
  return FeedbackResult::kRecorded;
}

size_t FeedbackStore::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

void FeedbackStore::Prune(absl::Time now) {
  while (!order_.empty()) {
    auto it = entries_.find(order_.front());
    const bool too_many = entries_.size() > options_.capacity;
    const bool too_old = it != entries_.end() && now - it->second.at > 2 * options_.ttl;
    if (!too_many && !too_old) break;
    if (it != entries_.end()) entries_.erase(it);
    order_.pop_front();
  }
}

std::string NewRequestId() {
  thread_local absl::BitGen gen;
  return absl::StrFormat("%016x%016x", absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen));
}

}  // namespace dytserve
