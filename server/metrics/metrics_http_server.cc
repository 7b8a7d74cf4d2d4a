#include "server/metrics/metrics_http_server.h"

#include <sstream>

#include "prometheus/text_serializer.h"

namespace dytserve {

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, std::vector<std::shared_ptr<prometheus::Collectable>> collectables) {
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(std::move(collectables)));
  HttpServer::Options options;
  options.host = host;
  options.port = port;
  options.max_body_bytes = 16 * 1024;  // a scrape has no body
  options.max_header_bytes = 16 * 1024;
  options.idle_timeout_s = 10;
  const MetricsHttpServer* self = server.get();
  absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(
      options, "--metrics_port", [self](const HttpRequest& request, HttpRespond respond) { self->Answer(request, respond); });
  if (!http.ok()) return http.status();
  server->http_ = *std::move(http);
  return server;
}

void MetricsHttpServer::Answer(const HttpRequest& request, const HttpRespond& respond) const {
  HttpResponse r;
  r.content_type = "text/plain; charset=utf-8";
  if (request.path != "/metrics") {
    r.code = 404;
    r.body = "try /metrics\n";
  } else if (request.method != "GET") {
    r.code = 405;
    r.body = "only GET is served\n";
  } else {
    std::vector<prometheus::MetricFamily> families;
    for (const auto& c : collectables_) {
      std::vector<prometheus::MetricFamily> part = c->Collect();
      families.insert(families.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
    std::ostringstream body;
    prometheus::TextSerializer().Serialize(body, families);
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = body.str();
  }
  respond(std::move(r));
}

}  // namespace dytserve
