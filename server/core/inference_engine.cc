#include "server/core/inference_engine.h"

#include <cstring>

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/triton_config.h"

namespace dytserve {
namespace {

// The effective deadline is the earliest of the call's own deadline, the
// model's default_timeout_us and the request's "timeout_us" parameter: a
// request may shorten its time, never lengthen it past the model's default.
absl::Status ApplyTimeout(const inference::ModelInferRequest& request, const ModelSpec& spec, absl::Time received,
                          absl::Time* deadline) {
  const uint64_t default_us = spec.config.dynamic_batching().default_timeout_us();
  if (default_us > 0) *deadline = std::min(*deadline, received + absl::Microseconds(default_us));
  auto it = request.parameters().find("timeout_us");
  if (it == request.parameters().end()) return absl::OkStatus();
  if (it->second.parameter_choice_case() != inference::InferParameter::kInt64Param ||
      it->second.int64_param() <= 0) {
    return absl::InvalidArgumentError("parameter 'timeout_us' must be a positive int64_param");
  }
  *deadline = std::min(*deadline, received + absl::Microseconds(it->second.int64_param()));
  return absl::OkStatus();
}

// The limits of `options` against the shapes `request` declares.
absl::Status CheckLimits(const inference::ModelInferRequest& request, const ModelSpec& spec,
                         const InferenceEngine::Options& options) {
  int64_t elements = 0;
  for (const auto& input : request.inputs()) {
    int64_t n = 1;
    for (int64_t d : input.shape()) {
      // Negative dims are the codec's to reject, naming the input.
      if (d <= 0) {
        n = 0;
        break;
      }
      // An overflowing shape is the codec's to reject, with its own message.
      if (d > (int64_t{1} << 62) / n) return absl::OkStatus();
      n *= d;
    }
    // Saturating, so that several inputs of up to 2^62 elements each cannot
    // overflow the sum.
    elements = n > (int64_t{1} << 62) - elements ? int64_t{1} << 62 : elements + n;
    if (options.max_request_rows > 0 && spec.batched() && input.shape_size() > 0 &&
        input.shape(0) > options.max_request_rows) {
      return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': ", input.shape(0),
                                                     " rows, over the server's --max_request_rows=",
                                                     options.max_request_rows));
    }
  }
  if (options.max_request_elements > 0 && elements > options.max_request_elements) {
    return absl::InvalidArgumentError(absl::StrCat("the request's inputs hold ", elements,
                                                   " elements, over the server's --max_request_elements=",
                                                   options.max_request_elements));
  }
  return absl::OkStatus();
}

// The "routing_key" parameter, else the transport's; INVALID_ARGUMENT when
// the parameter is not a string.
absl::StatusOr<std::string> RoutingKey(const inference::ModelInferRequest& request, const InferCall& call) {
  auto it = request.parameters().find("routing_key");
  if (it == request.parameters().end()) return call.routing_key;
  if (it->second.parameter_choice_case() != inference::InferParameter::kStringParam) {
    return absl::InvalidArgumentError("parameter 'routing_key' must be a string_param");
  }
  return it->second.string_param();
}

// Arg-max over the last dim of the first output's first vector (a
// classifier's first row of scores); -1 when it is not FP32 scores.
int64_t TopOneOfFirstOutput(const inference::ModelInferResponse& response) {
  if (response.outputs_size() == 0 || response.raw_output_contents_size() == 0) return -1;
  const auto& output = response.outputs(0);
  if (output.datatype() != "FP32" || output.shape_size() < 2) return -1;
  const int64_t width = output.shape(output.shape_size() - 1);
  const std::string& raw = response.raw_output_contents(0);
  if (width < 1 || raw.size() < static_cast<size_t>(width) * sizeof(float)) return -1;
  int64_t best = 0;
  float best_value = 0;
  for (int64_t i = 0; i < width; ++i) {
    float v;
    std::memcpy(&v, raw.data() + i * sizeof(float), sizeof(float));
    if (i == 0 || v > best_value) {
      best = i;
      best_value = v;
    }
  }
  return best;
}

}  // namespace

