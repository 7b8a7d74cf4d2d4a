#include "server/metrics/server_metrics.h"

#include "absl/strings/ascii.h"

namespace dytserve {
namespace {

// "RESOURCE_EXHAUSTED" for the `code` label, as gRPC spells codes.
std::string CodeLabel(absl::StatusCode code) {
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

}  // namespace

void ModelMetrics::RecordRequest(absl::StatusCode code, double total_seconds) {
  if (!recording_) return;
  const auto index = static_cast<size_t>(code);
  if (index < requests_by_code_.size()) requests_by_code_[index]->Increment();
  request_seconds_->Observe(total_seconds);
}

void ModelMetrics::RecordBatch(int instance, int64_t rows, double compute_seconds) {
  if (!recording_) return;
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
                    .Help("Inference requests answered, by model, version and gRPC status code.")
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
  for (size_t code = 0; code < m->requests_by_code_.size(); ++code) {
    prometheus::Labels with_code = labels;
    with_code["code"] = CodeLabel(static_cast<absl::StatusCode>(code));
    m->requests_by_code_[code] = &requests_.Add(with_code);
  }
  m->request_seconds_ = &request_seconds_.Add(labels, options_.latency_buckets_seconds);
  m->queue_seconds_ = &queue_seconds_.Add(labels, options_.latency_buckets_seconds);
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

}  // namespace dytserve
