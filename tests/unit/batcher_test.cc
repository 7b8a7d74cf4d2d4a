#include "server/core/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace dytserve {
namespace {

// Records how it was completed; the test owns the counters.
class FakeTask : public BatchTask {
 public:
  FakeTask(int64_t rows, std::vector<absl::StatusCode>* log, absl::Mutex* mu,
           absl::Time deadline = absl::InfiniteFuture())
      : rows_(rows), log_(log), mu_(mu), deadline_(deadline) {}
  int64_t rows() const override { return rows_; }
  absl::Time deadline() const override { return deadline_; }
  bool IsCancelled() const override { return cancelled; }
  void Complete(absl::Status status) override {
    absl::MutexLock lock(mu_);
    log_->push_back(status.code());
  }
  bool cancelled = false;

 private:
  int64_t rows_;
  std::vector<absl::StatusCode>* log_;
  absl::Mutex* mu_;
  absl::Time deadline_;
};

TEST(Batcher, FullBatchGoesOutWithoutWaitingForTheDelay) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::vector<int64_t> batch_rows;
  absl::Notification ran;
  Batcher::Options options;
  options.max_batch_size = 4;
  options.max_queue_delay = absl::Hours(1);  // only a full batch can leave
  Batcher batcher(options, [&](Batcher::Batch batch) {
    int64_t rows = 0;
    for (auto& t : batch) {
      rows += t->rows();
      t->Complete(absl::OkStatus());
    }
    batch_rows.push_back(rows);
    ran.Notify();
  });
  for (int64_t rows : {1, 2, 1}) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(rows, &log, &mu);
    ASSERT_TRUE(batcher.Schedule(&task).ok());
    EXPECT_EQ(task, nullptr) << "Schedule took ownership";
  }
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(batch_rows, std::vector<int64_t>{4});
}

TEST(Batcher, RefusedTaskStaysWithTheCaller) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  absl::Notification release;
  absl::Notification started;
  Batcher::Options options;
  options.max_batch_size = 1;
  options.max_queue_size = 1;
  Batcher batcher(options, [&](Batcher::Batch batch) {
    if (!started.HasBeenNotified()) started.Notify();
    release.WaitForNotification();
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  std::unique_ptr<BatchTask> first = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&first).ok());
  started.WaitForNotification();  // the batch thread now holds `first`
  std::unique_ptr<BatchTask> second = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&second).ok());  // queued
  std::unique_ptr<BatchTask> third = std::make_unique<FakeTask>(1, &log, &mu);
  absl::Status full = batcher.Schedule(&third);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third, nullptr) << "a refused task is not taken";
  std::unique_ptr<BatchTask> too_big = std::make_unique<FakeTask>(2, &log, &mu);
  EXPECT_EQ(batcher.Schedule(&too_big).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_big, nullptr);
  release.Notify();
  batcher.Shutdown();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(log.size(), 2u) << "first and second completed exactly once, refused ones never";
}

TEST(Batcher, ShutdownCompletesQueuedTasksWithUnavailable) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  Batcher::Options options;
  options.max_batch_size = 8;
  options.max_queue_delay = absl::Hours(1);
  std::atomic<int> batches{0};
  auto batcher = std::make_unique<Batcher>(options, [&](Batcher::Batch batch) {
    ++batches;
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(1, &log, &mu);
    ASSERT_TRUE(batcher->Schedule(&task).ok());
  }
  batcher->Shutdown();
  std::unique_ptr<BatchTask> late = std::make_unique<FakeTask>(1, &log, &mu);
  EXPECT_EQ(batcher->Schedule(&late).code(), absl::StatusCode::kUnavailable);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(batches.load(), 0);
  EXPECT_EQ(log, std::vector<absl::StatusCode>(3, absl::StatusCode::kUnavailable));
}

