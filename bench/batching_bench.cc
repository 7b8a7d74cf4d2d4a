// Dynamic batching on the ViT pair, CPU, measured side by side in one run:
// closed-loop concurrency 1/8/32/64 with batching on and off against a real
// server on loopback, and the offline limit (in-process forward at max batch).
//
//   build/bench/batching_bench [--repo=build/repository] [--seconds=3]
//
// Prints each figure and the ratios the batching issue sets as goals:
// batched/unbatched throughput at c=32 (>= 3x), batched / offline (>= 85%),
// and p99 against max_queue_delay + 2 x mean batch compute time.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include <ATen/Parallel.h>
#include <torch/script.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(double, seconds, 3, "Measured seconds per point (after 0.5 s warm-up)");

namespace dytserve {
namespace {

namespace fs = std::filesystem;
constexpr int kDelayUs = 2000;
constexpr int kMaxBatch = 64;
constexpr int kIdleUs = 200;

struct Point {
  double rps = 0;
  double p50_ms = 0, p99_ms = 0;
  double mean_batch = 0, compute_ms = 0;
};

// A repository with each ViT three times: batched, batched with
// idle_flush_us, and unbatched (max_batch_size 1: every request alone).
fs::path MakeRepo(const fs::path& source) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-bench-", getpid());
  fs::remove_all(dir);
  for (const std::string model : {"vit_ln", "vit_dyt"}) {
    for (const std::string variant : {"", "_nobatch", "_idle"}) {
      const std::string batching = absl::StrCat("dynamic_batching { max_queue_delay_us: ", kDelayUs,
                                                variant == "_idle" ? absl::StrCat(" idle_flush_us: ", kIdleUs) : "",
                                                " max_queue_size: 4096 }\n");
      testing::AddModel(dir.string(), model + variant, (source / model / "1/model.pt").string(),
                        testing::VitConfig(variant == "_nobatch" ? 1 : kMaxBatch, batching));
    }
  }
  return dir;
}

Point Measure(Client& client, const testing::ServerProcess& server, const std::string& model, int concurrency,
              absl::Duration duration) {
  std::mt19937_64 rng(concurrency);
  ModelMetadata m;
  m.inputs = {{"pixel_values", "FP32", {-1, 1, 8, 8}}};
  const std::vector<Tensor> inputs = *GenerateInputs(m, {}, &rng);
  std::string before, after;
  const bench::LoopResult loop = bench::ClosedLoop(
      client, model, inputs, concurrency, absl::Milliseconds(500), duration,
      [&] { before = *testing::HttpGet(server.metrics_address(), "/metrics"); },
      [&] { after = *testing::HttpGet(server.metrics_address(), "/metrics"); });
  if (loop.errors > 0) std::printf("  (%d errors)\n", loop.errors);
  Point p{loop.rps, loop.p50_ms, loop.p99_ms, 0, 0};
  const std::string labels = absl::StrCat("{model=\"", model, "\",version=\"1\"}");
  auto delta = [&](const std::string& name) {
    return bench::MetricValue(after, name + labels) - bench::MetricValue(before, name + labels);
  };
  const double executions = delta("dytserve_batch_executions_total");
  p.mean_batch = executions > 0 ? delta("dytserve_inferences_total") / executions : 0;
  p.compute_ms = executions > 0 ? 1000 * delta("dytserve_compute_duration_seconds_sum") / executions : 0;
  return p;
}

double OfflineRowsPerSecond(const fs::path& file, absl::Duration duration) {
  torch::jit::Module module = torch::jit::load(file.string());
  module.eval();
  c10::InferenceMode guard;
  const at::Tensor x = at::rand({kMaxBatch, 1, 8, 8});
  for (int i = 0; i < 3; ++i) module.forward({x});
  int64_t rows = 0;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) {
    module.forward({x});
    rows += kMaxBatch;
  }
  return rows / absl::ToDoubleSeconds(absl::Now() - start);
}

int Run() {
  const fs::path source = absl::GetFlag(FLAGS_repo);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const fs::path repo = MakeRepo(source);
  absl::StatusOr<bench::BenchServer> started =
      bench::StartServer(absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", repo.string())});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<testing::ServerProcess>& server = started->process;
  std::unique_ptr<Client>& client = started->client;

  std::printf("dytserve batching benchmark, CPU, %d intra-op thread(s), max_queue_delay %d us, %.1f s per point\n",
              at::get_num_threads(), kDelayUs, absl::ToDoubleSeconds(duration));
  for (const std::string model : {"vit_ln", "vit_dyt"}) {
    const double offline = OfflineRowsPerSecond(source / model / "1/model.pt", duration);
    std::printf("\n%s: offline limit (in-process forward at batch %d): %.0f rows/s\n", model.c_str(), kMaxBatch,
                offline);
    std::printf("%5s | %10s %8s %8s | %10s %8s %8s %7s %9s | %7s %8s %9s | %9s %8s %8s %8s\n", "conc", "off rps",
                "p50 ms", "p99 ms", "on rps", "p50 ms", "p99 ms", "batch", "comp ms", "on/off", "on/offl",
                "p99/bound", "idle rps", "p99 ms", "idl/off", "idl/offl");
    for (int c : {1, 8, 32, 64}) {
      const Point off = Measure(*client, *server, model + "_nobatch", c, duration);
      const Point on = Measure(*client, *server, model, c, duration);
      const Point idle = Measure(*client, *server, model + "_idle", c, duration);
      const double bound = kDelayUs / 1000.0 + 2 * on.compute_ms;
      std::printf("%5d | %10.0f %8.2f %8.2f | %10.0f %8.2f %8.2f %7.1f %9.2f | %6.2fx %7.0f%% %9.2f | %9.0f %8.2f %7.2fx %7.0f%%\n",
                  c, off.rps, off.p50_ms, off.p99_ms, on.rps, on.p50_ms, on.p99_ms, on.mean_batch, on.compute_ms,
                  on.rps / off.rps, 100 * on.rps / offline, on.p99_ms / bound, idle.rps, idle.p99_ms,
                  idle.rps / off.rps, 100 * idle.rps / offline);
    }
  }
  std::printf("\ngoals at c=32: on/off >= 3x, on/offline >= 85%%, p99/bound <= 1 "
              "(bound = max_queue_delay + 2 x mean batch compute); idle = on plus idle_flush_us %d\n", kIdleUs);
  server->Stop(SIGTERM);
  fs::remove_all(repo);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