InferenceEngine::InferenceEngine(Options options, std::unique_ptr<ModelRepository> repository,
                                 ServerMetrics* metrics)
    : options_(std::move(options)),
      repository_(std::move(repository)),
      metrics_(metrics),
      feedback_(FeedbackStore::Options{options_.feedback_capacity, options_.feedback_ttl, RealClock::Get()}),
      failed_loads_(0),
      router_(repository_.get(), metrics) {}

InferenceEngine::~InferenceEngine() { Shutdown(); }

absl::Status InferenceEngine::Submit(const inference::ModelInferRequest& request,
                                     inference::ModelInferResponse* response, InferCall call) {
  const absl::Time received = absl::Now();
  if (shutting_down_.load()) return absl::UnavailableError("the server is shutting down");
  if (std::shared_ptr<const CompiledExperiment> experiment = router_.Find(request.model_name())) {
    return SubmitToExperiment(*experiment, request, response, std::move(call), received);
  }
  absl::StatusOr<std::shared_ptr<ModelVersion>> served =
      repository_->Find(request.model_name(), request.model_version());
  if (!served.ok()) return served.status();
  ModelVersion& model = **served;
  const bool may_run_inline = call.may_run_inline;
  std::string id = request.id().empty() ? NewRequestId() : request.id();
  RememberOnAnswer(id, Served{"", "", model.spec().name, model.version_string(), -1}, response, &call);
  absl::StatusOr<std::unique_ptr<BatchTask>> task =
      MakeTask(model, model.metrics()->direct(), request, response, std::move(call), received);
  if (!task.ok()) return task.status();
  response->set_id(std::move(id));
  return Schedule(model, *model.metrics()->direct(), *std::move(task), received, may_run_inline);
}

absl::StatusOr<std::unique_ptr<BatchTask>> InferenceEngine::MakeTask(ModelVersion& model,
                                                                     std::shared_ptr<RequestMetrics> metrics,
                                                                     const inference::ModelInferRequest& request,
                                                                     inference::ModelInferResponse* response,
                                                                     InferCall call, absl::Time received) {
  // Under overload most requests are refused: refuse them before paying for
  // their decoding, which would take CPU from the requests being served.
  if (model.full()) {
    metrics->RecordRequest(absl::StatusCode::kResourceExhausted, absl::ToDoubleSeconds(absl::Now() - received));
    return absl::ResourceExhaustedError(absl::StrCat("model '", model.spec().name, "': every queue is full (max_queue_size ",
                                                     model.spec().config.dynamic_batching().max_queue_size(), ")"));
  }
  if (absl::Status s = CheckLimits(request, model.spec(), options_); !s.ok()) {
    metrics->RecordRequest(s.code(), absl::ToDoubleSeconds(absl::Now() - received));
    return absl::Status(s.code(), absl::StrCat("model '", model.spec().name, "': ", s.message()));
  }
  absl::StatusOr<DecodedRequest> decoded = absl::InternalError("decoding did not run");
  try {
    decoded = DecodeRequest(request, model.spec());
  } catch (const std::exception& e) {
    // Allocation failure or a LibTorch check: the request fails, the server lives.
    decoded = absl::ResourceExhaustedError(absl::StrCat("cannot decode the request: ", e.what()));
  }
  if (!decoded.ok()) {
    metrics->RecordRequest(decoded.status().code(), absl::ToDoubleSeconds(absl::Now() - received));
    return absl::Status(decoded.status().code(),
                        absl::StrCat("model '", model.spec().name, "': ", decoded.status().message()));
  }
  if (absl::Status s = ApplyTimeout(request, model.spec(), received, &call.deadline); !s.ok()) {
    metrics->RecordRequest(s.code(), 0);
    return s;
  }
  if (call.deadline <= received) {
    metrics->RecordRequest(absl::StatusCode::kDeadlineExceeded, 0);
    return absl::DeadlineExceededError("the deadline passed before the request was queued");
  }

  response->set_model_name(model.spec().name);
  response->set_model_version(model.version_string());
  response->set_id(request.id());
  return std::make_unique<InferTask>(*std::move(decoded), response, std::move(call), model.metrics(),
                                     std::move(metrics), received);
}