TEST(Batcher, ExpiredAndCancelledTasksAreDroppedBeforeTheBatch) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::atomic<int> computed{0};
  absl::Notification ran;
  Batcher::Options options;
  options.max_batch_size = 3;
  options.max_queue_delay = absl::Hours(1);
  Batcher batcher(options, [&](Batcher::Batch batch) {
    for (auto& t : batch) {
      ++computed;
      t->Complete(absl::OkStatus());
    }
    ran.Notify();
  });
  auto expired = std::make_unique<FakeTask>(1, &log, &mu, absl::InfinitePast());
  auto cancelled = std::make_unique<FakeTask>(1, &log, &mu);
  cancelled->cancelled = true;
  std::unique_ptr<BatchTask> a = std::move(expired), b = std::move(cancelled),
                             c = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&a).ok());
  ASSERT_TRUE(batcher.Schedule(&b).ok());
  ASSERT_TRUE(batcher.Schedule(&c).ok());
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  batcher.Shutdown();
  EXPECT_EQ(computed.load(), 1);
  absl::MutexLock lock(&mu);
  std::sort(log.begin(), log.end());
  EXPECT_EQ(log, (std::vector<absl::StatusCode>{absl::StatusCode::kOk, absl::StatusCode::kCancelled,
                                                absl::StatusCode::kDeadlineExceeded}));
}

// Queue delay on a FakeClock: nothing sleeps, time moves only when told.
TEST(Batcher, PartialBatchLeavesExactlyWhenTheOldestTaskHasWaitedTheDelay) {
  FakeClock clock;
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::atomic<int> batches{0};
  std::atomic<int64_t> rows_seen{0};
  absl::Notification ran;
  Batcher::Options options;
  options.max_batch_size = 8;
  options.max_queue_delay = absl::Milliseconds(10);
  options.clock = &clock;
  Batcher batcher(options, [&](Batcher::Batch batch) {
    for (auto& t : batch) {
      rows_seen += t->rows();
      t->Complete(absl::OkStatus());
    }
    ++batches;
    ran.Notify();
  });
  std::unique_ptr<BatchTask> a = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&a).ok());
  clock.WaitForWaiters(1);  // the batch thread waits for more rows or the delay
  clock.Advance(absl::Milliseconds(4));
  std::unique_ptr<BatchTask> b = std::make_unique<FakeTask>(2, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&b).ok());
  clock.Advance(absl::Milliseconds(5));  // 9 ms after the first task
  EXPECT_EQ(batches.load(), 0) << "left before the delay";
  clock.Advance(absl::Milliseconds(1));  // 10 ms: the oldest task's delay is up
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(batches.load(), 1);
  EXPECT_EQ(rows_seen.load(), 3);
}

TEST(Batcher, IdleFlushSendsAPartialBatchAfterAQuietSpell) {
  FakeClock clock;
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::atomic<int> batches{0};
  std::atomic<int64_t> rows_seen{0};
  absl::Notification ran;
  Batcher::Options options;
  options.max_batch_size = 8;
  options.max_queue_delay = absl::Milliseconds(10);
  options.idle_flush = absl::Milliseconds(1);
  options.clock = &clock;
  Batcher batcher(options, [&](Batcher::Batch batch) {
    for (auto& t : batch) {
      rows_seen += t->rows();
      t->Complete(absl::OkStatus());
    }
    ++batches;
    ran.Notify();
  });
  std::unique_ptr<BatchTask> a = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&a).ok());
  clock.WaitForWaiters(1);
  clock.Advance(absl::Microseconds(600));  // a second task arrives before the spell ends
  std::unique_ptr<BatchTask> b = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&b).ok());
  clock.Advance(absl::Microseconds(600));  // 1.2 ms after the first, 0.6 ms after the last
  EXPECT_EQ(batches.load(), 0) << "the quiet spell restarts with each arrival";
  clock.WaitForWaiters(1);
  clock.Advance(absl::Microseconds(400));  // 1 ms quiet: leave, long before the 10 ms delay
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(rows_seen.load(), 2);
}

// An instance whose first batch computes until the clock has moved 30 ms
// past its start. How the instance got busy:
enum class Busy {
  // a lone task waits out its 10 ms delay and leaves alone; while it
  // computes, b (1 row) queues: b has waited 3x its delay when the batch ends.
  kQueuedDuring,
  // a and b (2 rows each) arrive together with max_batch_size 3: a leaves
  // alone and b, which did not fit, stays queued from before the batch (2
  // rows: not a full batch by itself).
  kLeftOver,
};

