// dytserve-server: flags, wiring, signals. Everything with behaviour lives in
// core/ (engine), grpc/ (transport) and metrics/.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <malloc.h>

#include <atomic>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/core/cpu_block_cache.h"
#include "server/core/device.h"
#include "server/core/inference_engine.h"
#include "server/core/log.h"
#include "server/grpc/auth.h"
#include "server/grpc/control_service.h"
#include "server/grpc/inference_service.h"
#include "server/metrics/cpu_cache_collector.h"
#include "server/metrics/device_memory_collector.h"
#include "server/http/http_server.h"
#include "server/http/rest_service.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/process_collector.h"
#include "server/metrics/server_metrics.h"

ABSL_FLAG(std::string, model_repository, "",
          "Directory holding <model>/config.pbtxt and <model>/<version>/model.pt (TorchScript) or model.pt2 "
          "(AOTInductor)");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC and metrics ports bind to (127.0.0.1, [::1], 0.0.0.0)");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port; 0 lets the OS choose");
ABSL_FLAG(int, metrics_port, 8002, "Prometheus /metrics port; 0 lets the OS choose");
ABSL_FLAG(int, http_port, 8000, "v2 HTTP/REST port; 0 lets the OS choose; -1 serves no REST");
ABSL_FLAG(bool, strict_readiness, true, "Report the server ready only when every model in the repository loaded");
ABSL_FLAG(int, max_message_mb, 64, "Largest gRPC request or response, in MiB");
ABSL_FLAG(int, intra_op_threads, 0, "LibTorch intra-op threads for the whole process; 0 keeps LibTorch's default");
ABSL_FLAG(std::string, latency_buckets, "",
          "Comma-separated histogram bucket bounds in seconds for latency metrics; empty keeps the defaults");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain file; with --tls_key, gRPC is served over TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key file of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM file of the CAs whose client certificates are accepted: mutual TLS, clients without a "
          "certificate signed by one of them are refused");
ABSL_FLAG(bool, record_metrics, true,
          "Record per-request metrics; off only to measure their cost (the families stay, at zero)");
ABSL_FLAG(std::string, admin_token_file, "",
          "File holding the bearer token that control calls (experiments) must send; empty: no check");
ABSL_FLAG(std::string, inference_token_file, "",
          "File holding the bearer token inference calls must send (liveness, readiness and health stay open); "
          "empty: no check");
ABSL_FLAG(std::string, feedback_token_file, "",
          "File holding the bearer token outcome feedback (Control/Feedback, POST /v2/feedback) must send; "
          "separate from the admin token; empty: no check");
ABSL_FLAG(int64_t, feedback_capacity, 100000,
          "Answered requests remembered for outcome feedback (who served them, their top-1); 0: no feedback");
ABSL_FLAG(int, feedback_ttl_s, 3600, "Seconds after its answer that a request still takes feedback");
ABSL_FLAG(std::string, experiment_state_file, "",
          "File that keeps what experiments learned (policy rewards, guardrail figures, arms taken out) across "
          "restarts: read at start, written every 10 s and at shutdown; empty: kept in memory only");
ABSL_FLAG(int, max_connection_age_s, 0,
          "Close client connections after this many seconds (with a grace period for calls in flight), so "
          "clients re-resolve a headless Service and find new replicas; 0: never");
ABSL_FLAG(int64_t, max_request_elements, int64_t{1} << 28,
          "Most tensor elements one request may declare over all its inputs; 0: no limit");
ABSL_FLAG(int64_t, max_request_rows, 0, "Most rows one request may carry; 0: the model's max_batch_size only");
ABSL_FLAG(int, malloc_trim_s, 10,
          "Give freed heap memory back to the OS every this many seconds (and cached CPU blocks unused since the "
          "previous time); 0: never");
ABSL_FLAG(int, cpu_block_cache_mb, 1024,
          "Keep freed CPU blocks of 32 MiB and more (activations, outputs) for reuse, up to this many MiB, instead of "
          "mapping and page-faulting them anew on every forward pass; 0: off");
ABSL_FLAG(int, drain_timeout_s, 30,
          "Longest an unload or reload waits for the old version's queued and running requests");
