// The Open Inference Protocol (KServe v2) service: a thin callback-API adapter
// over InferenceEngine. ModelInfer hands its call to the model's batch
// thread, except when the instance is idle: then the handler's thread runs
// the forward pass itself (Batcher::Schedule's may_run_inline). Every other
// handler answers at once.
#ifndef DYTSERVE_SERVER_GRPC_INFERENCE_SERVICE_H_
#define DYTSERVE_SERVER_GRPC_INFERENCE_SERVICE_H_

#include "inference/grpc_service.grpc.pb.h"
#include "server/core/inference_engine.h"
#include "server/grpc/auth.h"
#include "server/grpc/control_service.h"

namespace dytserve {

class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // None is owned; all must outlive the service. `auth` guards every call
  // but ServerLive and ServerReady, which probes make without a token, and
  // Triton's repository calls, which `control` serves behind its admin token.
  InferenceService(InferenceEngine* engine, const TokenAuth* auth, ControlService* control)
      : engine_(engine), auth_(auth), control_(control) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx, const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx, const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx, const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest* req,
                                           inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx, const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override;

  // Triton's extensions.
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>* ModelStreamInfer(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx, const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx,
                                            const inference::RepositoryIndexRequest* req,
                                            inference::RepositoryIndexResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(grpc::CallbackServerContext* ctx,
                                                const inference::RepositoryModelLoadRequest* req,
                                                inference::RepositoryModelLoadResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(grpc::CallbackServerContext* ctx,
                                                  const inference::RepositoryModelUnloadRequest* req,
                                                  inference::RepositoryModelUnloadResponse* resp) override;

 private:
  InferenceEngine* const engine_;
  const TokenAuth* const auth_;
  ControlService* const control_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_INFERENCE_SERVICE_H_