class BusyInstance {
 public:
  BusyInstance(bool delay_from_free, Busy busy) {
    Batcher::Options options;
    options.max_batch_size = busy == Busy::kLeftOver ? 3 : 8;
    options.max_queue_delay = absl::Milliseconds(10);
    options.delay_from_free = delay_from_free;
    options.clock = &clock_;
    batcher_ = std::make_unique<Batcher>(options, [this](Batcher::Batch batch) {
      int64_t rows = 0;
      for (auto& t : batch) {
        rows += t->rows();
        t->Complete(absl::OkStatus());
      }
      if (first_.exchange(false)) {
        computing_.Notify();
        release_.WaitForNotification();
        return;
      }
      absl::MutexLock lock(&mu_);
      later_rows_.push_back(rows);
    });
    if (busy == Busy::kLeftOver) {
      Schedule(2);
      Schedule(2);  // 4 rows queued: a batch is due, and only a fits
    } else {
      Schedule(1);
      if (!clock_.WaitForWaiters(1, absl::Seconds(10))) ADD_FAILURE() << "the batch thread never waited";
      clock_.Advance(absl::Milliseconds(10));  // the first task's delay: it leaves alone
    }
    if (!computing_.WaitForNotificationWithTimeout(absl::Seconds(10))) ADD_FAILURE() << "no first batch";
    if (busy == Busy::kQueuedDuring) Schedule(1);
    clock_.Advance(absl::Milliseconds(30));
    release_.Notify();
  }
  void Schedule(int64_t rows) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(rows, &log_, &mu_);
    ASSERT_TRUE(batcher_->Schedule(&task).ok());
  }
  std::vector<int64_t> LaterRows() {
    absl::MutexLock lock(&mu_);
    return later_rows_;
  }
  // Whether `n` batches after the first left within `timeout` of real time
  // (the batch thread runs on its own).
  bool AwaitLaterBatches(size_t n, absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (LaterRows().size() < n) {
      if (absl::Now() >= give_up) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }
  FakeClock clock_;

 private:
  absl::Mutex mu_;
  std::vector<absl::StatusCode> log_;
  std::vector<int64_t> later_rows_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> first_{true};
  absl::Notification computing_, release_;
  std::unique_ptr<Batcher> batcher_;
};

TEST(Batcher, ATaskThatWaitedThroughABatchLeavesAtOnceByDefault) {
  BusyInstance instance(/*delay_from_free=*/false, Busy::kQueuedDuring);
  ASSERT_TRUE(instance.AwaitLaterBatches(1, absl::Seconds(30))) << "b waited although its delay had passed";
  EXPECT_EQ(instance.LaterRows(), std::vector<int64_t>{1});
}

TEST(Batcher, DelayFromFreeGathersTheNextBatchAfterABusySpell) {
  BusyInstance instance(/*delay_from_free=*/true, Busy::kQueuedDuring);
  // The batch thread waits again, for b's delay counted from now.
  ASSERT_TRUE(instance.clock_.WaitForWaiters(1, absl::Seconds(10))) << "b left at once";
  instance.Schedule(1);  // c: an answered client sending again
  instance.clock_.Advance(absl::Milliseconds(9));
  EXPECT_FALSE(instance.AwaitLaterBatches(1, absl::Milliseconds(200)))
      << "left 9 ms after the instance became free, before the 10 ms delay";
  instance.clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(instance.AwaitLaterBatches(1, absl::Seconds(30)));
  EXPECT_EQ(instance.LaterRows(), std::vector<int64_t>{2}) << "b and c leave together";
}

TEST(Batcher, DelayFromFreeLeavesWhatDidNotFitToItsOwnDelay) {
  BusyInstance instance(/*delay_from_free=*/true, Busy::kLeftOver);
  // b was queued before the batch; its delay ran out during it: it leaves at
  // once, with no time passing after the batch.
  ASSERT_TRUE(instance.AwaitLaterBatches(1, absl::Seconds(30))) << "b waited a second delay";
  EXPECT_EQ(instance.LaterRows(), std::vector<int64_t>{2});
}

TEST(Batcher, PreferredSizeLeavesAtOnce) {
  FakeClock clock;
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::vector<int64_t> sizes;
  absl::Notification ran;
  Batcher::Options options;
  options.max_batch_size = 16;
  options.preferred_batch_sizes = {4};
  options.max_queue_delay = absl::Hours(1);
  options.clock = &clock;
  Batcher batcher(options, [&](Batcher::Batch batch) {
    int64_t rows = 0;
    for (auto& t : batch) {
      rows += t->rows();
      t->Complete(absl::OkStatus());
    }
    sizes.push_back(rows);
    ran.Notify();
  });
  for (int64_t rows : {1, 3}) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(rows, &log, &mu);
    ASSERT_TRUE(batcher.Schedule(&task).ok());
  }
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30))) << "no clock advance was needed";
  EXPECT_EQ(sizes, std::vector<int64_t>{4});
}

