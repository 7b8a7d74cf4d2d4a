#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace dytserve {

// One request on one connection, from its first byte to its response.
struct Exchange {
  HttpRequest request;
  bool over_limit = false;
  absl::Mutex mu;
  std::optional<HttpResponse> response ABSL_GUARDED_BY(mu);
  bool dispatched ABSL_GUARDED_BY(mu) = false;
};

struct HttpServerAccess {
  static MHD_Result Queue(MHD_Connection* connection, const HttpResponse& r) {
    MHD_Response* response =
        MHD_create_response_from_buffer(r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
    for (const auto& [name, value] : r.headers) MHD_add_response_header(response, name.c_str(), value.c_str());
    const MHD_Result queued = MHD_queue_response(connection, static_cast<unsigned>(r.code), response);
    MHD_destroy_response(response);
    return queued;
  }

  // With a client CA: the peer's certificate chain verifies against it.
  // libmicrohttpd asks for the certificate; checking it is ours.
  static bool ClientVerified(MHD_Connection* connection) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (info == nullptr || info->tls_session == nullptr) return false;
    unsigned status = 0;
    const auto session = static_cast<gnutls_session_t>(info->tls_session);
    return gnutls_certificate_verify_peers2(session, &status) == GNUTLS_E_SUCCESS && status == 0;
  }

  static MHD_Result Access(void* cls, MHD_Connection* connection, const char* url, const char* method,
                           const char* /*version*/, const char* upload_data, size_t* upload_data_size,
                           void** con_cls) {
    auto* server = static_cast<HttpServer*>(cls);
    auto* exchange = static_cast<Exchange*>(*con_cls);
    if (exchange == nullptr) {
      exchange = new Exchange;
      *con_cls = exchange;
      exchange->request.method = method;
      exchange->request.path = url;
      exchange->request.header = [connection](absl::string_view name) {
        const char* value = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, std::string(name).c_str());
        return value == nullptr ? std::string() : std::string(value);
      };
      // A declared body over the limit is refused before a byte of it is read.
      const char* length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      uint64_t declared = 0;
      if (length != nullptr && absl::SimpleAtoi(length, &declared) && declared > server->max_body_bytes_) {
        exchange->over_limit = true;
      }
      if (server->verify_clients_ && !ClientVerified(connection)) {
        absl::MutexLock lock(&exchange->mu);
        exchange->dispatched = true;
        exchange->response = HttpServer::Error(
            MHD_HTTP_FORBIDDEN, "this endpoint needs a client certificate signed by the server's --tls_client_ca");
        return Queue(connection, *exchange->response);
      }
      return MHD_YES;
    }
    if (*upload_data_size > 0) {
      if (!exchange->over_limit) {
        if (exchange->request.body.size() + *upload_data_size > server->max_body_bytes_) {
          exchange->over_limit = true;
          exchange->request.body = std::string();
        } else {
          exchange->request.body.append(upload_data, *upload_data_size);
        }
      }
      *upload_data_size = 0;
      return MHD_YES;
    }

    {
      absl::MutexLock lock(&exchange->mu);
      if (exchange->response.has_value()) return Queue(connection, *exchange->response);
      if (exchange->dispatched) return MHD_YES;  // resumed before the answer came; keep waiting
      exchange->dispatched = true;
      if (exchange->over_limit) {
        exchange->response = HttpServer::Error(
            MHD_HTTP_CONTENT_TOO_LARGE, absl::StrCat("the request body exceeds ", server->max_body_bytes_, " bytes"));
        return Queue(connection, *exchange->response);
      }
      // Suspended before the handler runs, so that its answer, from this
      // thread or another, always finds the connection suspended to resume.
      MHD_suspend_connection(connection);
    }
    {
      absl::MutexLock count(&server->mu_);
      ++server->waiting_;
    }
    HttpRespond respond = [server, connection, exchange](HttpResponse r) {
      {
        absl::MutexLock lock(&exchange->mu);
        exchange->response = std::move(r);
      }
      MHD_resume_connection(connection);
      absl::MutexLock count(&server->mu_);
      --server->waiting_;
    };
    try {
      server->handler_(exchange->request, respond);
    } catch (const std::exception& e) {
      respond(HttpServer::Error(MHD_HTTP_INTERNAL_SERVER_ERROR, e.what()));
    }
    return MHD_YES;
  }

  static void Completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<Exchange*>(*con_cls);
    *con_cls = nullptr;
  }
};

HttpResponse HttpServer::Error(int code, absl::string_view message) {
  HttpResponse r;
  r.code = code;
  r.body = nlohmann::json{{"error", std::string(message)}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const Options& o, absl::string_view name,
                                                              HttpHandler handler) {
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(handler), o.max_body_bytes));
  server->verify_clients_ = !o.tls_client_ca.empty();
  sockaddr_storage address{};
  std::string host = o.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(o.port));
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(o.port));
    flags |= MHD_USE_IPv6;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(name, ": host '", o.host, "' is not an IP address"));
  }
  const bool tls = !o.tls_cert.empty() && !o.tls_key.empty();
  if (tls) flags |= MHD_USE_TLS;
  std::vector<MHD_OptionItem> options = {
      {MHD_OPTION_SOCK_ADDR, 0, &address},
      {MHD_OPTION_THREAD_POOL_SIZE, o.threads, nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, o.idle_timeout_s, nullptr},
      {MHD_OPTION_CONNECTION_LIMIT, o.max_connections, nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(o.max_header_bytes), nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&HttpServerAccess::Completed), nullptr},
  };
  if (tls) {
    options.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char*>(o.tls_cert.c_str())});
    options.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char*>(o.tls_key.c_str())});
    if (!o.tls_client_ca.empty()) {
      options.push_back({MHD_OPTION_HTTPS_MEM_TRUST, 0, const_cast<char*>(o.tls_client_ca.c_str())});
    }
  }
  options.push_back({MHD_OPTION_END, 0, nullptr});
  server->daemon_ = MHD_start_daemon(flags, static_cast<uint16_t>(o.port), nullptr, nullptr, &HttpServerAccess::Access,
                                     server.get(), MHD_OPTION_ARRAY, options.data(), MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrCat(name, ": cannot listen on ", o.host, ":", o.port,
                                               tls ? " (HTTPS)" : "", ": ", std::strerror(errno)));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info == nullptr ? o.port : info->port;
  return server;
}

HttpServer::~HttpServer() {
  if (daemon_ == nullptr) return;
  // libmicrohttpd must not be stopped with a connection still suspended:
  // wait for the answers in flight (the engine's drain completes them).
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &HttpServer::Idle), absl::Seconds(60));
  }
  MHD_stop_daemon(daemon_);
}

}  // namespace dytserve
