// What Client holds behind its pimpl; shared by the files that implement it.
#ifndef DYTSERVE_CLIENT_SRC_CLIENT_IMPL_H_
#define DYTSERVE_CLIENT_SRC_CLIENT_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "dytserve/v1/control.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"

namespace dytserve {

// The one place where grpc::Status becomes absl::Status on the client side.
inline absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

struct Client::Impl {
  ClientOptions options;
  std::vector<std::unique_ptr<inference::GRPCInferenceService::Stub>> stubs;
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health;
  std::vector<std::unique_ptr<v1::Control::Stub>> control;
  std::atomic<size_t> next{0};
  std::atomic<int64_t> async_in_flight{0};

  size_t Pick() { return next.fetch_add(1, std::memory_order_relaxed) % stubs.size(); }

  void Prepare(grpc::ClientContext* ctx, absl::Duration deadline) const {
    const absl::Duration d = deadline > absl::ZeroDuration() ? deadline : options.default_deadline;
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
    if (!options.bearer_token.empty()) ctx->AddMetadata("authorization", "Bearer " + options.bearer_token);
  }
};

}  // namespace dytserve

#endif  // DYTSERVE_CLIENT_SRC_CLIENT_IMPL_H_