absl::Status InferenceEngine::Schedule(ModelVersion& model, RequestMetrics& metrics, std::unique_ptr<BatchTask> task,
                                       absl::Time received, bool may_run_inline) {
  absl::Status scheduled = model.Schedule(&task, may_run_inline);
  if (!scheduled.ok()) metrics.RecordRequest(scheduled.code(), absl::ToDoubleSeconds(absl::Now() - received));
  return scheduled;
}

absl::Status InferenceEngine::SubmitToExperiment(const CompiledExperiment& experiment,
                                                 const inference::ModelInferRequest& request,
                                                 inference::ModelInferResponse* response, InferCall call,
                                                 absl::Time received) {
  const std::string& name = experiment.config.name();
  if (!experiment.broken.ok()) return experiment.broken;
  if (!request.model_version().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is an experiment: its arms choose the model "
                                                   "version, so model_version must be empty"));
  }
  absl::StatusOr<std::string> key = RoutingKey(request, call);
  if (!key.ok()) return key.status();
  const RoutedArm& arm = experiment.Pick(*key);
  const size_t index = static_cast<size_t>(&arm - experiment.serving.data());
  // A request the arm refuses (a full queue, a bad input) counts as its error.
  auto refused = [&experiment, index, received](absl::Status s) {
    if (experiment.state != nullptr) experiment.state->OnAnswered(index, false, absl::Now() - received);
    return s;
  };
  if (experiment.state != nullptr) {
    // The policy's SLO reward and the guardrails learn from every answer.
    call.done = [state = experiment.state, index, received, done = std::move(call.done)](absl::Status status) {
      state->OnAnswered(index, status.ok(), absl::Now() - received);
      done(std::move(status));
    };
  }
  (*response->mutable_parameters())["experiment"].set_string_param(name);
  (*response->mutable_parameters())["arm"].set_string_param(arm.name);

  // Which shadows get a copy is drawn now; the copies are queued only once
  // the serving arm has accepted the request.
  std::vector<std::pair<const RoutedArm*, std::shared_ptr<ShadowComparison>>> shadows;
  thread_local absl::BitGen gen;
  for (const RoutedArm& shadow : experiment.shadows) {
    if (absl::Uniform<double>(gen, 0, 1) < shadow.shadow_fraction) {
      shadows.emplace_back(&shadow, std::make_shared<ShadowComparison>(shadow.shadow_metrics));
    }
  }
  const absl::Time deadline = call.deadline;
  if (!shadows.empty()) {
    std::vector<std::shared_ptr<ShadowComparison>> comparisons;
    for (auto& [shadow, comparison] : shadows) comparisons.push_back(comparison);
    // The serving outputs are copied before the call is answered (the
    // response is gone after), compared only after.
    call.done = [done = std::move(call.done), response, comparisons](absl::Status status) {
      std::vector<ShadowComparison*> complete;
      for (const auto& c : comparisons) {
        if (c->SetServing(status, *response)) complete.push_back(c.get());
      }
      done(std::move(status));
      for (ShadowComparison* c : complete) c->Finish();
    };
  }
  // The shadows' copies are made now: once the serving arm has answered,
  // the request may be gone (its transport frees it with the call).
  std::vector<std::pair<const RoutedArm*, std::unique_ptr<BatchTask>>> shadow_tasks;
  for (auto& [shadow, comparison] : shadows) {
    std::unique_ptr<BatchTask> copy = MakeShadowTask(*shadow, request, deadline, received, comparison);
    if (copy != nullptr) shadow_tasks.emplace_back(shadow, std::move(copy));
  }
  const bool may_run_inline = call.may_run_inline;
  std::string id = request.id().empty() ? NewRequestId() : request.id();
  RememberOnAnswer(id, Served{name, arm.name, arm.model->spec().name, arm.model->version_string(), -1}, response,
                   &call);
  absl::StatusOr<std::unique_ptr<BatchTask>> task =
      MakeTask(*arm.model, arm.metrics, request, response, std::move(call), received);
  if (!task.ok()) return refused(task.status());
  response->set_id(std::move(id));
  if (absl::Status s = Schedule(*arm.model, *arm.metrics, *std::move(task), received, may_run_inline); !s.ok()) {
    return refused(s);
  }
  // Never inline: a shadow must not hold the transport's thread.
  for (auto& [shadow, copy] : shadow_tasks) {
    Schedule(*shadow->model, shadow->shadow_metrics->requests(), std::move(copy), received, false).IgnoreError();
  }
  return absl::OkStatus();
}