ABSL_FLAG(int, shutdown_grace_s, 10, "Seconds in-flight calls get to finish after SIGTERM/SIGINT");

namespace dytserve {
namespace {

constexpr char kVersion[] = "0.1.0";

int g_signal_pipe[2] = {-1, -1};

// Async-signal-safe: only write(2). A second signal while shutting down is
// written too and never read: the graceful shutdown already under way goes on.
void OnSignal(int signal_number) {
  const int saved = errno;
  [[maybe_unused]] ssize_t n = write(g_signal_pipe[1], &signal_number, sizeof(signal_number));
  errno = saved;
}

absl::StatusOr<std::string> ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) return absl::NotFoundError(absl::StrCat(flag, "=", path, ": cannot be read or is empty"));
  return text.str();
}

// The TLS files' contents; all empty when TLS is off.
struct TlsPems {
  std::string cert, key, client_ca;
};

// Insecure unless both TLS files are given; one without the other is an
// error, and so is a client CA without TLS. `pems` gets the files' contents
// (the REST endpoint serves HTTPS with them).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(TlsPems* pems) {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (cert.empty() && key.empty()) {
    if (!client_ca.empty()) return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
    return grpc::InsecureServerCredentials();
  }
  if (cert.empty() || key.empty()) return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  absl::StatusOr<std::string> cert_pem = ReadFile("--tls_cert", cert);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile("--tls_key", key);
  if (!key_pem.ok()) return key_pem.status();
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  pems->cert = *cert_pem;
  pems->key = *key_pem;
  if (!client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadFile("--tls_client_ca", client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    options.pem_root_certs = *ca_pem;
    pems->client_ca = *ca_pem;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

// No flag, no token (the check is off); a flag naming a bad file is an error.
absl::StatusOr<std::string> LoadToken(absl::string_view flag, const std::string& path) {
  if (path.empty()) return std::string();
  return ReadTokenFile(flag, path);
}

int Fail(const std::string& message) {
  LogError(message);
  return 2;
}

std::string HostPort(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
  return v6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

// Step 1: every flag, checked, in one place. An error names the flag.
struct ServerOptions {
  std::string repo_path;
  std::string host;
  int grpc_port = 0;
  int metrics_port = 0;
  int http_port = -1;  // -1: no REST
  TlsPems tls;
  int max_message_bytes = 0;
  int intra_op_threads = 0;
  MetricsOptions metrics;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::string admin_token;
  std::string inference_token;
  std::string feedback_token;
  std::string experiment_state_file;
  InferenceEngine::Options engine;
  int max_connection_age_s = 0;
  int malloc_trim_s = 0;
  int cpu_block_cache_mb = 0;
  absl::Duration drain_timeout;
  absl::Duration shutdown_grace;
};

absl::StatusOr<ServerOptions> OptionsFromFlags() {
  ServerOptions o;
  o.repo_path = absl::GetFlag(FLAGS_model_repository);
  if (o.repo_path.empty()) return absl::InvalidArgumentError("--model_repository is required");
  o.host = absl::GetFlag(FLAGS_host);
  o.grpc_port = absl::GetFlag(FLAGS_grpc_port);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  for (auto [name, port] : {std::pair{"--grpc_port", o.grpc_port}, std::pair{"--metrics_port", o.metrics_port}}) {
    if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat(name, "=", port, " is not a port (0-65535)"));
  }
  o.http_port = absl::GetFlag(FLAGS_http_port);
  if (o.http_port < -1 || o.http_port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http_port=", o.http_port, " is not a port (0-65535, or -1 for none)"));
  }
  const int max_message_mb = absl::GetFlag(FLAGS_max_message_mb);
  if (max_message_mb < 1 || max_message_mb > 2047) {
    return absl::InvalidArgumentError(absl::StrCat("--max_message_mb=", max_message_mb, " is outside 1..2047"));
  }
  o.max_message_bytes = max_message_mb * 1024 * 1024;
  o.intra_op_threads = absl::GetFlag(FLAGS_intra_op_threads);
  if (o.intra_op_threads < 0) return absl::InvalidArgumentError("--intra_op_threads must be >= 0");

  o.metrics.record = absl::GetFlag(FLAGS_record_metrics);
  if (const std::string buckets = absl::GetFlag(FLAGS_latency_buckets); !buckets.empty()) {
    o.metrics.latency_buckets_seconds.clear();
    for (absl::string_view part : absl::StrSplit(buckets, ',')) {
      double bound = 0;
      if (!absl::SimpleAtod(part, &bound) || bound <= 0 ||
          (!o.metrics.latency_buckets_seconds.empty() && bound <= o.metrics.latency_buckets_seconds.back())) {
        return absl::InvalidArgumentError(
            absl::StrCat("--latency_buckets: '", part, "' is not a positive bound above the previous one"));
      }
      o.metrics.latency_buckets_seconds.push_back(bound);
    }
  }

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentials(&o.tls);
  if (!credentials.ok()) return credentials.status();
  o.credentials = *std::move(credentials);

  if (absl::GetFlag(FLAGS_shutdown_grace_s) < 0) return absl::InvalidArgumentError("--shutdown_grace_s must be >= 0");
  if (absl::GetFlag(FLAGS_drain_timeout_s) < 0) return absl::InvalidArgumentError("--drain_timeout_s must be >= 0");
  o.shutdown_grace = absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_s));
  o.drain_timeout = absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s));
  o.malloc_trim_s = absl::GetFlag(FLAGS_malloc_trim_s);
  if (o.malloc_trim_s < 0) return absl::InvalidArgumentError("--malloc_trim_s must be >= 0");
  o.cpu_block_cache_mb = absl::GetFlag(FLAGS_cpu_block_cache_mb);
  if (o.cpu_block_cache_mb < 0 || o.cpu_block_cache_mb > (1 << 24)) {
    return absl::InvalidArgumentError("--cpu_block_cache_mb must be in 0..16777216");
  }
  o.engine.server_version = kVersion;
  o.engine.strict_readiness = absl::GetFlag(FLAGS_strict_readiness);
  o.engine.max_request_elements = absl::GetFlag(FLAGS_max_request_elements);
  o.engine.max_request_rows = absl::GetFlag(FLAGS_max_request_rows);
  if (absl::GetFlag(FLAGS_feedback_capacity) < 0 || absl::GetFlag(FLAGS_feedback_capacity) > 100000000) {
    return absl::InvalidArgumentError("--feedback_capacity must be in 0..100000000");
  }
  if (absl::GetFlag(FLAGS_feedback_ttl_s) < 1) return absl::InvalidArgumentError("--feedback_ttl_s must be >= 1");
  o.engine.feedback_capacity = static_cast<size_t>(absl::GetFlag(FLAGS_feedback_capacity));
  o.engine.feedback_ttl = absl::Seconds(absl::GetFlag(FLAGS_feedback_ttl_s));
  o.experiment_state_file = absl::GetFlag(FLAGS_experiment_state_file);
  if (o.engine.max_request_elements < 0 || o.engine.max_request_rows < 0) {
    return absl::InvalidArgumentError("--max_request_elements and --max_request_rows must be >= 0");
  }
  o.max_connection_age_s = absl::GetFlag(FLAGS_max_connection_age_s);
  if (o.max_connection_age_s < 0 || o.max_connection_age_s > 86400 * 365) {
    return absl::InvalidArgumentError("--max_connection_age_s must be in 0..31536000");
  }
  absl::StatusOr<std::string> admin = LoadToken("--admin_token_file", absl::GetFlag(FLAGS_admin_token_file));
  if (!admin.ok()) return admin.status();
  o.admin_token = *std::move(admin);
  absl::StatusOr<std::string> inference = LoadToken("--inference_token_file", absl::GetFlag(FLAGS_inference_token_file));
  if (!inference.ok()) return inference.status();
  o.inference_token = *std::move(inference);
  absl::StatusOr<std::string> feedback = LoadToken("--feedback_token_file", absl::GetFlag(FLAGS_feedback_token_file));
  if (!feedback.ok()) return feedback.status();
  o.feedback_token = *std::move(feedback);
  return o;
}

