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
    if (s.ok()) {
      LogInfo("experiment '" + req->experiment().name() + "' created");
      if (on_models_changed_) on_models_changed_();  // its health status
    }
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

grpc::ServerUnaryReactor* ControlService::Feedback(grpc::CallbackServerContext* ctx, const v1::FeedbackRequest* req,
                                                   v1::FeedbackResponse* resp) {
  return Answer(ctx, *feedback_, [&]() -> absl::Status {
    Outcome outcome;
    switch (req->outcome_case()) {
      case v1::FeedbackRequest::kLabel:
        outcome.kind = Outcome::Kind::kLabel;
        outcome.label = req->label();
        break;
      case v1::FeedbackRequest::kReward:
        outcome.kind = Outcome::Kind::kReward;
        outcome.number = req->reward();
        break;
      case v1::FeedbackRequest::kValue:
        outcome.kind = Outcome::Kind::kValue;
        outcome.number = req->value();
        break;
      case v1::FeedbackRequest::OUTCOME_NOT_SET:
        return absl::InvalidArgumentError("outcome: set one of label, reward or value");
    }
    absl::StatusOr<FeedbackResult> result = engine_->Feedback(req->id(), outcome);
    if (!result.ok()) return result.status();
    resp->set_recorded(*result == FeedbackResult::kRecorded);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ControlService::ResumeArm(grpc::CallbackServerContext* ctx, const v1::ResumeArmRequest* req,
                                                    v1::ResumeArmResponse*) {
  return Answer(ctx, *admin_, [&] { return router_->ResumeArm(req->experiment(), req->arm()); });
}

grpc::ServerUnaryReactor* ControlService::GetExperimentState(grpc::CallbackServerContext* ctx,
                                                             const v1::GetExperimentStateRequest* req,
                                                             v1::ExperimentState* resp) {
  return Answer(ctx, *admin_, [&]() -> absl::Status {
    absl::StatusOr<v1::ExperimentState> state = router_->State(req->name());
    if (!state.ok()) return state.status();
    *resp = *std::move(state);
    return absl::OkStatus();
  });
}

ControlService::~ControlService() {
  absl::MutexLock lock(&threads_mu_);
  for (std::thread& t : threads_) t.join();
}

grpc::ServerUnaryReactor* ControlService::Background(grpc::CallbackServerContext* ctx,
                                                     std::function<absl::Status()> work) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::MutexLock lock(&threads_mu_);
  threads_.emplace_back([reactor, work = std::move(work)] { reactor->Finish(ToGrpcStatus(work())); });
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::Load(grpc::CallbackServerContext* ctx, std::string name,
                                               v1::LoadModelResponse* resp) {
  return Background(ctx, [this, name = std::move(name), resp] {
    absl::StatusOr<std::vector<int64_t>> versions = engine_->LoadModel(name, drain_timeout_);
    if (!versions.ok()) return versions.status();
    if (resp != nullptr) {
      for (int64_t v : *versions) resp->add_versions(v);
    }
    if (on_models_changed_) on_models_changed_();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ControlService::Unload(grpc::CallbackServerContext* ctx, std::string name) {
  return Background(ctx, [this, name = std::move(name)] {
    absl::Status s = engine_->UnloadModel(name, drain_timeout_);
    if (s.ok() && on_models_changed_) on_models_changed_();
    return s;
  });
}

grpc::ServerUnaryReactor* ControlService::RepositoryIndex(grpc::CallbackServerContext* ctx,
                                                          const v1::RepositoryIndexRequest*,
                                                          v1::RepositoryIndexResponse* resp) {
  return Answer(ctx, *admin_, [&] {
    for (const ModelRepository::IndexEntry& e : engine_->repository().Index()) {
      v1::RepositoryIndexResponse::Model* m = resp->add_models();
      m->set_name(e.name);
      for (int64_t v : e.versions) m->add_versions(v);
      m->set_state(e.state);
      m->set_reason(e.reason);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* ControlService::LoadModel(grpc::CallbackServerContext* ctx, const v1::LoadModelRequest* req,
                                                    v1::LoadModelResponse* resp) {
  if (absl::Status s = admin_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  return Load(ctx, req->name(), resp);
}

grpc::ServerUnaryReactor* ControlService::UnloadModel(grpc::CallbackServerContext* ctx,
                                                      const v1::UnloadModelRequest* req, v1::UnloadModelResponse*) {
  if (absl::Status s = admin_->Check(*ctx); !s.ok()) return FinishNow(ctx, s);
  return Unload(ctx, req->name());
}

}  // namespace dytserve
