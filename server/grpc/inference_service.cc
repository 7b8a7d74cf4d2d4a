#include "server/grpc/inference_service.h"

#include <chrono>

#include "absl/time/clock.h"
#include "server/grpc/status.h"

namespace dytserve {
namespace {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Time DeadlineOf(const grpc::CallbackServerContext& ctx) {
  const auto deadline = ctx.deadline();
  // gRPC spells "no deadline" as a time point centuries ahead; absl::FromChrono
  // would overflow on it.
  if (deadline - std::chrono::system_clock::now() > std::chrono::hours(24 * 365)) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
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
  absl::Status submitted = engine_->Submit(*req, resp, std::move(call));
  if (!submitted.ok()) reactor->Finish(ToGrpcStatus(submitted));  // the engine did not take the call
  return reactor;
}

}  // namespace dytserve