// A handler, not a blocked mask + sigwait: threads that gRPC starts during
// static initialisation do not inherit a mask set in main(), and a signal
// delivered to one of them would kill the process outright.
absl::Status InstallSignalHandlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) return absl::InternalError("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return absl::OkStatus();
}

// Step 2: the transport-free core: threads, the CPU block cache, metrics, the
// model repository and the engine with its experiments.
struct Core {
  CpuBlockCache* block_cache = nullptr;  // process-wide, never freed; null when off
  std::unique_ptr<ServerMetrics> metrics;
  std::unique_ptr<InferenceEngine> engine;
};

absl::StatusOr<Core> StartCore(const ServerOptions& o) {
  if (o.intra_op_threads > 0) at::set_num_threads(o.intra_op_threads);
  // The wheel's LibTorch does its matrix products in MKL, threaded by the
  // same OpenMP pool as every other intra-op loop: one setting covers both.
  LogInfo(absl::StrCat("threads: LibTorch intra-op ", at::get_num_threads(), " (OpenMP; MKL's BLAS shares it)"));
  Core core;
  if (o.cpu_block_cache_mb > 0) {
    // Before any model loads, so that every tensor of theirs can use it.
    CpuBlockCache::Options cache_options;
    cache_options.max_cached_bytes = int64_t{o.cpu_block_cache_mb} << 20;
    absl::StatusOr<CpuBlockCache*> installed = CpuBlockCache::Install(cache_options);
    if (!installed.ok()) return installed.status();
    core.block_cache = *installed;
  }
  const bool cuda = CudaAvailable();
  core.metrics = std::make_unique<ServerMetrics>(o.metrics, ServerMetrics::BuildInfo{kVersion, TORCH_VERSION, cuda});
  LogInfo(absl::StrCat("dytserve ", kVersion, ", LibTorch ", TORCH_VERSION,
#ifdef DYTSERVE_WITH_CUDA
                       " (CUDA build), CUDA ", cuda ? "available" : "not available",
#else
                       " (CPU build)",
#endif
                       ", ", at::get_num_threads(), " intra-op threads"));

  ModelRepository::LoadReport report;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repository =
      ModelRepository::Load(o.repo_path, core.metrics.get(), &report);
  if (!repository.ok()) return repository.status();
  if (report.loaded.empty()) LogWarning("no model loaded; the server answers NOT_FOUND to every inference");
  core.engine = std::make_unique<InferenceEngine>(o.engine, *std::move(repository), core.metrics.get());
  std::vector<absl::Status> experiment_failures;
  if (absl::Status s = core.engine->LoadExperiments(o.repo_path, &experiment_failures); !s.ok()) {
    LogError(absl::StrCat("experiments not loaded: ", s.message()));
  }
  for (const absl::Status& failure : experiment_failures) LogError(failure.message());
  const v1::ExperimentList experiments = core.engine->router().List();
  for (const v1::Experiment& e : experiments.experiments()) {
    LogInfo(absl::StrCat("experiment '", e.name(), "' loaded with ", e.arms_size(), " arms"));
  }
  if (!o.experiment_state_file.empty()) {
    if (absl::Status s = core.engine->router().LoadStates(o.experiment_state_file); !s.ok()) return s;
  }
  return core;
}

