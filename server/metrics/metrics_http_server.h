// GET /metrics: the text exposition format of every registered collectable,
// on the same HTTP library as the REST endpoint (server/http/http_server.h).
// Event-driven, so connections that never finish their headers hold no
// thread and a scrape is answered while they wait out their timeout.
//
// Why not prometheus-cpp's Exposer: its civetweb cannot bind port 0, and it
// failed to start in a process that linked Debian's LibTorch.
#ifndef DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_
#define DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "server/http/http_server.h"

namespace dytserve {

class MetricsHttpServer {
 public:
  // Binds host:port (port 0: the OS chooses) and starts answering.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, std::vector<std::shared_ptr<prometheus::Collectable>> collectables);

  int port() const { return http_->port(); }

 private:
  explicit MetricsHttpServer(std::vector<std::shared_ptr<prometheus::Collectable>> collectables)
      : collectables_(std::move(collectables)) {}
  void Answer(const HttpRequest& request, const HttpRespond& respond) const;

  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<HttpServer> http_;  // last: stopped before what it serves goes
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_METRICS_HTTP_SERVER_H_
