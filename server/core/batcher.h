// Dynamic batcher: one queue and one batch thread per model instance.
//
// Contract (after TF Serving's BatchScheduler):
// - Schedule() never blocks. It takes ownership of the task only when it
//   returns OK; on an error the caller still owns the task and answers the
//   call itself.
// - Every task that was taken is completed exactly once: handed to the batch
//   function inside a batch (which must complete it), or completed here with
//   DEADLINE_EXCEEDED, CANCELLED or, at shutdown, UNAVAILABLE.
// - A batch goes out when its rows reach max_batch_size or a preferred size
//   (or pass it: rows come in whole requests), when no task has arrived for
//   idle_flush (if set),
//   when the oldest queued task has waited max_queue_delay (with
//   delay_from_free: counted from when the instance last became free, if
//   that is later), or at once when the delay is zero. Rows, not tasks,
//   count toward the size.
#ifndef DYTSERVE_SERVER_CORE_BATCHER_H_
#define DYTSERVE_SERVER_CORE_BATCHER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/clock.h"

namespace dytserve {

class BatchTask {
 public:
  virtual ~BatchTask() = default;
  // Rows this task adds to a batch; at least 1.
  virtual int64_t rows() const = 0;
  virtual absl::Time deadline() const = 0;
  virtual bool IsCancelled() const = 0;
  // Called exactly once, on whichever thread finishes the task.
  virtual void Complete(absl::Status status) = 0;
};

class Batcher {
 public:
  struct Options {
    // Rows per batch; 1 sends every task alone.
    int64_t max_batch_size = 1;
    std::vector<int64_t> preferred_batch_sizes;
    absl::Duration max_queue_delay = absl::ZeroDuration();
    // Off when zero. Otherwise a batch also leaves once no task has arrived
    // for this long: under closed-loop clients, whose requests come in a
    // burst after each batch's answers, that beats waiting the full delay.
    absl::Duration idle_flush = absl::ZeroDuration();
    // When set, a task that queued while the instance was computing has its
    // max_queue_delay counted from when the instance became free, not from
    // its arrival. Under closed-loop clients the answers of one batch come
    // back as the next forms; leaving at once with the few that queued
    // meanwhile splits the clients into two groups whose small batches
    // alternate, each request waiting through the other group's batch.
    // Tasks that were queued before the batch was formed (they did not fit)
    // keep their arrival. idle_flush still counts from the last arrival, so
    // with both set a batch can leave at the free moment.
    bool delay_from_free = false;
    // Tasks waiting; 0 means unbounded.
    size_t max_queue_size = 0;
    // Schedule's may_run_inline applies only while this instance's recent
    // runs (a moving average of run_batch's wall time) take at most this:
    // the caller's thread may be the one that reads every connection (gRPC's
    // callback threads), and must not stall them for a real model's forward
    // pass. Zero turns inline runs off.
    absl::Duration inline_up_to = absl::Microseconds(150);
    // Not owned; must outlive the batcher. Tests pass a FakeClock.
    Clock* clock = RealClock::Get();
    // Told how many tasks joined (+) or left (-) the queue, outside the lock;
    // feeds the queue-depth gauge. May be empty.
    std::function<void(int64_t delta)> on_queue_change;
  };
  using Batch = std::vector<std::unique_ptr<BatchTask>>;
  // Runs on the batch thread, or on a caller's (Schedule's may_run_inline);
  // must complete every task it is given, and must not call Shutdown().
  using BatchFn = std::function<void(Batch batch)>;

  Batcher(Options options, BatchFn run_batch);
  ~Batcher();  // Shutdown().

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // On OK, *task is moved from. RESOURCE_EXHAUSTED when the queue is full,
  // UNAVAILABLE after Shutdown(), INVALID_ARGUMENT for rows out of range.
  //
  // With `may_run_inline`, a task that finds the instance idle, nothing
  // queued, no reason to wait for company (no max_queue_delay, or it fills a
  // batch alone), and recent runs no longer than Options::inline_up_to, runs
  // on the caller's thread and is completed before Schedule returns. A lone request then skips two thread wake-ups (to the
  // batch thread and back), which were most of the per-request overhead on a
  // small model. What it changes nothing for: tasks that arrive meanwhile
  // queue and leave together once the instance is free, as they would behind
  // a batch thread's run. Callers whose thread must not block on a forward
  // pass (a stream reading its next request) pass false.
  absl::Status Schedule(std::unique_ptr<BatchTask>* task, bool may_run_inline = false);

  // Queued plus executing rows: what "least loaded" compares.
  int64_t load() const;
  size_t queue_depth() const;
  // Whether Schedule would refuse for a full queue right now; a cheap early
  // answer for callers that would otherwise decode a request first.
  bool full() const;

  // Refuses new tasks, completes queued ones with UNAVAILABLE, waits for the
  // running batch (on either thread) and joins the thread. Idempotent.
  void Shutdown();

 private:
  bool BatchReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When a partial batch leaves for the delay: the oldest task's arrival (or
  // the instance's last free moment, with delay_from_free) plus the delay.
  absl::Time DelayEnd() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Loop();
  // Completes the cancelled and the expired tasks of `batch` and returns the rest.
  Batch DropDead(Batch batch);
  // Runs the live tasks of `batch`; returns how long run_batch took.
  absl::Duration Run(Batch batch);
  // The instance is free again after a run (on either thread) that took `took`.
  void Freed(absl::Duration took) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  const BatchFn run_batch_;

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<BatchTask>> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<absl::Time> enqueued_at_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_rows_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The instance is computing, on the batch thread or on a caller's.
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  // Tasks running on callers' threads; Shutdown() waits for them.
  int inline_runs_ ABSL_GUARDED_BY(mu_) = 0;
  // Moving average of run_batch's wall time; unknown (infinite) until the
  // first run, which therefore never runs inline.
  absl::Duration recent_run_ ABSL_GUARDED_BY(mu_) = absl::InfiniteDuration();
  absl::Time free_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Tasks at the front of the queue that were already queued when the last
  // batch was formed (they did not fit in it).
  size_t leftovers_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_BATCHER_H_
