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
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/core/cpu_block_cache.h"
#include "server/core/inference_engine.h"
#include "server/core/log.h"
#include "server/grpc/auth.h"
#include "server/grpc/control_service.h"
#include "server/grpc/inference_service.h"
#include "server/metrics/cpu_cache_collector.h"
#include "server/metrics/device_memory_collector.h"
#include "server/metrics/metrics_http_server.h"
#include "server/metrics/process_collector.h"
#include "server/metrics/server_metrics.h"

ABSL_FLAG(std::string, model_repository, "", "Directory holding <model>/config.pbtxt and <model>/<version>/model.pt");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address the gRPC and metrics ports bind to (127.0.0.1, [::1], 0.0.0.0)");
ABSL_FLAG(int, grpc_port, 8001, "gRPC port; 0 lets the OS choose");
ABSL_FLAG(int, metrics_port, 8002, "Prometheus /metrics port; 0 lets the OS choose");
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

// Insecure unless both TLS files are given; one without the other is an
// error, and so is a client CA without TLS.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() {
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
  if (!client_ca.empty()) {
    absl::StatusOr<std::string> ca_pem = ReadFile("--tls_client_ca", client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    options.pem_root_certs = *ca_pem;
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

int Run() {
  const std::string repo_path = absl::GetFlag(FLAGS_model_repository);
  if (repo_path.empty()) return Fail("--model_repository is required");
  const int grpc_port = absl::GetFlag(FLAGS_grpc_port);
  const int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  for (auto [name, port] : {std::pair{"--grpc_port", grpc_port}, std::pair{"--metrics_port", metrics_port}}) {
    if (port < 0 || port > 65535) return Fail(absl::StrCat(name, "=", port, " is not a port (0-65535)"));
  }
  if (absl::GetFlag(FLAGS_max_message_mb) < 1 || absl::GetFlag(FLAGS_max_message_mb) > 2047) {
    return Fail(absl::StrCat("--max_message_mb=", absl::GetFlag(FLAGS_max_message_mb), " is outside 1..2047"));
  }
  const int intra_op_threads = absl::GetFlag(FLAGS_intra_op_threads);
  if (intra_op_threads < 0) return Fail("--intra_op_threads must be >= 0");
  if (intra_op_threads > 0) at::set_num_threads(intra_op_threads);
  // The wheel's LibTorch does its matrix products in MKL, threaded by the
  // same OpenMP pool as every other intra-op loop: one setting covers both.
  LogInfo(absl::StrCat("threads: LibTorch intra-op ", at::get_num_threads(), " (OpenMP; MKL's BLAS shares it)"));

  MetricsOptions metrics_options;
  metrics_options.record = absl::GetFlag(FLAGS_record_metrics);
  if (const std::string buckets = absl::GetFlag(FLAGS_latency_buckets); !buckets.empty()) {
    metrics_options.latency_buckets_seconds.clear();
    for (absl::string_view part : absl::StrSplit(buckets, ',')) {
      double bound = 0;
      if (!absl::SimpleAtod(part, &bound) || bound <= 0 ||
          (!metrics_options.latency_buckets_seconds.empty() && bound <= metrics_options.latency_buckets_seconds.back())) {
        return Fail(absl::StrCat("--latency_buckets: '", part, "' is not a positive bound above the previous one"));
      }
      metrics_options.latency_buckets_seconds.push_back(bound);
    }
  }

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = ServerCredentials();
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));

  // A handler, not a blocked mask + sigwait: threads that gRPC starts during
  // static initialisation do not inherit a mask set in main(), and a signal
  // delivered to one of them would kill the process outright.
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) return Fail("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  if (absl::GetFlag(FLAGS_shutdown_grace_s) < 0) return Fail("--shutdown_grace_s must be >= 0");
  if (absl::GetFlag(FLAGS_drain_timeout_s) < 0) return Fail("--drain_timeout_s must be >= 0");
  if (absl::GetFlag(FLAGS_malloc_trim_s) < 0) return Fail("--malloc_trim_s must be >= 0");
  const int cache_mb = absl::GetFlag(FLAGS_cpu_block_cache_mb);
  if (cache_mb < 0 || cache_mb > (1 << 24)) return Fail("--cpu_block_cache_mb must be in 0..16777216");
  CpuBlockCache* block_cache = nullptr;
  if (cache_mb > 0) {
    // Before any model loads, so that every tensor of theirs can use it.
    CpuBlockCache::Options cache_options;
    cache_options.max_cached_bytes = int64_t{cache_mb} << 20;
    absl::StatusOr<CpuBlockCache*> installed = CpuBlockCache::Install(cache_options);
    if (!installed.ok()) return Fail(std::string(installed.status().message()));
    block_cache = *installed;
  }
  if (absl::GetFlag(FLAGS_max_request_elements) < 0 || absl::GetFlag(FLAGS_max_request_rows) < 0) {
    return Fail("--max_request_elements and --max_request_rows must be >= 0");
  }
  if (absl::GetFlag(FLAGS_max_connection_age_s) < 0 || absl::GetFlag(FLAGS_max_connection_age_s) > 86400 * 365) {
    return Fail("--max_connection_age_s must be in 0..31536000");
  }
  const bool cuda = torch::cuda::is_available();
  ServerMetrics metrics(metrics_options, {kVersion, TORCH_VERSION, cuda});
  LogInfo(absl::StrCat("dytserve ", kVersion, ", LibTorch ", TORCH_VERSION, ", CUDA ",
                       cuda ? "available" : "not available", ", ", at::get_num_threads(), " intra-op threads"));

  ModelRepository::LoadReport report;
  absl::StatusOr<std::unique_ptr<ModelRepository>> repository = ModelRepository::Load(repo_path, &metrics, &report);
  if (!repository.ok()) return Fail(std::string(repository.status().message()));
  if (report.loaded.empty()) LogWarning("no model loaded; the server answers NOT_FOUND to every inference");

  InferenceEngine::Options engine_options;
  engine_options.server_version = kVersion;
  engine_options.strict_readiness = absl::GetFlag(FLAGS_strict_readiness);
  engine_options.max_request_elements = absl::GetFlag(FLAGS_max_request_elements);
  engine_options.max_request_rows = absl::GetFlag(FLAGS_max_request_rows);
  InferenceEngine engine(engine_options, *std::move(repository), &metrics);
  std::vector<absl::Status> experiment_failures;
  if (absl::Status s = engine.LoadExperiments(repo_path, &experiment_failures); !s.ok()) {
    LogError(absl::StrCat("experiments not loaded: ", s.message()));
  }
  for (const absl::Status& failure : experiment_failures) LogError(failure.message());
  const v1::ExperimentList experiments = engine.router().List();
  for (const v1::Experiment& e : experiments.experiments()) {
    LogInfo(absl::StrCat("experiment '", e.name(), "' loaded with ", e.arms_size(), " arms"));
  }

  absl::StatusOr<std::string> admin_token = LoadToken("--admin_token_file", absl::GetFlag(FLAGS_admin_token_file));
  if (!admin_token.ok()) return Fail(std::string(admin_token.status().message()));
  absl::StatusOr<std::string> inference_token =
      LoadToken("--inference_token_file", absl::GetFlag(FLAGS_inference_token_file));
  if (!inference_token.ok()) return Fail(std::string(inference_token.status().message()));
  const TokenAuth admin_auth(*admin_token, "dytserve.v1.Control", &metrics);
  const TokenAuth inference_auth(*inference_token, "inference.GRPCInferenceService", &metrics);

  const std::string host = absl::GetFlag(FLAGS_host);
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {
      metrics.registry(), std::make_shared<ProcessCollector>(), std::make_shared<DeviceMemoryCollector>()};
  if (block_cache != nullptr) {
    collectables.push_back(std::make_shared<CpuCacheCollector>([block_cache] {
      const CpuBlockCache::Stats s = block_cache->stats();
      return CpuCacheFigures{s.in_use_bytes, s.cached_bytes, s.reused, s.mapped};
    }));
  }
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> metrics_server =
      MetricsHttpServer::Start(host, metrics_port, std::move(collectables));
  if (!metrics_server.ok()) return Fail(std::string(metrics_server.status().message()));

  grpc::EnableDefaultHealthCheckService(true);
  InferenceService service(&engine, &inference_auth);
  // Set once the server exists; load and unload calls can only come after.
  std::atomic<grpc::HealthCheckServiceInterface*> health_service{nullptr};
  auto update_health = [&engine, &health_service] {
    grpc::HealthCheckServiceInterface* health = health_service.load();
    if (health == nullptr) return;
    for (const std::string& name : engine.repository().discovered()) {
      health->SetServingStatus(name, engine.ModelReady(name, ""));
    }
    const v1::ExperimentList experiments = engine.router().List();
    for (const v1::Experiment& e : experiments.experiments()) {
      health->SetServingStatus(e.name(), engine.ModelReady(e.name(), ""));
    }
    health->SetServingStatus("", engine.Ready());
  };
  ControlService control(&engine, &admin_auth, absl::Seconds(absl::GetFlag(FLAGS_drain_timeout_s)), update_health);
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(HostPort(host, grpc_port), *credentials, &bound_port);
  builder.RegisterService(&service);
  builder.RegisterService(&control);
  if (const int age_s = absl::GetFlag(FLAGS_max_connection_age_s); age_s > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, age_s * 1000);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30 * 1000);
  }
  const int max_bytes = absl::GetFlag(FLAGS_max_message_mb) * 1024 * 1024;
  builder.SetMaxReceiveMessageSize(max_bytes);
  builder.SetMaxSendMessageSize(max_bytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return Fail(absl::StrCat("cannot listen for gRPC on ", HostPort(host, grpc_port)));
  }

  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health_service.store(health);
  update_health();

  std::printf("dytserve listening grpc=%s metrics=%s\n", HostPort(host, bound_port).c_str(),
              HostPort(host, (*metrics_server)->port()).c_str());
  std::fflush(stdout);

  // glibc keeps freed heap pages mapped, so a burst (an overload, a big
  // batch) would leave resident memory at its high-water mark for good and
  // look like a leak; giving free pages back now and then keeps RSS honest.
  absl::Notification stopping;
  std::thread trimmer;
  if (const int trim_s = absl::GetFlag(FLAGS_malloc_trim_s); trim_s > 0) {
    trimmer = std::thread([&stopping, trim_s, block_cache] {
      while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(trim_s))) {
        if (block_cache != nullptr) block_cache->ReleaseIdle();
        malloc_trim(0);
      }
    });
  }
  int signal_number = 0;
  while (read(g_signal_pipe[0], &signal_number, sizeof(signal_number)) != sizeof(signal_number)) {
  }
  stopping.Notify();
  if (trimmer.joinable()) trimmer.join();
  LogInfo(absl::StrCat("received signal ", signal_number, ", shutting down"));
  health->Shutdown();  // every service reports NOT_SERVING from here on
  // gRPC refuses new calls at once and waits for accepted ones, whose tasks
  // the batch threads keep computing. Whatever is still queued when the grace
  // period ends is completed with UNAVAILABLE, so that Shutdown can return.
  const absl::Time grace_end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_shutdown_grace_s));
  absl::Notification drained;
  std::thread enforcer([&] {
    if (!drained.WaitForNotificationWithDeadline(grace_end)) engine.Shutdown();
  });
  server->Shutdown(absl::ToChronoTime(grace_end));
  drained.Notify();
  enforcer.join();
  engine.Shutdown();
  server->Wait();
  LogInfo("stopped");
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
      "Serves TorchScript models over the Open Inference Protocol (gRPC) with Prometheus metrics.\n"
      "  dytserve-server --model_repository=DIR [--grpc_port=N] [--metrics_port=N]");
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "dytserve-server: unexpected argument '%s' (flags are --name=value)\n", rest[1]);
    return 2;
  }
  return dytserve::Run();
}