std::unique_ptr<BatchTask> InferenceEngine::MakeShadowTask(const RoutedArm& shadow,
                                                           const inference::ModelInferRequest& request,
                                                           absl::Time deadline, absl::Time received,
                                                           std::shared_ptr<ShadowComparison> comparison) {
  auto response = std::make_shared<inference::ModelInferResponse>();
  InferCall call;
  call.deadline = deadline;
  call.done = [response, comparison](absl::Status status) {
    if (comparison->SetShadow(status, *response)) comparison->Finish();
  };
  // Refusals (queue full, a request this model rejects) are recorded in the
  // shadow's metrics by MakeTask, and go no further.
  absl::StatusOr<std::unique_ptr<BatchTask>> task =
      MakeTask(*shadow.model, shadow.shadow_metrics->shared_requests(), request, response.get(), std::move(call),
               received);
  return task.ok() ? *std::move(task) : nullptr;
}

void InferenceEngine::RememberOnAnswer(std::string id, Served served, inference::ModelInferResponse* response,
                                       InferCall* call) {
  if (!feedback_.enabled()) return;
  call->done = [this, done = std::move(call->done), id = std::move(id), served = std::move(served),
                response](absl::Status status) mutable {
    if (status.ok()) {
      served.top1 = TopOneOfFirstOutput(*response);
      feedback_.Remember(std::move(id), std::move(served));
    }
    done(std::move(status));
  };
}

absl::StatusOr<FeedbackResult> InferenceEngine::Feedback(absl::string_view id, const Outcome& outcome) {
  if (absl::Status s = CheckOutcome(outcome); !s.ok()) return s;
  if (id.empty()) return absl::InvalidArgumentError("id: empty; send the id of the response being judged");
  Served served;
  const FeedbackResult result = feedback_.Take(id, &served);
  if (result != FeedbackResult::kRecorded) {
    metrics_->RecordFeedback("", "", "", FeedbackResultName(result), 0);
    return result;
  }
  std::shared_ptr<const CompiledExperiment> experiment =
      served.experiment.empty() ? nullptr : router_.Find(served.experiment);
  ExperimentState* state = experiment != nullptr ? experiment->state.get() : nullptr;
  if (state != nullptr && outcome.kind == Outcome::Kind::kLabel) state->OnLabel(served.arm, served.top1 == outcome.label);
  if (state != nullptr && outcome.kind == Outcome::Kind::kReward) state->OnReward(served.arm, outcome.number);
  switch (outcome.kind) {
    case Outcome::Kind::kLabel:
      metrics_->RecordFeedback(served.experiment, served.arm, served.model, served.top1 == outcome.label ? "correct" : "incorrect",
                               0);
      break;
    case Outcome::Kind::kReward:
      metrics_->RecordFeedback(served.experiment, served.arm, served.model, "reward", outcome.number);
      break;
    case Outcome::Kind::kValue:
      metrics_->RecordFeedback(served.experiment, served.arm, served.model, "value", outcome.number);
      break;
  }
  return result;
}

absl::Status InferenceEngine::LoadExperiments(const std::filesystem::path& root, std::vector<absl::Status>* failures) {
  const size_t before = failures->size();
  absl::Status s = router_.LoadFile(root, failures);
  failed_loads_ += failures->size() - before + (s.ok() ? 0 : 1);
  return s;
}

absl::StatusOr<std::vector<int64_t>> InferenceEngine::LoadModel(absl::string_view name,
                                                                absl::Duration drain_timeout) {
  if (shutting_down_.load()) return absl::UnavailableError("the server is shutting down");
  if (router_.Find(name) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is an experiment, not a model"));
  }
  return repository_->LoadModel(name, drain_timeout, [this] { router_.Refresh(); });
}

