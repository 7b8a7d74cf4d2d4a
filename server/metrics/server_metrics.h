// The server's Prometheus metric families. Label children are created once per
// model version at load time and kept as handles, so the request path only
// touches atomics (creating children per request would take a lock and a hash).
#ifndef DYTSERVE_SERVER_METRICS_SERVER_METRICS_H_
#define DYTSERVE_SERVER_METRICS_SERVER_METRICS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/metrics/model_stats.h"

namespace dytserve {

struct MetricsOptions {
  std::vector<double> latency_buckets_seconds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                 0.1,    0.2,   0.5,   1,     2,    5};
  std::vector<double> batch_size_buckets = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  // Off: the request path records nothing (families still exist, at zero).
  // For measuring what metrics cost; production keeps them on.
  bool record = true;
};

// Handles of the per-request series of one (model, version, experiment,
// arm); experiment and arm are empty for calls that name the model itself.
// Methods are thread-safe.
class RequestMetrics {
 public:
  void RecordRequest(absl::StatusCode code, double total_seconds);
  void RecordQueue(double seconds) {
    if (recording_ && queue_seconds_ != nullptr) queue_seconds_->Observe(seconds);
  }

 private:
  friend class ServerMetrics;
  bool recording_ = true;
  std::array<prometheus::Counter*, 17> requests_by_code_{};
  prometheus::Histogram* request_seconds_ = nullptr;
  prometheus::Histogram* queue_seconds_ = nullptr;  // null for shadow traffic
};

// Handles for one (model, version). Methods are thread-safe.
class ModelMetrics {
 public:
  bool recording() const { return recording_; }
  // The series of calls that name this model directly (no experiment).
  const std::shared_ptr<RequestMetrics>& direct() const { return direct_; }
  // One forward pass of `rows` rows for `requests` requests, finished at
  // `finished`: the Prometheus series (when recording) and the statistics.
  void RecordBatch(int instance, int64_t rows, int64_t requests, const ComputeTimes& times, absl::Time finished);
  // Keeps the largest batch's memory seen so far for this instance.
  void RecordPeakBytes(int instance, double bytes);
  void AddInFlight(double delta) {
    if (recording_) in_flight_->Increment(delta);
  }
  void AddQueueDepth(double delta) {
    if (recording_) queue_depth_->Increment(delta);
  }
  // Kept whether or not Prometheus recording is on: an API reads them.
  ModelStats& stats() { return stats_; }
  const ModelStats& stats() const { return stats_; }

 private:
  friend class ServerMetrics;
  bool recording_ = true;
  std::shared_ptr<RequestMetrics> direct_;
  prometheus::Histogram* compute_seconds_ = nullptr;
  prometheus::Histogram* batch_size_ = nullptr;
  prometheus::Counter* inferences_ = nullptr;
  prometheus::Counter* executions_ = nullptr;
  std::vector<prometheus::Counter*> instance_executions_;
  std::vector<prometheus::Gauge*> instance_peak_bytes_;
  prometheus::Gauge* in_flight_ = nullptr;
  prometheus::Gauge* queue_depth_ = nullptr;
  ModelStats stats_;
};

// Handles of one shadow arm: its own outcomes and latency (kept apart from
// the client-facing request series, since no client sees them) and the
// comparison of its outputs with the serving arm's, one child per output.
class ShadowMetrics {
 public:
  RequestMetrics& requests() { return *requests_; }
  const std::shared_ptr<RequestMetrics>& shared_requests() const { return requests_; }
  // Index of `output` among the names given at creation; -1 when unknown.
  int OutputIndex(const std::string& output) const;
  void RecordDifference(int output, double max_abs_difference);
  void RecordTop1(int output, int64_t agreeing, int64_t compared);
  void RecordMismatch(int output);

 private:
  friend class ServerMetrics;
  bool recording_ = true;
  std::shared_ptr<RequestMetrics> requests_;
  std::vector<std::string> outputs_;
  std::vector<prometheus::Histogram*> max_abs_difference_;
  std::vector<prometheus::Counter*> top1_agreements_;
  std::vector<prometheus::Counter*> top1_comparisons_;
  std::vector<prometheus::Counter*> mismatches_;
};