TEST(Batcher, PassingAPreferredSizeAlsoLeavesAtOnce) {
  FakeClock clock;
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::vector<int64_t> sizes;
  absl::Notification ran;
  std::atomic<int64_t> depth{0};
  Batcher::Options options;
  options.max_batch_size = 16;
  options.preferred_batch_sizes = {8};
  options.max_queue_delay = absl::Hours(1);
  options.clock = &clock;
  options.on_queue_change = [&](int64_t delta) { depth += delta; };
  Batcher batcher(options, [&](Batcher::Batch batch) {
    int64_t rows = 0;
    for (auto& t : batch) {
      rows += t->rows();
      t->Complete(absl::OkStatus());
    }
    sizes.push_back(rows);
    ran.Notify();
  });
  for (int i = 0; i < 3; ++i) {  // 3, 6, 9 rows queued: 8 is skipped over
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(3, &log, &mu);
    ASSERT_TRUE(batcher.Schedule(&task).ok());
  }
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(sizes, std::vector<int64_t>{9});
  batcher.Shutdown();
  EXPECT_EQ(depth.load(), 0) << "the queue-depth callback saw every task leave";
}

TEST(Batcher, RowsNeverExceedMaxBatchSize) {
  FakeClock clock;
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::vector<int64_t> sizes;
  std::atomic<int> batches{0};
  Batcher::Options options;
  options.max_batch_size = 4;
  options.max_queue_delay = absl::Milliseconds(1);
  options.clock = &clock;
  absl::Mutex sizes_mu;
  auto batcher = std::make_unique<Batcher>(options, [&](Batcher::Batch batch) {
    int64_t rows = 0;
    for (auto& t : batch) {
      rows += t->rows();
      t->Complete(absl::OkStatus());
    }
    absl::MutexLock lock(&sizes_mu);
    sizes.push_back(rows);
    ++batches;
  });
  for (int64_t rows : {3, 3, 2, 4}) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(rows, &log, &mu);
    ASSERT_TRUE(batcher->Schedule(&task).ok());
  }
  while (batches.load() < 4) {  // [3] [3] [2] [4]: FIFO, never past 4 rows
    clock.Advance(absl::Milliseconds(1));
    absl::MutexLock lock(&sizes_mu);
    sizes_mu.AwaitWithTimeout(absl::Condition(+[](std::atomic<int>* b) { return b->load() >= 4; }, &batches),
                              absl::Milliseconds(50));
  }
  batcher->Shutdown();
  absl::MutexLock lock(&sizes_mu);
  for (int64_t size : sizes) EXPECT_LE(size, 4);
  int64_t total = 0;
  for (int64_t size : sizes) total += size;
  EXPECT_EQ(total, 12);
}

TEST(Batcher, AnIdleInstanceRunsAnInlineTaskOnTheCallersThread) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::thread::id ran_on;
  Batcher::Options options;
  options.max_batch_size = 4;
  options.inline_up_to = absl::InfiniteDuration();  // even before a first run is timed
  Batcher batcher(options, [&](Batcher::Batch batch) {
    ran_on = std::this_thread::get_id();
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&task, /*may_run_inline=*/true).ok());
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(log, std::vector<absl::StatusCode>{absl::StatusCode::kOk}) << "completed before Schedule returned";
  }
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(batcher.load(), 0);

  // An expired task is answered on the spot, without a forward pass.
  ran_on = std::thread::id();
  std::unique_ptr<BatchTask> late = std::make_unique<FakeTask>(1, &log, &mu, absl::Now() - absl::Seconds(1));
  ASSERT_TRUE(batcher.Schedule(&late, true).ok());
  EXPECT_EQ(ran_on, std::thread::id());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(log.back(), absl::StatusCode::kDeadlineExceeded);
}

