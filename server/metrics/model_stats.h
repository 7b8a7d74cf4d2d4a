// Cumulative counts and durations of one model version, the figures Triton's
// ModelStatistics call reports (perf_analyzer and model_analyzer read them for
// the server-side breakdown). Exact sums, unlike the Prometheus histograms:
// those bucket their observations and can be switched off.
#ifndef DYTSERVE_SERVER_METRICS_MODEL_STATS_H_
#define DYTSERVE_SERVER_METRICS_MODEL_STATS_H_

#include <cstdint>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dytserve {

struct DurationSum {
  uint64_t count = 0;
  uint64_t ns = 0;
};

// The three phases of one forward pass.
struct ComputeTimes {
  absl::Duration input;   // assembling the batch
  absl::Duration infer;   // the forward pass
  absl::Duration output;  // splitting and encoding the outputs
};

// Thread-safe: batch threads record, any thread reads.
class ModelStats {
 public:
  struct Snapshot {
    DurationSum success, fail, queue, compute_input, compute_infer, compute_output;
    uint64_t inference_count = 0;  // rows
    uint64_t execution_count = 0;  // forward passes
    absl::Time last_inference = absl::UnixEpoch();
    struct Batch {
      DurationSum input, infer, output;
    };
    std::map<int64_t, Batch> batches;  // by batch size (rows)
  };

  // A request answered, from its arrival.
  void RecordRequest(bool ok, absl::Duration total);
  void RecordQueue(absl::Duration waited);
  // One forward pass of `rows` rows serving `requests` requests: each request
  // is charged the pass's times, as Triton does.
  void RecordExecution(int64_t rows, int64_t requests, const ComputeTimes& times, absl::Time finished);

  Snapshot Read() const;

 private:
  mutable absl::Mutex mu_;
  Snapshot totals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_MODEL_STATS_H_