// Step 3: the gRPC services over the engine, their tokens, and the health
// statuses they keep up to date.
struct Services {
  Services(const ServerOptions& o, Core& core)
      : admin_auth(o.admin_token, "dytserve.v1.Control", core.metrics.get()),
        inference_auth(o.inference_token, "inference.GRPCInferenceService", core.metrics.get()),
        rest_admin_auth(o.admin_token, "v2 HTTP repository", core.metrics.get()),
        rest_inference_auth(o.inference_token, "v2 HTTP", core.metrics.get()),
        feedback_auth(o.feedback_token, "dytserve.v1.Control/Feedback", core.metrics.get()),
        rest_feedback_auth(o.feedback_token, "v2 HTTP feedback", core.metrics.get()),
        control(core.engine.get(), &admin_auth, &feedback_auth, o.drain_timeout, [this] { UpdateHealth(); }),
        inference(core.engine.get(), &inference_auth, &control),
        rest(core.engine.get(), &rest_inference_auth, &rest_admin_auth, &rest_feedback_auth, o.drain_timeout,
             [this] { UpdateHealth(); }),
        engine(core.engine.get()) {}

  // Every model's and experiment's serving status, and the server's.
  void UpdateHealth() {
    grpc::HealthCheckServiceInterface* h = health.load();
    if (h == nullptr) return;  // set once the server exists; load and unload calls only come after
    for (const std::string& name : engine->repository().discovered()) h->SetServingStatus(name, engine->ModelReady(name, ""));
    const v1::ExperimentList experiments = engine->router().List();
    for (const v1::Experiment& e : experiments.experiments()) {
      h->SetServingStatus(e.name(), engine->ModelReady(e.name(), ""));
    }
    h->SetServingStatus("", engine->Ready());
  }