absl::Status InferenceEngine::UnloadModel(absl::string_view name, absl::Duration drain_timeout) {
  if (shutting_down_.load()) return absl::UnavailableError("the server is shutting down");
  return repository_->UnloadModel(name, drain_timeout, [this] { router_.Refresh(); });
}

bool InferenceEngine::Ready() const {
  if (shutting_down_.load()) return false;
  if (options_.strict_readiness) {
    if (failed_loads_.load() > 0) return false;  // experiments that did not load
    for (const ModelRepository::IndexEntry& e : repository_->Index()) {
      if (e.state != "READY" && e.reason != "unloaded") return false;  // a model that failed to load
    }
  }
  return !repository_->ModelNames().empty();
}

bool InferenceEngine::ModelReady(absl::string_view name, absl::string_view version) const {
  if (shutting_down_.load()) return false;
  if (std::shared_ptr<const CompiledExperiment> experiment = router_.Find(name)) {
    if (!version.empty() || !experiment->broken.ok()) return false;
    for (const RoutedArm& arm : experiment->serving) {
      if (!repository_->Find(arm.model->spec().name, arm.model->version_string()).ok()) return false;
    }
    return true;
  }
  return repository_->Find(name, version).ok();
}

inference::ServerMetadataResponse InferenceEngine::ServerMetadata() const {
  inference::ServerMetadataResponse out;
  out.set_name(options_.server_name);
  out.set_version(options_.server_version);
  // Exactly what is served: the v2 protocol's own and Triton's extensions
  // that dytserve implements.
  for (const char* extension : {"model_configuration", "statistics", "model_repository"}) out.add_extensions(extension);
  return out;
}

absl::StatusOr<std::shared_ptr<ModelVersion>> InferenceEngine::Describing(absl::string_view name,
                                                                          absl::string_view version,
                                                                          bool* experiment) const {
  // An experiment looks like a model whose inputs and outputs are its first
  // serving arm's (all arms take the same inputs); it has no versions.
  std::shared_ptr<const CompiledExperiment> compiled = router_.Find(name);
  *experiment = compiled != nullptr;
  if (compiled == nullptr) return repository_->Find(name, version);
  if (!version.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is an experiment; it has no versions"));
  }
  if (!compiled->broken.ok()) return compiled->broken;
  return compiled->serving.front().model;
}

absl::StatusOr<inference::ModelConfigResponse> InferenceEngine::ModelConfig(absl::string_view name,
                                                                            absl::string_view version) const {
  bool experiment = false;
  absl::StatusOr<std::shared_ptr<ModelVersion>> served = Describing(name, version, &experiment);
  if (!served.ok()) return served.status();
  inference::ModelConfigResponse out;
  *out.mutable_config() = ToTritonModelConfig((*served)->spec(), (*served)->format(), (*served)->device());
  if (experiment) out.mutable_config()->set_name(std::string(name));
  return out;
}

namespace {

void Fill(const DurationSum& from, inference::StatisticDuration* to) {
  to->set_count(from.count);
  to->set_ns(from.ns);
}

void FillStatistics(const ModelVersion& model, inference::ModelStatistics* out) {
  const ModelStats::Snapshot s = model.metrics()->stats().Read();
  out->set_name(model.spec().name);
  out->set_version(model.version_string());
  out->set_last_inference(s.execution_count == 0 ? 0 : static_cast<uint64_t>(absl::ToUnixMillis(s.last_inference)));
  out->set_inference_count(s.inference_count);
  out->set_execution_count(s.execution_count);
  inference::InferStatistics* infer = out->mutable_inference_stats();
  Fill(s.success, infer->mutable_success());
  Fill(s.fail, infer->mutable_fail());
  Fill(s.queue, infer->mutable_queue());
  Fill(s.compute_input, infer->mutable_compute_input());
  Fill(s.compute_infer, infer->mutable_compute_infer());
  Fill(s.compute_output, infer->mutable_compute_output());
  infer->mutable_cache_hit();
  infer->mutable_cache_miss();
  for (const auto& [rows, batch] : s.batches) {
    inference::InferBatchStatistics* b = out->add_batch_stats();
    b->set_batch_size(static_cast<uint64_t>(rows));
    Fill(batch.input, b->mutable_compute_input());
    Fill(batch.infer, b->mutable_compute_infer());
    Fill(batch.output, b->mutable_compute_output());
  }
}

}  // namespace

