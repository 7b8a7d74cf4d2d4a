#include "server/core/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dytserve {

Batcher::Batcher(Options options, BatchFn run_batch)
    : options_(std::move(options)), run_batch_(std::move(run_batch)) {
  thread_ = std::thread([this] { Loop(); });
}

Batcher::~Batcher() { Shutdown(); }

absl::Status Batcher::Schedule(std::unique_ptr<BatchTask>* task, bool may_run_inline) {
  const int64_t rows = (*task)->rows();
  if (rows < 1 || rows > std::max<int64_t>(options_.max_batch_size, 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("task of ", rows, " rows does not fit max_batch_size ", options_.max_batch_size));
  }
  bool run_here = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the model is shutting down");
    run_here = may_run_inline && !busy_ && queue_.empty() && recent_run_ <= options_.inline_up_to &&
               options_.inline_up_to > absl::ZeroDuration() &&
               (options_.max_queue_delay == absl::ZeroDuration() || rows >= options_.max_batch_size);
    if (run_here) {
      busy_ = true;
      running_rows_ = rows;
      ++inline_runs_;
    } else {
      if (options_.max_queue_size > 0 && queue_.size() >= options_.max_queue_size) {
        return absl::ResourceExhaustedError(
            absl::StrCat("queue is full (max_queue_size ", options_.max_queue_size, ")"));
      }
      queued_rows_ += rows;
      queue_.push_back(std::move(*task));
      enqueued_at_.push_back(options_.clock->Now());
    }
  }
  if (!run_here) {
    if (options_.on_queue_change) options_.on_queue_change(1);
    return absl::OkStatus();
  }
  Batch batch;
  batch.push_back(std::move(*task));
  const absl::Duration took = Run(std::move(batch));
  absl::MutexLock lock(&mu_);
  Freed(took);
  --inline_runs_;
  return absl::OkStatus();
}

int64_t Batcher::load() const {
  absl::MutexLock lock(&mu_);
  return queued_rows_ + running_rows_;
}

bool Batcher::full() const {
  if (options_.max_queue_size == 0) return false;
  absl::MutexLock lock(&mu_);
  return queue_.size() >= options_.max_queue_size;
}

size_t Batcher::queue_depth() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

bool Batcher::BatchReady() const {
  if (stopping_) return true;
  if (queue_.empty()) return false;
  if (queued_rows_ >= options_.max_batch_size) return true;
  for (int64_t preferred : options_.preferred_batch_sizes) {
    if (queued_rows_ >= preferred) return true;
  }
  const absl::Time now = options_.clock->Now();
  if (options_.idle_flush > absl::ZeroDuration() && now >= enqueued_at_.back() + options_.idle_flush) return true;
  return now >= DelayEnd();
}

absl::Time Batcher::DelayEnd() const {
  // Tasks left over from before the last batch (they did not fit) keep their
  // own arrival: they did not queue while the instance computed.
  const absl::Time start = options_.delay_from_free && leftovers_ == 0 ? std::max(enqueued_at_.front(), free_since_)
                                                                       : enqueued_at_.front();
  return start + options_.max_queue_delay;
}

void Batcher::Loop() {
  for (;;) {
    Batch batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Batcher* b) ABSL_NO_THREAD_SAFETY_ANALYSIS { return b->stopping_ || (!b->queue_.empty() && !b->busy_); },
          this));
      if (stopping_) return;
      // Wait for the batch to fill, but never past the oldest task's delay,
      // nor (with idle_flush) past a quiet spell after the latest arrival.
      while (!BatchReady()) {
        absl::Time wake = DelayEnd();
        if (options_.idle_flush > absl::ZeroDuration()) wake = std::min(wake, enqueued_at_.back() + options_.idle_flush);
        options_.clock->AwaitWithDeadline(
            &mu_, absl::Condition(+[](Batcher* b) ABSL_NO_THREAD_SAFETY_ANALYSIS { return b->BatchReady(); }, this),
            wake);
      }
      if (stopping_) return;
      int64_t rows = 0;
      while (!queue_.empty() &&
             (batch.empty() || rows + queue_.front()->rows() <= options_.max_batch_size)) {
        rows += queue_.front()->rows();
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
        enqueued_at_.pop_front();
      }
      leftovers_ = queue_.size();
      queued_rows_ -= rows;
      running_rows_ = rows;
      busy_ = true;
    }
    if (options_.on_queue_change) options_.on_queue_change(-static_cast<int64_t>(batch.size()));

    const absl::Duration took = Run(std::move(batch));
    absl::MutexLock lock(&mu_);
    Freed(took);
  }
}

absl::Duration Batcher::Run(Batch batch) {
  Batch live = DropDead(std::move(batch));
  if (live.empty()) return absl::ZeroDuration();
  const absl::Time start = absl::Now();
  run_batch_(std::move(live));
  return absl::Now() - start;
}

void Batcher::Freed(absl::Duration took) {
  busy_ = false;
  running_rows_ = 0;
  free_since_ = options_.clock->Now();
  if (took == absl::ZeroDuration()) return;  // nothing ran
  recent_run_ = recent_run_ == absl::InfiniteDuration() ? took : (recent_run_ * 4 + took) / 5;
}

Batcher::Batch Batcher::DropDead(Batch batch) {
  // Drop what can no longer be answered usefully before spending compute on it.
  const absl::Time now = options_.clock->Now();
  Batch live;
  for (std::unique_ptr<BatchTask>& task : batch) {
    if (task->IsCancelled()) {
      task->Complete(absl::CancelledError("the call was cancelled while queued"));
    } else if (task->deadline() <= now) {
      task->Complete(absl::DeadlineExceededError("the deadline passed while the request was queued"));
    } else {
      live.push_back(std::move(task));
    }
  }
  return live;
}

void Batcher::Shutdown() {
  std::deque<std::unique_ptr<BatchTask>> orphans;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    orphans.swap(queue_);
    enqueued_at_.clear();
    leftovers_ = 0;
    queued_rows_ = 0;
    // A task running on a caller's thread finishes before the model goes away.
    mu_.Await(absl::Condition(
        +[](Batcher* b) ABSL_NO_THREAD_SAFETY_ANALYSIS { return b->inline_runs_ == 0; }, this));
  }
  if (options_.on_queue_change && !orphans.empty()) options_.on_queue_change(-static_cast<int64_t>(orphans.size()));
  for (std::unique_ptr<BatchTask>& task : orphans) {
    task->Complete(absl::UnavailableError("the server is shutting down"));
  }
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace dytserve
