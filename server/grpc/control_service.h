// dytserve.v1.Control: experiments and the model repository at run time.
// Every call passes the admin token check first; the work itself is the
// engine's. Loads and unloads take seconds (a model load, a drain), so they
// run on a thread of their own and finish the call from there.
#ifndef DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_
#define DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_

#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/v1/control.grpc.pb.h"
#include "server/core/inference_engine.h"
#include "server/grpc/auth.h"

namespace dytserve {

class ControlService final : public v1::Control::CallbackService {
 public:
  // Neither is owned; both must outlive the service. `on_models_changed`
  // runs after every successful load, unload or experiment creation (health
  // statuses).
  ControlService(InferenceEngine* engine, const TokenAuth* admin, const TokenAuth* feedback,
                 absl::Duration drain_timeout, std::function<void()> on_models_changed)
      : engine_(engine),
        router_(&engine->router()),
        admin_(admin),
        feedback_(feedback),
        drain_timeout_(drain_timeout),
        on_models_changed_(std::move(on_models_changed)) {}
  // Joins the load/unload threads (gRPC has waited for their calls).
  ~ControlService() override;

  grpc::ServerUnaryReactor* CreateExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::CreateExperimentRequest* req, v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* UpdateExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::UpdateExperimentRequest* req, v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* ctx, const v1::GetExperimentRequest* req,
                                          v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ListExperiments(grpc::CallbackServerContext* ctx,
                                            const v1::ListExperimentsRequest* req,
                                            v1::ExperimentList* resp) override;
  grpc::ServerUnaryReactor* DeleteExperiment(grpc::CallbackServerContext* ctx,
                                             const v1::DeleteExperimentRequest* req,
                                             v1::DeleteExperimentResponse* resp) override;

  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx, const v1::RepositoryIndexRequest* req,
                                            v1::RepositoryIndexResponse* resp) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* ctx, const v1::LoadModelRequest* req,
                                      v1::LoadModelResponse* resp) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* ctx, const v1::UnloadModelRequest* req,
                                        v1::UnloadModelResponse* resp) override;
  grpc::ServerUnaryReactor* Feedback(grpc::CallbackServerContext* ctx, const v1::FeedbackRequest* req,
                                     v1::FeedbackResponse* resp) override;
  grpc::ServerUnaryReactor* ResumeArm(grpc::CallbackServerContext* ctx, const v1::ResumeArmRequest* req,
                                      v1::ResumeArmResponse* resp) override;
  grpc::ServerUnaryReactor* GetExperimentState(grpc::CallbackServerContext* ctx,
                                               const v1::GetExperimentStateRequest* req,
                                               v1::ExperimentState* resp) override;

  // Shared with Triton's repository calls of inference.GRPCInferenceService.
  absl::Status CheckAdmin(const grpc::ServerContextBase& ctx) const { return admin_->Check(ctx); }
  // Loads or unloads `name` on a thread of its own (the admin check is the
  // caller's) and finishes the call with the outcome; `versions`, when not
  // null, receives the versions loaded before the call finishes.
  grpc::ServerUnaryReactor* Load(grpc::CallbackServerContext* ctx, std::string name, v1::LoadModelResponse* versions);
  grpc::ServerUnaryReactor* Unload(grpc::CallbackServerContext* ctx, std::string name);

 private:
  // Runs `work` on a thread of its own, then finishes the call with its status
  // (the admin check is the caller's).
  grpc::ServerUnaryReactor* Background(grpc::CallbackServerContext* ctx, std::function<absl::Status()> work);

  InferenceEngine* const engine_;
  Router* const router_;
  const TokenAuth* const admin_;
  const TokenAuth* const feedback_;
  const absl::Duration drain_timeout_;
  const std::function<void()> on_models_changed_;
  absl::Mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_
