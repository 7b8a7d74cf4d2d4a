// Time as the batcher sees it. Production uses RealClock; tests use FakeClock
// to step time by hand, so that queue delays are tested without sleeping.
#ifndef DYTSERVE_SERVER_CORE_CLOCK_H_
#define DYTSERVE_SERVER_CORE_CLOCK_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dytserve {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // With `mu` held: waits until `cond` holds or Now() reaches `deadline`.
  virtual void AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) = 0;
};

class RealClock final : public Clock {
 public:
  static Clock* Get();
  absl::Time Now() override { return absl::Now(); }
  void AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) override {
    mu->AwaitWithDeadline(cond, deadline);
  }
};

// Time moves only on Advance(). Waiters park on their own mutex; Advance()
// locks and unlocks each parked waiter's mutex, which makes absl::Mutex
// re-evaluate their conditions against the new time.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch()) : now_(start) {}

  absl::Time Now() override;
  void AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond, absl::Time deadline) override;

  void Advance(absl::Duration d);
  // Blocks until at least `n` threads are parked in AwaitWithDeadline.
  void WaitForWaiters(int n);
  // The same, giving up after `timeout` of real time: false then. For tests
  // where a broken batcher would never wait again, to fail, not hang.
  bool WaitForWaiters(int n, absl::Duration timeout);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  std::multiset<absl::Mutex*> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_CLOCK_H_
