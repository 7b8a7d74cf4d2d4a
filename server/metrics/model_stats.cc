#include "server/metrics/model_stats.h"

#include <algorithm>

namespace dytserve {
namespace {

uint64_t Nanos(absl::Duration d) { return d <= absl::ZeroDuration() ? 0 : static_cast<uint64_t>(absl::ToInt64Nanoseconds(d)); }

void Add(DurationSum* sum, uint64_t count, absl::Duration each) {
  sum->count += count;
  sum->ns += count * Nanos(each);
}

}  // namespace

void ModelStats::RecordRequest(bool ok, absl::Duration total) {
  absl::MutexLock lock(&mu_);
  Add(ok ? &totals_.success : &totals_.fail, 1, total);
}

void ModelStats::RecordQueue(absl::Duration waited) {
  absl::MutexLock lock(&mu_);
  Add(&totals_.queue, 1, waited);
}

void ModelStats::RecordExecution(int64_t rows, int64_t requests, const ComputeTimes& times, absl::Time finished) {
  const auto n = static_cast<uint64_t>(requests);
  absl::MutexLock lock(&mu_);
  Add(&totals_.compute_input, n, times.input);
  Add(&totals_.compute_infer, n, times.infer);
  Add(&totals_.compute_output, n, times.output);
  totals_.inference_count += static_cast<uint64_t>(rows);
  totals_.execution_count += 1;
  totals_.last_inference = std::max(totals_.last_inference, finished);
  Snapshot::Batch& batch = totals_.batches[rows];
  Add(&batch.input, 1, times.input);
  Add(&batch.infer, 1, times.infer);
  Add(&batch.output, 1, times.output);
}

ModelStats::Snapshot ModelStats::Read() const {
  absl::MutexLock lock(&mu_);
  return totals_;
}

}  // namespace dytserve
