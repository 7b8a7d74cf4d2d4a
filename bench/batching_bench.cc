// Dynamic batching on the ViT pair, CPU, measured side by side in one run:
// closed-loop concurrency 1/8/32/64 with batching on and off against a real
// server on loopback, and the offline limit (in-process forward at max batch).
//
// The variants of one concurrency (off, on, alt: on with --alt's batching
// options, offline) take
// turns in short slices, and each figure pools its slices: a shared machine's
// speed drifts by tens of percent within seconds, and measured one after the
// other the variants would each get a different machine.
//
//   build/bench/batching_bench [--repo=build/repository] [--seconds=3] [--slices=6]
//                              [--alt='idle_flush_us: 200'] [--device=cuda:0]
//
// Prints each figure and the ratios the batching issue sets as goals:
// batched/unbatched throughput at c=32 (>= 3x), batched / offline (>= 85%),
// and p99 against max_queue_delay + 2 x mean batch compute time, for on and
// for alt.
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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/experiment_report.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository");
ABSL_FLAG(std::string, device, "cpu", "Where the models run: cpu, or cuda:N (a CUDA build on a GPU machine)");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(double, seconds, 3, "Measured seconds per point, over all its slices");
ABSL_FLAG(int, delay_us, 2000, "max_queue_delay_us of the batched variants");
ABSL_FLAG(std::string, concurrency, "1,8,32,64", "Closed-loop concurrencies, comma-separated");
ABSL_FLAG(int, slices, 6, "Turns the variants of one point take (each slice warms up 0.3 s first)");
ABSL_FLAG(std::string, alt, "delay_from_free: true",
          "dynamic_batching fields the alt variant adds to on's (config.pbtxt text; not max_queue_delay_us "
          "or max_queue_size, which on sets already: a repeated field does not load)");
ABSL_FLAG(int, nice, 0,
          "Niceness of this benchmark's client and offline threads (not the server's); 0 leaves it");

namespace dytserve {
namespace {

namespace fs = std::filesystem;
constexpr int kMaxBatch = 64;

struct Point {
  double rps = 0;
  double p50_ms = 0, p99_ms = 0;
  double server_p99_ms = 0;
  double compute_p99_ms = 0;
  double mean_batch = 0, compute_ms = 0;
};

// One variant's slices, pooled.
struct Pool {
  std::vector<double> latencies_ms;
  double seconds = 0;
  double executions = 0, rows = 0, compute_seconds = 0;
  int errors = 0;
  cli::Histogram server_latency;  // receive to answer, inside the server
  cli::Histogram compute;         // per batch

