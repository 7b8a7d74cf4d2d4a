#include "server/core/log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dytserve {

void Log(LogLevel level, absl::string_view message) {
  const char* tag = level == LogLevel::kInfo ? "I" : level == LogLevel::kWarning ? "W" : "E";
  // One fputs per line keeps lines from concurrent threads whole.
  const std::string line =
      absl::StrCat(tag, absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::UTCTimeZone()),
                   " dytserve] ", message, "\n");
  std::fputs(line.c_str(), stderr);
}

}  // namespace dytserve
