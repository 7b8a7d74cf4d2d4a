// An HTTP/1.1 server on GNU libmicrohttpd: epoll with a small thread pool, so
// a slow or idle client holds a connection slot, never a thread; handlers
// answer asynchronously (the connection is suspended meanwhile), keep-alive
// and concurrent connections come from the library. Used for the v2 REST
// endpoint and for /metrics.
#ifndef DYTSERVE_SERVER_HTTP_HTTP_SERVER_H_
#define DYTSERVE_SERVER_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

struct MHD_Daemon;

namespace dytserve {

struct HttpRequest {
  std::string method;
  std::string path;  // without the query
  std::string body;
  // A request header's value, or "" when absent (names are case-insensitive).
  std::function<std::string(absl::string_view name)> header;
};

struct HttpResponse {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Called exactly once per request, from any thread.
using HttpRespond = std::function<void(HttpResponse)>;
using HttpHandler = std::function<void(const HttpRequest&, HttpRespond)>;

class HttpServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 0;  // 0: the OS chooses
    // A body over this is answered 413 without being kept.
    size_t max_body_bytes = 64 << 20;
    // Request line and headers of one request; past it, 431.
    size_t max_header_bytes = 32 * 1024;
    int threads = 2;
    // An idle connection (between requests, or mid-request) is closed after this.
    int idle_timeout_s = 30;
    int max_connections = 4096;
    // PEM contents; with both, HTTPS. With client_ca too, clients must
    // present a certificate it signed.
    std::string tls_cert, tls_key, tls_client_ca;
  };

  // `name` goes into errors ("--http_port"). The handler must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const Options& options, absl::string_view name,
                                                           HttpHandler handler);
  // Stops accepting and closes every connection; waits for the pool threads.
  // Handlers still running must not respond after this returns: callers stop
  // the work that would first (the engine's drain).
  ~HttpServer();

  int port() const { return port_; }

  // JSON error body {"error": message}.
  static HttpResponse Error(int code, absl::string_view message);

 private:
  HttpServer(HttpHandler handler, size_t max_body_bytes) : handler_(std::move(handler)), max_body_bytes_(max_body_bytes) {}
  friend struct HttpServerAccess;

  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return waiting_ == 0; }

  const HttpHandler handler_;
  const size_t max_body_bytes_;
  bool verify_clients_ = false;  // set before the daemon starts
  absl::Mutex mu_;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;  // requests handed to the handler, not yet answered
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_HTTP_HTTP_SERVER_H_