  Point Summary() {
    std::sort(latencies_ms.begin(), latencies_ms.end());
    Point p;
    if (seconds > 0) p.rps = latencies_ms.size() / seconds;
    if (!latencies_ms.empty()) {
      p.p50_ms = latencies_ms[latencies_ms.size() / 2];
      p.p99_ms = latencies_ms[std::min(latencies_ms.size() - 1, latencies_ms.size() * 99 / 100)];
    }
    if (server_latency.count > 0) p.server_p99_ms = 1000 * server_latency.Quantile(0.99);
    if (compute.count > 0) p.compute_p99_ms = 1000 * compute.Quantile(0.99);
    if (executions > 0) {
      p.mean_batch = rows / executions;
      p.compute_ms = 1000 * compute_seconds / executions;
    }
    return p;
  }
};

// A repository with each ViT three times: batched, batched with --alt's
// fields, and unbatched (max_batch_size 1: every request alone).
fs::path MakeRepo(const fs::path& source) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-bench-", getpid());
  fs::remove_all(dir);
  for (const std::string model : {"vit_ln", "vit_dyt"}) {
    for (const std::string variant : {"", "_nobatch", "_alt"}) {
      const std::string batching = absl::StrCat("dynamic_batching { max_queue_delay_us: ", absl::GetFlag(FLAGS_delay_us),
                                                variant == "_alt" ? " " + absl::GetFlag(FLAGS_alt) : "",
                                                " max_queue_size: 4096 }\n");
      testing::AddModel(dir.string(), model + variant, (source / model / "1/model.pt").string(),
                        testing::VitConfig(variant == "_nobatch" ? 1 : kMaxBatch,
                                           absl::StrCat(batching, "instance_group { device: \"",
                                                        absl::GetFlag(FLAGS_device), "\" }\n")));
    }
  }
  return dir;
}

void MeasureSlice(Client& client, const testing::ServerProcess& server, const std::string& model, int concurrency,
                  absl::Duration duration, Pool* pool) {
  std::mt19937_64 rng(concurrency);
  ModelMetadata m;
  m.inputs = {{"pixel_values", "FP32", {-1, 1, 8, 8}}};
  const std::vector<Tensor> inputs = *GenerateInputs(m, {}, &rng);
  std::string before, after;
  const bench::LoopResult loop = bench::ClosedLoop(
      client, model, inputs, concurrency, absl::Milliseconds(300), duration,
      [&] { before = *testing::HttpGet(server.metrics_address(), "/metrics"); },
      [&] { after = *testing::HttpGet(server.metrics_address(), "/metrics"); });
  const std::string labels = absl::StrCat("{model=\"", model, "\",version=\"1\"}");
  auto delta = [&](const std::string& name) {
    return bench::MetricValue(after, name + labels) - bench::MetricValue(before, name + labels);
  };
  pool->latencies_ms.insert(pool->latencies_ms.end(), loop.latencies_ms.begin(), loop.latencies_ms.end());
  pool->seconds += loop.seconds;
  pool->errors += loop.errors;
  pool->executions += delta("dytserve_batch_executions_total");
  pool->rows += delta("dytserve_inferences_total");
  pool->compute_seconds += delta("dytserve_compute_duration_seconds_sum");
  pool->server_latency.Add(cli::HistogramDelta(before, after, "dytserve_request_duration_seconds", {{"model", model}}));
  pool->compute.Add(cli::HistogramDelta(before, after, "dytserve_compute_duration_seconds", {{"model", model}}));
}

// In-process forward passes at batch kMaxBatch for `duration`; adds rows and seconds.
void OfflineSlice(torch::jit::Module& module, absl::Duration duration, Pool* pool) {
  c10::InferenceMode guard;
  const c10::Device device(absl::GetFlag(FLAGS_device));
  // Each pass starts from the host and ends there, as a served batch does.
  const at::Tensor x = at::rand({kMaxBatch, 1, 8, 8});
  module.forward({x.to(device)}).toTensor().cpu();  // out of the measurement, as the closed loops' warm-up is
  const absl::Time start = absl::Now();
  while (absl::Now() - start < duration) {
    module.forward({x.to(device)}).toTensor().cpu();
    pool->rows += kMaxBatch;
  }
  pool->seconds += absl::ToDoubleSeconds(absl::Now() - start);
}

int Run() {
  const fs::path source = absl::GetFlag(FLAGS_repo);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const fs::path repo = MakeRepo(source);
  // Latency buckets of 1 ms up to 300 ms, so that the server-side p99 is
  // read off the histogram to within a millisecond.
  std::string buckets;
  for (int ms = 1; ms <= 300; ++ms) absl::StrAppend(&buckets, ms > 1 ? "," : "", ms / 1000.0);
  absl::StatusOr<bench::BenchServer> started =
      bench::StartServer(absl::GetFlag(FLAGS_server),
                         {absl::StrCat("--model_repository=", repo.string()), "--latency_buckets=" + buckets});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<testing::ServerProcess>& server = started->process;
  std::unique_ptr<Client>& client = started->client;
  // The server, started first, keeps its own priority (see LowerPriority).
  if (absl::GetFlag(FLAGS_nice) > 0 && !bench::LowerPriority(absl::GetFlag(FLAGS_nice))) {
    std::fprintf(stderr, "--nice=%d: could not lower every thread of this process\n", absl::GetFlag(FLAGS_nice));
    return 1;
  }

  std::printf("dytserve batching benchmark, CPU, %d intra-op thread(s), max_queue_delay %d us, %.1f s per point "
              "in %d slices, client nice %d\n",
              at::get_num_threads(), absl::GetFlag(FLAGS_delay_us), absl::ToDoubleSeconds(duration), absl::GetFlag(FLAGS_slices),
              absl::GetFlag(FLAGS_nice));
  const int slices = std::max(1, absl::GetFlag(FLAGS_slices));
  const absl::Duration slice = duration / slices;
  for (const std::string model : {"vit_ln", "vit_dyt"}) {
    torch::jit::Module offline_module =
        torch::jit::load((source / model / "1/model.pt").string(), c10::Device(absl::GetFlag(FLAGS_device)));
    offline_module.eval();
    std::printf("\n%s (offline: in-process forward at batch %d, no server; measured in the same turns)\n",
                model.c_str(), kMaxBatch);
    std::printf("%5s | %10s %8s %8s | %10s %8s %8s %8s %7s %9s %8s | %7s %8s %9s %9s | %9s %8s %7s %8s %8s %9s | %8s\n",
                "conc", "off rps", "p50 ms", "p99 ms", "on rps", "p50 ms", "p99 ms", "srv p99", "batch", "comp ms", "comp p99",
                "on/off", "on/offl", "p99/bound", "srv/bound", "alt rps", "p99 ms", "batch", "alt/off", "alt/offl",
                "p99/bound", "offl r/s");
    for (absl::string_view level : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
      int c = 0;
      if (!absl::SimpleAtoi(level, &c) || c < 1) {
        std::fprintf(stderr, "--concurrency: '%s' is not a positive integer\n", std::string(level).c_str());
        return 2;
      }
      Pool off, on, alt, offline;
      for (int k = 0; k < slices; ++k) {
        OfflineSlice(offline_module, slice, &offline);
        MeasureSlice(*client, *server, model + "_nobatch", c, slice, &off);
        MeasureSlice(*client, *server, model, c, slice, &on);
        MeasureSlice(*client, *server, model + "_alt", c, slice, &alt);
      }
      for (const Pool* pool : {&off, &on, &alt}) {
        if (pool->errors > 0) std::printf("  (%d errors)\n", pool->errors);
      }
      const double offline_rows = offline.rows / offline.seconds;
      const Point p_off = off.Summary(), p_on = on.Summary(), p_alt = alt.Summary();
      const double bound = absl::GetFlag(FLAGS_delay_us) / 1000.0 + 2 * p_on.compute_ms;
      const double alt_bound = absl::GetFlag(FLAGS_delay_us) / 1000.0 + 2 * p_alt.compute_ms;
      std::printf("%5d | %10.0f %8.2f %8.2f | %10.0f %8.2f %8.2f %8.2f %7.1f %9.2f %8.2f | %6.2fx %7.0f%% %9.2f %9.2f | "
                  "%9.0f %8.2f %7.1f %7.2fx %7.0f%% %9.2f | %8.0f\n",
                  c, p_off.rps, p_off.p50_ms, p_off.p99_ms, p_on.rps, p_on.p50_ms, p_on.p99_ms, p_on.server_p99_ms,
                  p_on.mean_batch, p_on.compute_ms, p_on.compute_p99_ms, p_on.rps / p_off.rps, 100 * p_on.rps / offline_rows,
                  p_on.p99_ms / bound, p_on.server_p99_ms / bound, p_alt.rps, p_alt.p99_ms, p_alt.mean_batch,
                  p_alt.rps / p_off.rps, 100 * p_alt.rps / offline_rows, p_alt.p99_ms / alt_bound, offline_rows);
    }
  }
  std::printf("\ngoals at c=32: on/off >= 3x, on/offline >= 85%%, p99/bound <= 1 "
              "(bound = max_queue_delay + 2 x mean batch compute); p99 is the client's, srv p99 the server's "
              "(receive to answer, from its histogram); alt = on plus '%s'\n", absl::GetFlag(FLAGS_alt).c_str());
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
