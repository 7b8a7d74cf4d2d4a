#include "loadgen/metrics_scrape.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace dytserve::loadgen {

absl::StatusOr<std::string> Scrape(const std::string& url, const std::string& bearer_token) {
  absl::string_view rest = url;
  absl::ConsumePrefix(&rest, "http://");
  const size_t slash = rest.find('/');
  const std::string host_port(rest.substr(0, slash));
  const std::string path = slash == absl::string_view::npos ? "/metrics" : std::string(rest.substr(slash));
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("--metrics_url '", url, "' has no port"));
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* info = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &info) != 0 || info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve '", host, "'"));
  }
  const int fd = socket(info->ai_family, SOCK_STREAM, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  const bool connected = fd >= 0 && connect(fd, info->ai_addr, info->ai_addrlen) == 0;
  freeaddrinfo(info);
  if (!connected) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", host_port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host_port, "\r\nConnection: close\r\n",
                   bearer_token.empty() ? "" : absl::StrCat("Authorization: Bearer ", bearer_token, "\r\n"), "\r\n");
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[8192];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.1 200") || body == std::string::npos) {
    return absl::UnavailableError(absl::StrCat("GET ", url, " did not answer 200"));
  }
  return response.substr(body + 4);
}

namespace {

// The value of label `key` on a sample line; empty when absent.
std::string LabelOf(const std::string& line, const std::string& key) {
  const std::string needle = key + "=\"";
  size_t at = line.find(needle);
  while (at != std::string::npos && at > 0 && line[at - 1] != '{' && line[at - 1] != ',') at = line.find(needle, at + 1);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  const size_t end = line.find('"', start);
  return end == std::string::npos ? "" : line.substr(start, end - start);
}

}  // namespace

std::map<std::string, ExperimentArmFigures> ExperimentArms(const std::string& scrape, const std::string& experiment) {
  std::map<std::string, ExperimentArmFigures> arms;
  std::istringstream lines(scrape);
  for (std::string line; std::getline(lines, line);) {
    const bool feedback = absl::StartsWith(line, "dytserve_feedback_total{");
    const bool share = absl::StartsWith(line, "dytserve_experiment_arm_share{");
    if (!(feedback || share) || LabelOf(line, "experiment") != experiment) continue;
    const std::string arm = LabelOf(line, "arm");
    double value = 0;
    if (arm.empty() || !absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) continue;
    ExperimentArmFigures& f = arms[arm];
    if (share) {
      f.share = value;
      continue;
    }
    const std::string outcome = LabelOf(line, "outcome");
    if (outcome == "correct") f.correct += value;
    if (outcome == "correct" || outcome == "incorrect") f.labels += value;
  }
  return arms;
}

double SumSeries(const std::string& scrape, const std::string& family, const std::vector<std::string>& models) {
  double sum = 0;
  std::istringstream lines(scrape);
  for (std::string line; std::getline(lines, line);) {
    if (!absl::StartsWith(line, family + "{")) continue;
    for (const std::string& model : models) {
      if (line.find(absl::StrCat("model=\"", model, "\"")) == std::string::npos) continue;
      double value = 0;
      if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) sum += value;
    }
  }
  return sum;
}

ServerBreakdown Breakdown(const std::string& before, const std::string& after, const std::vector<std::string>& models) {
  auto delta = [&](const std::string& family) {
    return SumSeries(after, family, models) - SumSeries(before, family, models);
  };
  ServerBreakdown b;
  const double queue_n = delta("dytserve_queue_duration_seconds_count");
  const double batches = delta("dytserve_compute_duration_seconds_count");
  const double executions = delta("dytserve_batch_executions_total");
  b.available = queue_n > 0 && batches > 0 && executions > 0;
  if (!b.available) return b;
  b.queue_us = 1e6 * delta("dytserve_queue_duration_seconds_sum") / queue_n;
  b.compute_us = 1e6 * delta("dytserve_compute_duration_seconds_sum") / batches;
  b.avg_batch = delta("dytserve_inferences_total") / executions;
  return b;
}

}  // namespace dytserve::loadgen
