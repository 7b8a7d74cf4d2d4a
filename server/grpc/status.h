// The one place where absl::Status becomes grpc::Status, and the other
// conversions every gRPC handler shares.
#ifndef DYTSERVE_SERVER_GRPC_STATUS_H_
#define DYTSERVE_SERVER_GRPC_STATUS_H_

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>
#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace dytserve {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Finishes a unary call at once with `status`.
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& status);

// The call's deadline; InfiniteFuture when the client set none.
absl::Time DeadlineOf(const grpc::CallbackServerContext& ctx);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_STATUS_H_
