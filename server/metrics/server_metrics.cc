#include "server/metrics/server_metrics.h"

#include <map>

#include "absl/strings/ascii.h"

namespace dytserve {
namespace {

// "RESOURCE_EXHAUSTED" for the `code` label, as gRPC spells codes.
std::string CodeLabel(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace

void RequestMetrics::RecordRequest(absl::StatusCode code, double total_seconds) {
  if (!recording_) return;
  const auto index = static_cast<size_t>(code);
  if (index < requests_by_code_.size()) requests_by_code_[index]->Increment();
  request_seconds_->Observe(total_seconds);
}

int ShadowMetrics::OutputIndex(const std::string& output) const {
  for (size_t i = 0; i < outputs_.size(); ++i) {
    if (outputs_[i] == output) return static_cast<int>(i);
  }
  return -1;
}

void ShadowMetrics::RecordDifference(int output, double max_abs_difference) {
  if (recording_ && output >= 0) max_abs_difference_[output]->Observe(max_abs_difference);
}

void ShadowMetrics::RecordTop1(int output, int64_t agreeing, int64_t compared) {
  if (!recording_ || output < 0) return;
  top1_agreements_[output]->Increment(static_cast<double>(agreeing));
  top1_comparisons_[output]->Increment(static_cast<double>(compared));
}

void ShadowMetrics::RecordMismatch(int output) {
  if (recording_ && output >= 0) mismatches_[output]->Increment();
}

void ModelMetrics::RecordBatch(int instance, int64_t rows, int64_t requests, const ComputeTimes& times,
                               absl::Time finished) {
  stats_.RecordExecution(rows, requests, times, finished);
  if (!recording_) return;
  const double compute_seconds = absl::ToDoubleSeconds(times.input + times.infer + times.output);
  if (instance >= 0 && static_cast<size_t>(instance) < instance_executions_.size()) {
    instance_executions_[instance]->Increment();
  }
  batch_size_->Observe(static_cast<double>(rows));
  compute_seconds_->Observe(compute_seconds);
  inferences_->Increment(static_cast<double>(rows));
  executions_->Increment();
}

void ModelMetrics::RecordPeakBytes(int instance, double bytes) {
  if (!recording_) return;
  if (instance < 0 || static_cast<size_t>(instance) >= instance_peak_bytes_.size()) return;
  // One batch thread per instance writes this gauge, so read-then-set is safe.
  prometheus::Gauge* gauge = instance_peak_bytes_[instance];
  if (bytes > gauge->Value()) gauge->Set(bytes);
}

ServerMetrics::ServerMetrics(MetricsOptions options, const BuildInfo& build)
    : options_(std::move(options)),
      registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("dytserve_requests_total")
                    .Help("Inference requests answered, by model, version, experiment, arm and gRPC status code; experiment "
                          "and arm are empty on calls that name a model directly.")
                    .Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram()
                           .Name("dytserve_request_duration_seconds")
                           .Help("Time from receiving an inference request to answering it.")
                           .Register(*registry_)),
      queue_seconds_(prometheus::BuildHistogram()
                         .Name("dytserve_queue_duration_seconds")
                         .Help("Time a request waited in its model's batch queue.")
                         .Register(*registry_)),
      compute_seconds_(prometheus::BuildHistogram()
                           .Name("dytserve_compute_duration_seconds")
                           .Help("Time of one batch's forward pass, including input assembly and output split.")
                           .Register(*registry_)),
      batch_size_(prometheus::BuildHistogram()
                      .Name("dytserve_batch_size")
                      .Help("Rows per executed batch.")
                      .Register(*registry_)),
      inferences_(prometheus::BuildCounter()
                      .Name("dytserve_inferences_total")
                      .Help("Rows inferred (a request may carry several rows).")
                      .Register(*registry_)),
      executions_(prometheus::BuildCounter()
                      .Name("dytserve_batch_executions_total")
                      .Help("Forward passes executed.")
                      .Register(*registry_)),
      instance_executions_(prometheus::BuildCounter()
                               .Name("dytserve_instance_batch_executions_total")
                               .Help("Forward passes executed by each model instance.")
                               .Register(*registry_)),
      in_flight_(prometheus::BuildGauge()
                     .Name("dytserve_inflight_requests")
                     .Help("Requests accepted and not yet answered.")
                     .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("dytserve_queue_depth")
                       .Help("Requests waiting in the batch queues of a model version.")
                       .Register(*registry_)),
      weight_bytes_(prometheus::BuildGauge()
                        .Name("dytserve_model_weight_bytes")
                        .Help("Bytes of parameters and buffers of one model instance.")
                        .Register(*registry_)),
      peak_batch_bytes_(prometheus::BuildGauge()
                            .Name("dytserve_model_peak_batch_bytes")
                            .Help("Largest memory of one batch so far on a model instance: the batch's inputs "
                                  "plus the peak LibTorch allocated during its forward pass.")
                            .Register(*registry_)),
      load_seconds_(prometheus::BuildGauge()
                        .Name("dytserve_model_load_duration_seconds")
                        .Help("Time the last load of a model version took, checks included.")
                        .Register(*registry_)),
      fused_dyt_(prometheus::BuildGauge()
                     .Name("dytserve_model_fused_dyt")
                     .Help("DyT subgraphs the load-time rewrite replaced with the fused operator.")
                     .Register(*registry_)),
      folded_dyt_(prometheus::BuildGauge()
                      .Name("dytserve_model_folded_dyt_affine")
                      .Help("Fused DyTs whose weight and bias were folded into the Linear layers they feed.")
                      .Register(*registry_)),
      shadow_requests_(prometheus::BuildCounter()
                           .Name("dytserve_shadow_requests_total")
                           .Help("Copies of experiment requests sent to a shadow arm, by outcome; never seen by "
                                 "clients, so kept out of dytserve_requests_total.")
                           .Register(*registry_)),
      shadow_request_seconds_(prometheus::BuildHistogram()
                                  .Name("dytserve_shadow_request_duration_seconds")
                                  .Help("Time from receiving the request to the shadow arm's answer.")
                                  .Register(*registry_)),
      shadow_difference_(prometheus::BuildHistogram()
                             .Name("dytserve_shadow_max_abs_difference")
                             .Help("Largest absolute difference between a shadow's output and the serving "
                                   "arm's, one observation per compared request and output.")
                             .Register(*registry_)),
      shadow_top1_agreements_(prometheus::BuildCounter()
                                  .Name("dytserve_shadow_top1_agreements_total")
                                  .Help("Rows (positions, for sequence outputs) where the shadow's arg-max over "
                                        "the last dim equals the serving arm's.")
                                  .Register(*registry_)),
      shadow_top1_comparisons_(prometheus::BuildCounter()
                                   .Name("dytserve_shadow_top1_comparisons_total")
                                   .Help("Rows (positions) whose arg-max was compared between shadow and "
                                         "serving arm.")
                                   .Register(*registry_)),
      shadow_mismatches_(prometheus::BuildCounter()
                             .Name("dytserve_shadow_output_mismatches_total")
                             .Help("Shadow outputs that could not be compared with the serving arm's: missing, "
                                   "another datatype or another shape.")
                             .Register(*registry_)),
      auth_refusals_(prometheus::BuildCounter()
                         .Name("dytserve_auth_refusals_total")
                         .Help("Calls refused by a token check, by gRPC service and code.")
                         .Register(*registry_)),
      feedback_(prometheus::BuildCounter()
                    .Name("dytserve_feedback_total")
                    .Help("Outcomes reported for served requests (Control/Feedback, POST /v2/feedback), by the "
                          "experiment, arm and model that served them: correct or incorrect (a label against the "
                          "top-1 prediction), reward, value; and, credited to none, unknown, expired or duplicate "
                          "request ids.")
                    .Register(*registry_)),
      feedback_reward_(prometheus::BuildCounter()
                           .Name("dytserve_feedback_reward_sum")
                           .Help("Sum of the rewards (each in [0, 1]) reported per arm; divided by "
                                 "dytserve_feedback_total{outcome=\"reward\"}: the mean reward.")
                           .Register(*registry_)),
      feedback_value_(prometheus::BuildGauge()
                          .Name("dytserve_feedback_value_sum")
                          .Help("Sum of the values reported per arm; divided by "
                                "dytserve_feedback_total{outcome=\"value\"}: the mean value.")
                          .Register(*registry_)),
      arm_share_(prometheus::BuildGauge()
                     .Name("dytserve_experiment_arm_share")
                     .Help("Share of an experiment's requests without a routing key that its policy sends to each "
                           "serving arm now (fixed: the weights; thompson: each arm's chance to draw best).")
                     .Register(*registry_)),
      arm_tripped_(prometheus::BuildGauge()
                       .Name("dytserve_experiment_arm_tripped")
                       .Help("1 while a guardrail has an experiment's arm out of the traffic, else 0.")
                       .Register(*registry_)),
      guardrail_trips_(prometheus::BuildCounter()
                           .Name("dytserve_experiment_guardrail_trips_total")
                           .Help("Guardrails that took an experiment's arm out of the traffic, by rule.")
                           .Register(*registry_)) {
  prometheus::BuildGauge()
      .Name("dytserve_build_info")
      .Help("Build facts of this server; the value is always 1.")
      .Register(*registry_)
      .Add({{"version", build.version}, {"libtorch", build.libtorch}, {"cuda", build.cuda ? "true" : "false"}})
      .Set(1);
}

std::shared_ptr<ModelMetrics> ServerMetrics::ForModel(const std::string& model, const std::string& version,
                                                    const std::vector<std::string>& devices) {
  const prometheus::Labels labels = {{"model", model}, {"version", version}};
  auto m = std::make_shared<ModelMetrics>();
  m->recording_ = options_.record;
  m->direct_ = ForArm(model, version, "", "");
  m->compute_seconds_ = &compute_seconds_.Add(labels, options_.latency_buckets_seconds);
  m->batch_size_ = &batch_size_.Add(labels, options_.batch_size_buckets);
  m->inferences_ = &inferences_.Add(labels);
  m->executions_ = &executions_.Add(labels);
  for (size_t i = 0; i < devices.size(); ++i) {
    prometheus::Labels with_instance = labels;
    with_instance["model_instance"] = std::to_string(i);
    m->instance_executions_.push_back(&instance_executions_.Add(with_instance));
    with_instance["device"] = devices[i];
    m->instance_peak_bytes_.push_back(&peak_batch_bytes_.Add(with_instance));
  }
  m->in_flight_ = &in_flight_.Add(labels);
  m->queue_depth_ = &queue_depth_.Add(labels);
  return m;
}

std::shared_ptr<RequestMetrics> ServerMetrics::MakeRequestMetrics(
    const prometheus::Labels& labels, prometheus::Family<prometheus::Counter>& requests,
    prometheus::Family<prometheus::Histogram>& seconds, prometheus::Family<prometheus::Histogram>* queue) {
  auto r = std::make_shared<RequestMetrics>();
  r->recording_ = options_.record;
  for (size_t code = 0; code < r->requests_by_code_.size(); ++code) {
    prometheus::Labels with_code = labels;
    with_code["code"] = CodeLabel(static_cast<absl::StatusCode>(code));
    r->requests_by_code_[code] = &requests.Add(with_code);
  }
  r->request_seconds_ = &seconds.Add(labels, options_.latency_buckets_seconds);
  if (queue != nullptr) r->queue_seconds_ = &queue->Add(labels, options_.latency_buckets_seconds);
  return r;
}

std::shared_ptr<RequestMetrics> ServerMetrics::ForArm(const std::string& model, const std::string& version,
                                                      const std::string& experiment, const std::string& arm) {
  const prometheus::Labels labels = {
      {"model", model}, {"version", version}, {"experiment", experiment}, {"arm", arm}};
  return MakeRequestMetrics(labels, requests_, request_seconds_, &queue_seconds_);
}

std::shared_ptr<ShadowMetrics> ServerMetrics::ForShadow(const std::string& model, const std::string& version,
                                                        const std::string& experiment, const std::string& arm,
                                                        const std::vector<std::string>& outputs) {
  const prometheus::Labels labels = {
      {"model", model}, {"version", version}, {"experiment", experiment}, {"arm", arm}};
  auto s = std::make_shared<ShadowMetrics>();
  s->recording_ = options_.record;
  s->requests_ = MakeRequestMetrics(labels, shadow_requests_, shadow_request_seconds_, nullptr);
  s->outputs_ = outputs;
  // Differences span float rounding (1e-7) to disagreement (>1).
  static const std::vector<double> kDifferenceBuckets = {1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100};
  for (const std::string& output : outputs) {
    const prometheus::Labels with_output = {{"experiment", experiment}, {"arm", arm}, {"output", output}};
    s->max_abs_difference_.push_back(&shadow_difference_.Add(with_output, kDifferenceBuckets));
    s->top1_agreements_.push_back(&shadow_top1_agreements_.Add(with_output));
    s->top1_comparisons_.push_back(&shadow_top1_comparisons_.Add(with_output));
    s->mismatches_.push_back(&shadow_mismatches_.Add(with_output));
  }
  return s;
}

void ServerMetrics::SetWeightBytes(const std::string& model, const std::string& version, int instance,
                                   const std::string& device, double bytes) {
  weight_bytes_
      .Add({{"model", model}, {"version", version}, {"model_instance", std::to_string(instance)}, {"device", device}})
      .Set(bytes);
}

void ServerMetrics::SetDytRewrite(const std::string& model, const std::string& version, double fused,
                                  double folded) {
  fused_dyt_.Add({{"model", model}, {"version", version}}).Set(fused);
  folded_dyt_.Add({{"model", model}, {"version", version}}).Set(folded);
}

void ServerMetrics::SetLoadSeconds(const std::string& model, const std::string& version, double seconds) {
  load_seconds_.Add({{"model", model}, {"version", version}}).Set(seconds);
}

void ServerMetrics::RecordFeedback(const std::string& experiment, const std::string& arm, const std::string& model,
                                   absl::string_view outcome, double amount) {
  const std::map<std::string, std::string> labels = {{"experiment", experiment}, {"arm", arm}, {"model", model}};
  std::map<std::string, std::string> with_outcome = labels;
  with_outcome["outcome"] = std::string(outcome);
  feedback_.Add(with_outcome).Increment();
  if (outcome == "reward") feedback_reward_.Add(labels).Increment(amount);
  if (outcome == "value") feedback_value_.Add(labels).Increment(amount);
}

void ServerMetrics::SetArmShare(const std::string& experiment, const std::string& arm, double share, bool tripped) {
  arm_share_.Add({{"experiment", experiment}, {"arm", arm}}).Set(share);
  arm_tripped_.Add({{"experiment", experiment}, {"arm", arm}}).Set(tripped ? 1 : 0);
}

void ServerMetrics::CountGuardrailTrip(const std::string& experiment, const std::string& arm,
                                       const std::string& rule) {
  guardrail_trips_.Add({{"experiment", experiment}, {"arm", arm}, {"rule", rule}}).Increment();
}

}  // namespace dytserve
