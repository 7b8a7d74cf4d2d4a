#include "server/grpc/control_service.h"

#include "server/core/log.h"
#include "server/grpc/status.h"

namespace dytserve {
namespace {

// Runs `body` if the admin check passes and answers with its status. Control
// calls are rare and quick (no model work), so they run on the gRPC thread.
template <typename Body>
grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const TokenAuth& admin, Body body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status status = admin.Check(*ctx);
  if (status.ok()) status = body();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::Status Store(absl::StatusOr<v1::Experiment> result, v1::Experiment* resp) {
  if (!result.ok()) return result.status();
  *resp = *std::move(result);
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* ControlService::CreateExperiment(grpc::CallbackServerContext* ctx,
                                                           const v1::CreateExperimentRequest* req,
                                                           v1::Experiment* resp) {
  return Answer(ctx, *admin_, [&] {
    absl::Status s = Store(router_->Create(req->experiment()), resp);
    if (s.ok()) LogInfo("experiment '" + req->experiment().name() + "' created");
    return s;
  });
}

grpc::ServerUnaryReactor* ControlService::UpdateExperiment(grpc::CallbackServerContext* ctx,
                                                           const v1::UpdateExperimentRequest* req,
                                                           v1::Experiment* resp) {
  return Answer(ctx, *admin_, [&] {
    absl::Status s = Store(router_->Update(req->experiment()), resp);
    if (s.ok()) LogInfo("experiment '" + req->experiment().name() + "' updated");
    return s;
  });
}

grpc::ServerUnaryReactor* ControlService::GetExperiment(grpc::CallbackServerContext* ctx,
                                                        const v1::GetExperimentRequest* req, v1::Experiment* resp) {
  return Answer(ctx, *admin_, [&] { return Store(router_->Get(req->name()), resp); });
}

grpc::ServerUnaryReactor* ControlService::ListExperiments(grpc::CallbackServerContext* ctx,
                                                          const v1::ListExperimentsRequest*,
                                                          v1::ExperimentList* resp) {
  return Answer(ctx, *admin_, [&] {
    *resp = router_->List();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ControlService::DeleteExperiment(grpc::CallbackServerContext* ctx,
                                                           const v1::DeleteExperimentRequest* req,
                                                           v1::DeleteExperimentResponse*) {
  return Answer(ctx, *admin_, [&] {
    absl::Status s = router_->Delete(req->name());
    if (s.ok()) LogInfo("experiment '" + req->name() + "' deleted");
    return s;
  });
}

}  // namespace dytserve
