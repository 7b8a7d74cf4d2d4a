#include "server/core/clock.h"

#include <vector>

namespace dytserve {

Clock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    waiting_.insert(mu);
  }
  struct Args {
    const absl::Condition* cond;
    FakeClock* clock;
    absl::Time deadline;
  } args{&cond, this, deadline};
  mu->Await(absl::Condition(
      +[](Args* a) { return a->cond->Eval() || a->clock->Now() >= a->deadline; }, &args));
  absl::MutexLock lock(&mu_);
  waiting_.erase(waiting_.find(mu));
}

void FakeClock::Advance(absl::Duration d) {
  std::vector<absl::Mutex*> parked;
  {
    absl::MutexLock lock(&mu_);
    now_ += d;
    parked.assign(waiting_.begin(), waiting_.end());
  }
  for (absl::Mutex* mu : parked) {
    mu->Lock();
    mu->Unlock();
  }
}

void FakeClock::WaitForWaiters(int n) { WaitForWaiters(n, absl::InfiniteDuration()); }

bool FakeClock::WaitForWaiters(int n, absl::Duration timeout) {
  std::pair<FakeClock*, int> args(this, n);
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(
                                  +[](std::pair<FakeClock*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                    return static_cast<int>(a->first->waiting_.size()) >= a->second;
                                  },
                                  &args),
                              timeout);
}

}  // namespace dytserve