  const TokenAuth admin_auth;
  const TokenAuth inference_auth;
  const TokenAuth rest_admin_auth;
  const TokenAuth rest_inference_auth;
  const TokenAuth feedback_auth;
  const TokenAuth rest_feedback_auth;
  ControlService control;  // before `inference`, which serves Triton's repository calls through it
  InferenceService inference;
  RestService rest;
  InferenceEngine* const engine;
  std::atomic<grpc::HealthCheckServiceInterface*> health{nullptr};
};

// Step 4: listen (gRPC and /metrics), and say so on stdout, once.
struct Listening {
  std::unique_ptr<MetricsHttpServer> metrics_server;
  std::unique_ptr<HttpServer> http_server;  // null without REST
  std::unique_ptr<grpc::Server> grpc_server;
};

absl::StatusOr<Listening> Serve(const ServerOptions& o, Core& core, Services& services) {
  Listening l;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {
      core.metrics->registry(), std::make_shared<ProcessCollector>(), std::make_shared<DeviceMemoryCollector>()};
  if (CpuBlockCache* cache = core.block_cache; cache != nullptr) {
    collectables.push_back(std::make_shared<CpuCacheCollector>([cache] {
      const CpuBlockCache::Stats s = cache->stats();
      return CpuCacheFigures{s.in_use_bytes, s.cached_bytes, s.reused, s.mapped};
    }));
  }
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics_server =
      MetricsHttpServer::Start(o.host, o.metrics_port, std::move(collectables));
  if (!metrics_server.ok()) return metrics_server.status();
  l.metrics_server = *std::move(metrics_server);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(HostPort(o.host, o.grpc_port), o.credentials, &bound_port);
  builder.RegisterService(&services.inference);
  builder.RegisterService(&services.control);
  if (o.max_connection_age_s > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, o.max_connection_age_s * 1000);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30 * 1000);
  }
  builder.SetMaxReceiveMessageSize(o.max_message_bytes);
  builder.SetMaxSendMessageSize(o.max_message_bytes);
  l.grpc_server = builder.BuildAndStart();
  if (l.grpc_server == nullptr || bound_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for gRPC on ", HostPort(o.host, o.grpc_port)));
  }
  services.health.store(l.grpc_server->GetHealthCheckService());
  services.UpdateHealth();

  std::string http;
  if (o.http_port >= 0) {
    HttpServer::Options http_options;
    http_options.host = o.host;
    http_options.port = o.http_port;
    http_options.max_body_bytes = static_cast<size_t>(o.max_message_bytes);
    http_options.threads = 4;
    http_options.tls_cert = o.tls.cert;
    http_options.tls_key = o.tls.key;
    http_options.tls_client_ca = o.tls.client_ca;
    RestService* rest = &services.rest;
    absl::StatusOr<std::unique_ptr<HttpServer>> http_server = HttpServer::Start(
        http_options, "--http_port", [rest](const HttpRequest& r, HttpRespond respond) { rest->Handle(r, std::move(respond)); });
    if (!http_server.ok()) return http_server.status();
    l.http_server = *std::move(http_server);
    http = absl::StrCat(" http=", HostPort(o.host, l.http_server->port()));
  }

  std::printf("dytserve listening grpc=%s metrics=%s%s\n", HostPort(o.host, bound_port).c_str(),
              HostPort(o.host, l.metrics_server->port()).c_str(), http.c_str());
  std::fflush(stdout);
  return l;
}

// After the grace period, how long the calls answered UNAVAILABLE (and
// forward passes already running) get to reach their clients.
constexpr absl::Duration kAnswerMargin = absl::Seconds(3);

