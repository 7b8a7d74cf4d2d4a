#include "server/core/inference_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

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

}  // namespace

InferenceEngine::InferenceEngine(Options options, std::unique_ptr<ModelRepository> repository,
                                 size_t failed_models)
    : options_(std::move(options)), repository_(std::move(repository)), failed_models_(failed_models) {}

InferenceEngine::~InferenceEngine() { Shutdown(); }

absl::Status InferenceEngine::Submit(const inference::ModelInferRequest& request,
                                     inference::ModelInferResponse* response, InferCall call) {
  const absl::Time received = absl::Now();
  if (shutting_down_.load()) return absl::UnavailableError("the server is shutting down");
  absl::StatusOr<std::shared_ptr<ModelVersion>> served =
      repository_->Find(request.model_name(), request.model_version());
  if (!served.ok()) return served.status();
  ModelVersion& model = **served;

  absl::StatusOr<DecodedRequest> decoded = absl::InternalError("decoding did not run");
  try {
    decoded = DecodeRequest(request, model.spec());
  } catch (const std::exception& e) {
    // Allocation failure or a LibTorch check: the request fails, the server lives.
    decoded = absl::ResourceExhaustedError(absl::StrCat("cannot decode the request: ", e.what()));
  }
  if (!decoded.ok()) {
    model.metrics()->RecordRequest(decoded.status().code(), absl::ToDoubleSeconds(absl::Now() - received));
    return absl::Status(decoded.status().code(),
                        absl::StrCat("model '", model.spec().name, "': ", decoded.status().message()));
  }
  if (absl::Status s = ApplyTimeout(request, model.spec(), received, &call.deadline); !s.ok()) {
    model.metrics()->RecordRequest(s.code(), 0);
    return s;
  }
  if (call.deadline <= received) {
    model.metrics()->RecordRequest(absl::StatusCode::kDeadlineExceeded, 0);
    return absl::DeadlineExceededError("the deadline passed before the request was queued");
  }

  response->set_model_name(model.spec().name);
  response->set_model_version(model.version_string());
  response->set_id(request.id());

  std::unique_ptr<BatchTask> task =
      std::make_unique<InferTask>(*std::move(decoded), response, std::move(call), model.metrics(), received);
  absl::Status scheduled = model.Schedule(&task);
  if (!scheduled.ok()) {
    model.metrics()->RecordRequest(scheduled.code(), absl::ToDoubleSeconds(absl::Now() - received));
  }
  return scheduled;
}

bool InferenceEngine::Ready() const {
  if (shutting_down_.load()) return false;
  if (options_.strict_readiness && failed_models_ > 0) return false;
  return !repository_->ModelNames().empty();
}

bool InferenceEngine::ModelReady(absl::string_view name, absl::string_view version) const {
  return !shutting_down_.load() && repository_->Find(name, version).ok();
}

inference::ServerMetadataResponse InferenceEngine::ServerMetadata() const {
  inference::ServerMetadataResponse out;
  out.set_name(options_.server_name);
  out.set_version(options_.server_version);
  return out;
}

absl::StatusOr<inference::ModelMetadataResponse> InferenceEngine::ModelMetadata(absl::string_view name,
                                                                                absl::string_view version) const {
  absl::StatusOr<std::shared_ptr<ModelVersion>> served = repository_->Find(name, version);
  if (!served.ok()) return served.status();
  const ModelSpec& spec = (*served)->spec();
  inference::ModelMetadataResponse out;
  out.set_name(spec.name);
  out.set_platform("pytorch_libtorch");
  for (int64_t v : repository_->Versions(name)) out.add_versions(std::to_string(v));
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
