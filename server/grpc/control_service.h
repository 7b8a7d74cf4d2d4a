// dytserve.v1.Control: experiments at run time. Every call passes the admin
// token check first; the work itself is the engine's router's.
#ifndef DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_
#define DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_

#include "dytserve/v1/control.grpc.pb.h"
#include "server/core/router.h"
#include "server/grpc/auth.h"

namespace dytserve {

class ControlService final : public v1::Control::CallbackService {
 public:
  // Neither is owned; both must outlive the service.
  ControlService(Router* router, const TokenAuth* admin) : router_(router), admin_(admin) {}

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

 private:
  Router* const router_;
  const TokenAuth* const admin_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_CONTROL_SERVICE_H_
