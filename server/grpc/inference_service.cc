#include "server/grpc/inference_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/grpc/status.h"
#include "server/grpc/stream_infer.h"

namespace dytserve {
namespace {

// Triton's repository calls name a repository; dytserve has one, unnamed.
// Parameters (a config or files sent with the load) are not supported.
absl::Status CheckRepositoryCall(const std::string& repository,
                                 const google::protobuf::Map<std::string, inference::ModelRepositoryParameter>& params) {
  if (!repository.empty()) {
    return absl::NotFoundError(absl::StrCat("repository_name '", repository,
                                            "': dytserve serves one repository; leave repository_name empty"));
  }
  std::vector<std::string> names;
  for (const auto& [name, value] : params) {
    // Triton's client always sends it; dytserve has no ensembles, so a model
    // has no dependents to unload either way.
    if (name == "unload_dependents" && value.parameter_choice_case() == inference::ModelRepositoryParameter::kBoolParam) {
      continue;
    }
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  if (!names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("parameters not supported: ", absl::StrJoin(names, ", "),
                                                   " (dytserve loads configs and files from its repository only)"));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* ctx,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* resp) {
  resp->set_live(engine_->Live());
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* ctx,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* resp) {
  resp->set_ready(engine_->Ready());
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  resp->set_ready(engine_->ModelReady(req->name(), req->version()));
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(grpc::CallbackServerContext* ctx,
                                                           const inference::ServerMetadataRequest*,
                                                           inference::ServerMetadataResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  *resp = engine_->ServerMetadata();
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(grpc::CallbackServerContext* ctx,
                                                          const inference::ModelMetadataRequest* req,
                                                          inference::ModelMetadataResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  absl::StatusOr<inference::ModelMetadataResponse> metadata = engine_->ModelMetadata(req->name(), req->version());
  if (metadata.ok()) *resp = *std::move(metadata);
  return FinishNow(ctx, metadata.status());
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelInferRequest* req,
                                                       inference::ModelInferResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  InferCall call;
  call.deadline = DeadlineOf(*ctx);
  const auto& metadata = ctx->client_metadata();
  if (auto it = metadata.find("x-routing-key"); it != metadata.end()) {
    call.routing_key.assign(it->second.data(), it->second.size());
  }
  call.is_cancelled = [ctx] { return ctx->IsCancelled(); };
  call.done = [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); };
  // gRPC's callback pool adds threads when its own are all busy, so a
  // handler may compute; `req` lives until the reactor is done.
  call.may_run_inline = true;
  absl::Status submitted = engine_->Submit(*req, resp, std::move(call));
  if (!submitted.ok()) reactor->Finish(ToGrpcStatus(submitted));  // the engine did not take the call
  return reactor;
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferenceService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  return StartStreamInfer(ctx, engine_, auth_->Check(*ctx));
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                        const inference::ModelConfigRequest* req,
                                                        inference::ModelConfigResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  absl::StatusOr<inference::ModelConfigResponse> config = engine_->ModelConfig(req->name(), req->version());
  if (config.ok()) *resp = *std::move(config);
  return FinishNow(ctx, config.status());
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(grpc::CallbackServerContext* ctx,
                                                            const inference::ModelStatisticsRequest* req,
                                                            inference::ModelStatisticsResponse* resp) {
  if (absl::Status s = auth_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  absl::StatusOr<inference::ModelStatisticsResponse> stats = engine_->ModelStatistics(req->name(), req->version());
  if (stats.ok()) *resp = *std::move(stats);
  return FinishNow(ctx, stats.status());
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(grpc::CallbackServerContext* ctx,
                                                            const inference::RepositoryIndexRequest* req,
                                                            inference::RepositoryIndexResponse* resp) {
  if (absl::Status s = control_->CheckAdmin(*ctx); !s.ok()) return FinishNow(ctx, s);
  if (absl::Status s = CheckRepositoryCall(req->repository_name(), {}); !s.ok()) return FinishNow(ctx, s);
  *resp = engine_->RepositoryIndex(req->ready());
  return FinishNow(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(grpc::CallbackServerContext* ctx,
                                                                const inference::RepositoryModelLoadRequest* req,
                                                                inference::RepositoryModelLoadResponse*) {
  if (absl::Status s = control_->CheckAdmin(*ctx); !s.ok()) return FinishNow(ctx, s);
  if (absl::Status s = CheckRepositoryCall(req->repository_name(), req->parameters()); !s.ok()) {
    return FinishNow(ctx, s);
  }
  return control_->Load(ctx, req->model_name(), nullptr);
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(grpc::CallbackServerContext* ctx,
                                                                  const inference::RepositoryModelUnloadRequest* req,
                                                                  inference::RepositoryModelUnloadResponse*) {
  if (absl::Status s = control_->CheckAdmin(*ctx); !s.ok()) return FinishNow(ctx, s);
  if (absl::Status s = CheckRepositoryCall(req->repository_name(), req->parameters()); !s.ok()) {
    return FinishNow(ctx, s);
  }
  return control_->Unload(ctx, req->model_name());
}

}  // namespace dytserve
