// Bearer-token checks for gRPC calls ("authorization: Bearer <token>").
// Tokens are compared in constant time and never logged; every refusal is
// counted in dytserve_auth_refusals_total{service, code}.
#ifndef DYTSERVE_SERVER_GRPC_AUTH_H_
#define DYTSERVE_SERVER_GRPC_AUTH_H_

#include <optional>
#include <string>

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

// Equal contents, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// The token in `path`, surrounding whitespace removed; an error naming
// `flag` when the file cannot be read or holds no token.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path);

class TokenAuth {
 public:
  // An empty `token` lets every call through. `metrics` must outlive this.
  TokenAuth(std::string token, const std::string& service, ServerMetrics* metrics);

  bool enabled() const { return !token_.empty(); }
  // OK; UNAUTHENTICATED when no bearer token came; PERMISSION_DENIED when
  // the token is wrong.
  absl::Status Check(const grpc::ServerContextBase& ctx) const;
  // The same on an authorization header's value (nullopt: absent), for HTTP.
  absl::Status CheckAuthorization(std::optional<absl::string_view> authorization) const;

 private:
  const std::string token_;
  const std::string service_;
  prometheus::Counter* const unauthenticated_;
  prometheus::Counter* const denied_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_GRPC_AUTH_H_