class ServerMetrics {
 public:
  struct BuildInfo {
    std::string version;
    std::string libtorch;
    bool cuda = false;
  };
  ServerMetrics(MetricsOptions options, const BuildInfo& build);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  bool recording() const { return options_.record; }

  // Creates the children of every per-request family for this model version;
  // `devices` holds each instance's device. Calling it again for the same
  // pair returns handles to the same series.
  std::shared_ptr<ModelMetrics> ForModel(const std::string& model, const std::string& version,
                                         const std::vector<std::string>& devices);
  // The request series of an experiment's arm served by (model, version).
  std::shared_ptr<RequestMetrics> ForArm(const std::string& model, const std::string& version,
                                         const std::string& experiment, const std::string& arm);
  std::shared_ptr<ShadowMetrics> ForShadow(const std::string& model, const std::string& version,
                                           const std::string& experiment, const std::string& arm,
                                           const std::vector<std::string>& outputs);
  // The counter of calls to `service` refused by its token check with `code`.
  // One outcome reported for a served request: `outcome` is correct,
  // incorrect, reward or value (credited to the arm), or unknown, expired or
  // duplicate (credited to none). `amount`: the reward or value.
  void RecordFeedback(const std::string& experiment, const std::string& arm, const std::string& model,
                      absl::string_view outcome, double amount);
  // An experiment arm's share of the requests without a routing key, and
  // whether a guardrail took it out; a guardrail's trip.
  void SetArmShare(const std::string& experiment, const std::string& arm, double share, bool tripped);
  void CountGuardrailTrip(const std::string& experiment, const std::string& arm, const std::string& rule);
  prometheus::Counter& AuthRefusals(const std::string& service, const std::string& code) {
    return auth_refusals_.Add({{"service", service}, {"code", code}});
  }
  void SetWeightBytes(const std::string& model, const std::string& version, int instance,
                      const std::string& device, double bytes);
  void SetLoadSeconds(const std::string& model, const std::string& version, double seconds);
  void SetDytRewrite(const std::string& model, const std::string& version, double fused, double folded);

 private:
  MetricsOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Family<prometheus::Histogram>& queue_seconds_;
  prometheus::Family<prometheus::Histogram>& compute_seconds_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Counter>& inferences_;
  prometheus::Family<prometheus::Counter>& executions_;
  prometheus::Family<prometheus::Counter>& instance_executions_;
  prometheus::Family<prometheus::Gauge>& in_flight_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Gauge>& weight_bytes_;
  prometheus::Family<prometheus::Gauge>& peak_batch_bytes_;
  prometheus::Family<prometheus::Gauge>& load_seconds_;
  prometheus::Family<prometheus::Gauge>& fused_dyt_;
  prometheus::Family<prometheus::Gauge>& folded_dyt_;
  prometheus::Family<prometheus::Counter>& shadow_requests_;
  prometheus::Family<prometheus::Histogram>& shadow_request_seconds_;
  prometheus::Family<prometheus::Histogram>& shadow_difference_;
  prometheus::Family<prometheus::Counter>& shadow_top1_agreements_;
  prometheus::Family<prometheus::Counter>& shadow_top1_comparisons_;
  prometheus::Family<prometheus::Counter>& shadow_mismatches_;
  prometheus::Family<prometheus::Counter>& auth_refusals_;
  prometheus::Family<prometheus::Counter>& feedback_;
  prometheus::Family<prometheus::Counter>& feedback_reward_;
  prometheus::Family<prometheus::Gauge>& feedback_value_;
  prometheus::Family<prometheus::Gauge>& arm_share_;
  prometheus::Family<prometheus::Gauge>& arm_tripped_;
  prometheus::Family<prometheus::Counter>& guardrail_trips_;

  std::shared_ptr<RequestMetrics> MakeRequestMetrics(const prometheus::Labels& labels,
                                                     prometheus::Family<prometheus::Counter>& requests,
                                                     prometheus::Family<prometheus::Histogram>& seconds,
                                                     prometheus::Family<prometheus::Histogram>* queue);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_SERVER_METRICS_H_