TEST(Batcher, TasksArrivingDuringAnInlineRunQueueAndLeaveTogether) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  absl::Notification started, release;
  std::vector<int64_t> batch_rows;  // guarded by mu
  Batcher::Options options;
  options.max_batch_size = 4;
  options.inline_up_to = absl::InfiniteDuration();
  Batcher batcher(options, [&](Batcher::Batch batch) {
    if (!started.HasBeenNotified()) started.Notify();
    release.WaitForNotification();
    int64_t rows = 0;
    for (auto& t : batch) rows += t->rows();
    {
      absl::MutexLock lock(&mu);
      batch_rows.push_back(rows);
    }
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  std::thread caller([&] {
    std::unique_ptr<BatchTask> first = std::make_unique<FakeTask>(1, &log, &mu);
    EXPECT_TRUE(batcher.Schedule(&first, true).ok());
  });
  started.WaitForNotification();  // `caller` is computing its task itself
  EXPECT_EQ(batcher.load(), 1);
  for (int i = 0; i < 2; ++i) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(1, &log, &mu);
    ASSERT_TRUE(batcher.Schedule(&task, true).ok()) << "the busy instance queues it instead";
    EXPECT_EQ(task, nullptr);
  }
  EXPECT_EQ(batcher.queue_depth(), 2u) << "the batch thread waits for the inline run";
  release.Notify();
  caller.join();
  for (int i = 0; i < 3000; ++i) {
    {
      absl::MutexLock lock(&mu);
      if (log.size() == 3) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  absl::MutexLock lock(&mu);
  EXPECT_EQ(batch_rows, (std::vector<int64_t>{1, 2}));
}

TEST(Batcher, AQueueDelayKeepsTasksOffTheCallersThread) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::atomic<int> batches{0};
  Batcher::Options options;
  options.max_batch_size = 4;
  options.max_queue_delay = absl::Hours(1);
  options.inline_up_to = absl::InfiniteDuration();
  Batcher batcher(options, [&](Batcher::Batch batch) {
    ++batches;
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  // The delay means "wait for company": a lone row queues.
  std::unique_ptr<BatchTask> one = std::make_unique<FakeTask>(1, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&one, true).ok());
  EXPECT_EQ(batcher.queue_depth(), 1u);
  // A task that fills a batch alone has no company to wait for, but one is
  // queued ahead of it: it queues too, and the two leave in order.
  std::unique_ptr<BatchTask> full = std::make_unique<FakeTask>(4, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&full, true).ok());
  for (int i = 0; i < 3000 && batches.load() < 2; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(batches.load(), 2);
  // With nothing queued, a full batch runs at once on the caller's thread.
  std::unique_ptr<BatchTask> alone = std::make_unique<FakeTask>(4, &log, &mu);
  ASSERT_TRUE(batcher.Schedule(&alone, true).ok());
  EXPECT_EQ(batches.load(), 3);
}

TEST(Batcher, ShutdownWaitsForAnInlineRun) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  absl::Notification started, release;
  std::atomic<bool> finished{false};
  Batcher::Options options;
  options.inline_up_to = absl::InfiniteDuration();
  Batcher batcher(options, [&](Batcher::Batch batch) {
    started.Notify();
    release.WaitForNotification();
    finished = true;
    for (auto& t : batch) t->Complete(absl::OkStatus());
  });
  std::thread caller([&] {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(1, &log, &mu);
    EXPECT_TRUE(batcher.Schedule(&task, true).ok());
  });
  started.WaitForNotification();
  std::thread stopper([&] {
    batcher.Shutdown();
    EXPECT_TRUE(finished.load()) << "Shutdown returned while a caller still ran the model";
  });
  absl::SleepFor(absl::Milliseconds(50));
  release.Notify();
  stopper.join();
  caller.join();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(log, std::vector<absl::StatusCode>{absl::StatusCode::kOk});
}

TEST(Batcher, AModelSlowerThanInlineUpToStaysOnTheBatchThread) {
  absl::Mutex mu;
  std::vector<absl::StatusCode> log;
  std::atomic<int> on_caller{0}, runs{0};
  Batcher::Options options;
  options.inline_up_to = absl::Milliseconds(1);
  Batcher batcher(options, [&](Batcher::Batch batch) {
    absl::SleepFor(absl::Milliseconds(5));  // a real model's forward pass
    for (auto& t : batch) t->Complete(absl::OkStatus());
    ++runs;
  });
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<BatchTask> task = std::make_unique<FakeTask>(1, &log, &mu);
    ASSERT_TRUE(batcher.Schedule(&task, true).ok());
    // Inline, the run would be over by now; on the batch thread it is not.
    if (runs.load() == i + 1) ++on_caller;
    for (int w = 0; w < 3000 && runs.load() < i + 1; ++w) absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(runs.load(), 3);
  EXPECT_EQ(on_caller.load(), 0) << "the first run is untimed and the others took 5 ms: none may run inline";
}

}  // namespace
}  // namespace dytserve