absl::StatusOr<inference::ModelStatisticsResponse> InferenceEngine::ModelStatistics(absl::string_view name,
                                                                                    absl::string_view version) const {
  inference::ModelStatisticsResponse out;
  if (name.empty()) {
    if (!version.empty()) return absl::InvalidArgumentError("a version was given without a model name");
    for (const std::string& model : repository_->ModelNames()) {
      for (int64_t v : repository_->Versions(model)) {
        absl::StatusOr<std::shared_ptr<ModelVersion>> served = repository_->Find(model, std::to_string(v));
        if (served.ok()) FillStatistics(**served, out.add_model_stats());  // else unloaded meanwhile
      }
    }
    return out;
  }
  if (!version.empty()) {
    absl::StatusOr<std::shared_ptr<ModelVersion>> served = repository_->Find(name, version);
    if (!served.ok()) return served.status();
    FillStatistics(**served, out.add_model_stats());
    return out;
  }
  const std::vector<int64_t> versions = repository_->Versions(name);
  if (versions.empty()) {
    if (router_.Find(name) != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "' is an experiment: ask for its arms' models (per-arm figures are in /metrics)"));
    }
    return repository_->Find(name, "").status();
  }
  for (int64_t v : versions) {
    absl::StatusOr<std::shared_ptr<ModelVersion>> served = repository_->Find(name, std::to_string(v));
    if (served.ok()) FillStatistics(**served, out.add_model_stats());
  }
  return out;
}

inference::RepositoryIndexResponse InferenceEngine::RepositoryIndex(bool ready_only) const {
  inference::RepositoryIndexResponse out;
  for (const ModelRepository::IndexEntry& e : repository_->Index()) {
    if (e.versions.empty()) {
      if (ready_only) continue;
      inference::RepositoryIndexResponse::ModelIndex* m = out.add_models();
      m->set_name(e.name);
      m->set_state(e.state);
      m->set_reason(e.reason);
      continue;
    }
    for (int64_t v : e.versions) {
      inference::RepositoryIndexResponse::ModelIndex* m = out.add_models();
      m->set_name(e.name);
      m->set_version(std::to_string(v));
      m->set_state("READY");
    }
  }
  return out;
}

absl::StatusOr<inference::ModelMetadataResponse> InferenceEngine::ModelMetadata(absl::string_view name,
                                                                                absl::string_view version) const {
  bool experiment = false;
  absl::StatusOr<std::shared_ptr<ModelVersion>> served = Describing(name, version, &experiment);
  if (!served.ok()) return served.status();
  const ModelSpec& spec = (*served)->spec();
  inference::ModelMetadataResponse out;
  out.set_name(experiment ? std::string(name) : spec.name);
  // Triton's platform names: TorchScript is "pytorch_libtorch".
  out.set_platform(experiment ? "dytserve_experiment"
                   : (*served)->format() == ModelFormat::kAotInductor ? "torch_aoti"
                                                                            : "pytorch_libtorch");
  if (!experiment) {
    for (int64_t v : repository_->Versions(name)) out.add_versions(std::to_string(v));
  }
  auto fill = [&spec](const TensorSpec& t, inference::ModelMetadataResponse::TensorMetadata* m) {
    m->set_name(t.name);
    m->set_datatype(std::string(DataTypeName(t.type)));
    for (int64_t d : spec.WireShape(t)) m->add_shape(d);
  };
  for (const TensorSpec& t : spec.inputs) {
    if (!t.generated()) fill(t, out.add_inputs());  // clients never send masks
  }
  for (const TensorSpec& t : spec.outputs) fill(t, out.add_outputs());
  return out;
}

void InferenceEngine::Shutdown() {
  shutting_down_.store(true);
  repository_->ShutdownAll();
}

}  // namespace dytserve
