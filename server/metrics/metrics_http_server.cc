#include "server/metrics/metrics_http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace dytserve {
namespace {

constexpr int kIoTimeoutMs = 5000;
constexpr size_t kMaxRequestBytes = 16 * 1024;

void SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

std::string Response(const char* status, const char* type, const std::string& body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type, "\r\nContent-Length: ", body.size(),
                      "\r\nConnection: close\r\n\r\n", body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[') bare = bare.substr(1, bare.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* info = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(bare.c_str(), service.c_str(), &hints, &info) != 0 || info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("metrics host '", host, "' is not a numeric address"));
  }
  const int fd = socket(info->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, info->ai_addr, info->ai_addrlen) == 0 && listen(fd, 16) == 0;
  freeaddrinfo(info);
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ok = ok && getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (!ok) {
    const std::string error = std::strerror(errno);
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port, ": ", error));
  }
  const int bound = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                                     : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(fd, bound, std::move(collectables)));
}

MetricsHttpServer::MetricsHttpServer(int fd, int port, std::vector<std::shared_ptr<prometheus::Collectable>> c)
    : fd_(fd), port_(port), collectables_(std::move(c)) {
  thread_ = std::thread([this] { Loop(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  stopping_.store(true);
  shutdown(fd_, SHUT_RDWR);
  thread_.join();
  close(fd_);
}

void MetricsHttpServer::Loop() {
  while (!stopping_.load()) {
    pollfd p{fd_, POLLIN, 0};
    // Wake up now and then so that a shutdown is seen even if no client comes.
    if (poll(&p, 1, 200) <= 0) continue;
    const int client = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    Answer(client);
    close(client);
  }
}

void MetricsHttpServer::Answer(int client) const {
  // One deadline for the whole request, so that a client trickling bytes
  // cannot hold the (single) answering thread.
  timeval timeout{kIoTimeoutMs / 1000, 0};
  setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kIoTimeoutMs);
  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() >= kMaxRequestBytes) {
      SendAll(client, Response("431 Request Header Fields Too Large", "text/plain", "request too large\n"));
      return;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{client, POLLIN, 0};
    if (left.count() <= 0 || stopping_.load() || poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200))) < 0) {
      return;
    }
    if ((p.revents & POLLIN) == 0) continue;
    const ssize_t n = recv(client, buf, sizeof(buf), 0);
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
  }
  const size_t line_end = request.find("\r\n");
  const std::string line = request.substr(0, line_end);
  if (!absl::StartsWith(line, "GET ")) {
    SendAll(client, Response("405 Method Not Allowed", "text/plain", "only GET is served\n"));
    return;
  }
  const std::string target = line.substr(4, line.find(' ', 4) - 4);
  if (target != "/metrics" && !absl::StartsWith(target, "/metrics?")) {
    SendAll(client, Response("404 Not Found", "text/plain", "try /metrics\n"));
    return;
  }
  std::vector<prometheus::MetricFamily> families;
  for (const auto& c : collectables_) {
    std::vector<prometheus::MetricFamily> part = c->Collect();
    families.insert(families.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  std::ostringstream body;
  prometheus::TextSerializer().Serialize(body, families);
  SendAll(client, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body.str()));
}

}  // namespace dytserve
