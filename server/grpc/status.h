// The one place where absl::Status becomes grpc::Status.
#ifndef DYTSERVE_SERVER_GRPC_STATUS_H_
#define DYTSERVE_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace dytserve {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_STATUS_H_
