#include "server/metrics/process_collector.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/resource.h>

namespace dytserve {
namespace {

prometheus::MetricFamily Single(const char* name, const char* help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime") {
      in >> value;
      return value;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name, which may contain spaces, so split after ')'.
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string s; fields >> s;) f.push_back(s);
  if (f.size() < 22) return {};
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  // f[0] is field 3 of proc(5): utime=14, stime=15, starttime=22, vsize=23, rss=24.
  const double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
  const double start = BootTimeSeconds() + std::stod(f[19]) / ticks;
  const double vsize = std::stod(f[20]);
  const double rss = std::stod(f[21]) * page;

  double open_fds = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++open_fds;
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);

  using prometheus::MetricType;
  return {
      Single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::Counter,
             cpu),
      Single("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, rss),
      Single("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, vsize),
      Single("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
             MetricType::Gauge, start),
      Single("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, open_fds),
      Single("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
             static_cast<double>(limit.rlim_cur)),
  };
}

}  // namespace dytserve
