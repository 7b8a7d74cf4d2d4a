// A minimal HTTP/1.1 server for Prometheus scrapes: GET /metrics answers the
// text exposition format of every registered collectable.
//
// Why not prometheus-cpp's Exposer: its civetweb fails to start in a process
// that also links LibTorch ("null context when constructing CivetServer"), and
// it cannot bind port 0. Scrapes are rare and small, so one thread answering
// one connection at a time is enough; a slow client is cut off by a timeout.
#ifndef DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_
#define DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

namespace dytserve {

class MetricsHttpServer {
 public:
  // Binds host:port (port 0: the OS chooses) and starts answering.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::vector<std::shared_ptr<prometheus::Collectable>> collectables);
  ~MetricsHttpServer();

  int port() const { return port_; }

 private:
  MetricsHttpServer(int fd, int port, std::vector<std::shared_ptr<prometheus::Collectable>> collectables);
  void Loop();
  void Answer(int client) const;

  const int fd_;
  const int port_;
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_
