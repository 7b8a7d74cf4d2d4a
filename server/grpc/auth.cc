#include "server/grpc/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"

namespace dytserve {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Walk the longer length whatever the contents, so the time says nothing
  // about where the first difference is.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(flag, "=", path, ": cannot be read"));
  std::stringstream text;
  text << in.rdbuf();
  std::string token(absl::StripAsciiWhitespace(text.str()));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": holds no token"));
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(flag, "=", path,
                                                     ": the token must be one line of printable ASCII"));
    }
  }
  return token;
}

TokenAuth::TokenAuth(std::string token, const std::string& service, ServerMetrics* metrics)
    : token_(std::move(token)),
      service_(service),
      unauthenticated_(&metrics->AuthRefusals(service, "UNAUTHENTICATED")),
      denied_(&metrics->AuthRefusals(service, "PERMISSION_DENIED")) {}

absl::Status TokenAuth::Check(const grpc::ServerContextBase& ctx) const {
  if (token_.empty()) return absl::OkStatus();
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) return CheckAuthorization(std::nullopt);
  return CheckAuthorization(absl::string_view(it->second.data(), it->second.size()));
}

absl::Status TokenAuth::CheckAuthorization(std::optional<absl::string_view> authorization) const {
  if (token_.empty()) return absl::OkStatus();
  if (!authorization.has_value()) {
    unauthenticated_->Increment();
    return absl::UnauthenticatedError(absl::StrCat(service_, ": this call needs \"authorization: Bearer <token>\""));
  }
  absl::string_view value = *authorization;
  if (!absl::ConsumePrefix(&value, "Bearer ")) {
    unauthenticated_->Increment();
    return absl::UnauthenticatedError(absl::StrCat(service_, ": the authorization value is not \"Bearer <token>\""));
  }
  if (!ConstantTimeEquals(value, token_)) {
    denied_->Increment();
    return absl::PermissionDeniedError(absl::StrCat(service_, ": the bearer token is not the one configured"));
  }
  return absl::OkStatus();
}

}  // namespace dytserve
