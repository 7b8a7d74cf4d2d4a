// Minimal leveled logging to stderr. The server's stdout carries exactly one
// line (the "listening" line), so every diagnostic goes to stderr.
#ifndef DYTSERVE_SERVER_CORE_LOG_H_
#define DYTSERVE_SERVER_CORE_LOG_H_

#include "absl/strings/string_view.h"

namespace dytserve {

enum class LogLevel { kInfo, kWarning, kError };

void Log(LogLevel level, absl::string_view message);
inline void LogInfo(absl::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(absl::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(absl::string_view m) { Log(LogLevel::kError, m); }

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_LOG_H_