// Step 5: serve until SIGTERM/SIGINT, then drain: health goes NOT_SERVING,
// gRPC refuses new calls at once and waits for accepted ones, whose tasks the
// batch threads keep computing. Whatever is still queued when the grace
// period ends is completed with UNAVAILABLE, so that Shutdown can return.
void RunUntilSignalThenDrain(const ServerOptions& o, Core& core, Services& services, Listening& l) {
  // glibc keeps freed heap pages mapped, so a burst (an overload, a big
  // batch) would leave resident memory at its high-water mark for good and
  // look like a leak; giving free pages back now and then keeps RSS honest.
  absl::Notification stopping;
  std::thread trimmer;
  if (o.malloc_trim_s > 0) {
    trimmer = std::thread([&stopping, trim_s = o.malloc_trim_s, cache = core.block_cache] {
      while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(trim_s))) {
        if (cache != nullptr) cache->ReleaseIdle();
        malloc_trim(0);
      }
    });
  }
  std::thread state_saver;
  Router& router = core.engine->router();
  auto save_state = [&router, &o] {
    if (absl::Status s = router.SaveStates(o.experiment_state_file); !s.ok()) LogWarning(s.message());
  };
  if (!o.experiment_state_file.empty()) {
    state_saver = std::thread([&stopping, save_state] {
      while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(10))) save_state();
    });
  }
  int signal_number = 0;
  while (read(g_signal_pipe[0], &signal_number, sizeof(signal_number)) != sizeof(signal_number)) {
  }
  stopping.Notify();
  if (trimmer.joinable()) trimmer.join();
  if (state_saver.joinable()) state_saver.join();
  LogInfo(absl::StrCat("received signal ", signal_number, ", shutting down"));
  services.health.load()->Shutdown();  // every service reports NOT_SERVING from here on
  const absl::Time grace_end = absl::Now() + o.shutdown_grace;
  absl::Notification drained;
  InferenceEngine& engine = *core.engine;
  std::thread enforcer([&] {
    if (!drained.WaitForNotificationWithDeadline(grace_end)) engine.Shutdown();
  });
  // gRPC cancels the calls still open at its deadline, and a client sees
  // CANCELLED, which no retry policy retries. So its deadline comes a few
  // seconds after the grace period: at grace_end the engine answers what
  // is still queued with UNAVAILABLE (retried on another replica), and only
  // a forward pass running past the margin is cut.
  l.grpc_server->Shutdown(absl::ToChronoTime(grace_end + kAnswerMargin));
  drained.Notify();
  enforcer.join();
  engine.Shutdown();
  l.grpc_server->Wait();
  l.http_server.reset();  // once every REST answer is out (the engine completed the rest)
  if (!o.experiment_state_file.empty()) save_state();  // after the last answer: nothing it taught is lost
  LogInfo("stopped");
}

int Run() {
  absl::StatusOr<ServerOptions> options = OptionsFromFlags();
  if (!options.ok()) return Fail(std::string(options.status().message()));
  if (absl::Status s = InstallSignalHandlers(); !s.ok()) return Fail(std::string(s.message()));
  absl::StatusOr<Core> core = StartCore(*options);
  if (!core.ok()) return Fail(std::string(core.status().message()));
  Services services(*options, *core);
  absl::StatusOr<Listening> listening = Serve(*options, *core, services);
  if (!listening.ok()) return Fail(std::string(listening.status().message()));
  RunUntilSignalThenDrain(*options, *core, services, *listening);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  // --help lists this program's flags (absl's default looks for a file named
  // after the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) { return absl::StrContains(path, "server/main.cc"); };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "Serves TorchScript and AOTInductor models over the Open Inference Protocol (gRPC and HTTP/REST) with\n"
      "Prometheus metrics.\n"
      "  dytserve-server --model_repository=DIR [--grpc_port=N] [--http_port=N] [--metrics_port=N]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "dytserve-server: unexpected argument '%s' (flags are --name=value)\n", rest[1]);
    return 2;
  }
  // Debian builds Abseil with the mutex deadlock detector on: a lock-order
  // graph updated on every acquisition, 1-2% of a small request's CPU. The
  // unit and integration tests, which take the same locks in-process, keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return dytserve::Run();
}
