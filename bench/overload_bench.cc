// Overload: what the server does at 5x the rate it can sustain. One run:
// first the peak (closed loop, concurrency 32), then an open-loop arrival
// rate of --factor x peak for --seconds, then the peak again.
//
//   build/bench/overload_bench [--repo=build/repository] [--model=vit_ln] [--factor=5] [--seconds=15]
//                              [--nice=10] [--server_flags="--intra_op_threads=1"]
//
// Goals (issue #8): sheds with RESOURCE_EXHAUSTED at once (the refusals'
// latency is far below the accepted requests'), RSS growth < 10%, goodput
// >= 80% of peak.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(std::string, model, "vit_ln", "Model under load");
ABSL_FLAG(double, factor, 5, "Offered open-loop rate as a multiple of the measured peak");
ABSL_FLAG(double, seconds, 15, "Seconds of overload");
ABSL_FLAG(int, max_batch, 64, "The model's max_batch_size (the default repository's is 64)");
ABSL_FLAG(std::string, server_flags, "", "Further dytserve-server flags, space-separated (e.g. --intra_op_threads=1)");
ABSL_FLAG(int, nice, 0, "Niceness of this load generator (not the server); 0 leaves it");

namespace dytserve {
namespace {

struct Outcomes {
  absl::Mutex mu;
  std::map<absl::StatusCode, int64_t> codes ABSL_GUARDED_BY(mu);
  std::vector<double> ok_ms ABSL_GUARDED_BY(mu);
  std::vector<double> shed_ms ABSL_GUARDED_BY(mu);
  std::atomic<int64_t> outstanding{0};
};

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

double Rss(const testing::ServerProcess& server) {
  absl::StatusOr<std::string> scrape = testing::HttpGet(server.metrics_address(), "/metrics");
  return scrape.ok() ? bench::MetricValue(*scrape, "process_resident_memory_bytes") : 0;
}

int Run() {
  std::vector<std::string> server_args = {absl::StrCat("--model_repository=", absl::GetFlag(FLAGS_repo))};
  for (absl::string_view flag : absl::StrSplit(absl::GetFlag(FLAGS_server_flags), ' ', absl::SkipEmpty())) {
    server_args.emplace_back(flag);
  }
  absl::StatusOr<bench::BenchServer> started = bench::StartServer(absl::GetFlag(FLAGS_server), server_args);
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  testing::ServerProcess& server = *started->process;
  Client& client = *started->client;
  // The server, started first, keeps its own priority (see LowerPriority).
  if (absl::GetFlag(FLAGS_nice) > 0 && !bench::LowerPriority(absl::GetFlag(FLAGS_nice))) {
    std::fprintf(stderr, "--nice=%d: could not lower every thread of this process\n", absl::GetFlag(FLAGS_nice));
    return 1;
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  std::mt19937_64 rng(7);
  absl::StatusOr<ModelMetadata> metadata = client.GetModelMetadata(model);
  if (!metadata.ok()) {
    std::fprintf(stderr, "%s\n", metadata.status().ToString().c_str());
    return 1;
  }
  const std::vector<Tensor> inputs = *GenerateInputs(*metadata, {}, &rng);

  const bench::LoopResult peak = bench::ClosedLoop(client, model, inputs, 32, absl::Seconds(1), absl::Seconds(5));
  const double rss_after_peak = Rss(server);
  // The peak's batches hold at most 32 rows; the overload's fill to the
  // max, whose activations are larger whatever the load. A few max-size
  // batches first, so that the growth measured is what the overload adds.
  GenerateOptions full;
  full.rows = absl::GetFlag(FLAGS_max_batch);
  const std::vector<Tensor> full_inputs = *GenerateInputs(*metadata, full, &rng);
  for (int i = 0; i < 3; ++i) {
    if (absl::Status s = client.Infer(model, full_inputs).status(); !s.ok()) {
      std::fprintf(stderr, "a request of --max_batch=%d rows failed: %s\n", absl::GetFlag(FLAGS_max_batch),
                   s.ToString().c_str());
      return 1;
    }
  }
  const double rss_before = Rss(server);
  const double offered = absl::GetFlag(FLAGS_factor) * peak.rps;

  // Open loop: sends on schedule whatever the answers do (a client that
  // waited would hide the overload).
  auto outcomes = std::make_shared<Outcomes>();
  const absl::Duration interval = absl::Seconds(1.0 / offered);
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  double rss_max = rss_before;
  absl::Time next_rss = start + absl::Seconds(1);
  int64_t sent = 0;
  InferOptions options;
  options.deadline = absl::Seconds(10);
  for (absl::Time due = start; due < end; due += interval) {
    const absl::Time now = absl::Now();
    if (due > now) absl::SleepFor(due - now);
    if (absl::Now() >= next_rss) {
      rss_max = std::max(rss_max, Rss(server));
      next_rss += absl::Seconds(1);
    }
    const absl::Time t0 = absl::Now();
    ++outcomes->outstanding;
    ++sent;
    client.InferAsync(model, inputs, options, [outcomes, t0](absl::StatusOr<InferResult> r) {
      const double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
      {
        absl::MutexLock lock(&outcomes->mu);
        ++outcomes->codes[r.status().code()];
        if (r.ok()) outcomes->ok_ms.push_back(ms);
        if (r.status().code() == absl::StatusCode::kResourceExhausted) outcomes->shed_ms.push_back(ms);
      }
      --outcomes->outstanding;
    });
  }
  const double send_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  while (outcomes->outstanding.load() > 0) absl::SleepFor(absl::Milliseconds(10));
  const double rss_after = Rss(server);
  const double total_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const bench::LoopResult recovered =
      bench::ClosedLoop(client, model, inputs, 32, absl::Seconds(1), absl::Seconds(5));

  absl::MutexLock lock(&outcomes->mu);
  const int64_t ok = outcomes->codes[absl::StatusCode::kOk];
  const int64_t shed = outcomes->codes[absl::StatusCode::kResourceExhausted];
  int64_t other = 0;
  for (const auto& [code, n] : outcomes->codes) {
    if (code != absl::StatusCode::kOk && code != absl::StatusCode::kResourceExhausted) other += n;
  }
  const double goodput = static_cast<double>(ok) / total_seconds;
  std::printf("overload on %s (CPU), one run:\n", model.c_str());
  std::printf("  peak (closed loop, 32 in flight):  %8.0f req/s, p99 %.1f ms\n", peak.rps, peak.p99_ms);
  std::printf("  offered (open loop, %.0fx peak):    %8.0f req/s for %.0f s (%lld sent, achieved %.0f req/s)\n",
              absl::GetFlag(FLAGS_factor), offered, absl::GetFlag(FLAGS_seconds), static_cast<long long>(sent),
              static_cast<double>(sent) / send_seconds);
  std::printf("  answered OK: %lld, shed RESOURCE_EXHAUSTED: %lld, other errors: %lld\n",
              static_cast<long long>(ok), static_cast<long long>(shed), static_cast<long long>(other));
  std::printf("  goodput %.0f req/s = %.2f x peak (goal >= 0.80)\n", goodput, goodput / peak.rps);
  std::printf("  accepted latency p50 %.1f ms p99 %.1f ms; shed answers p50 %.2f ms p99 %.2f ms (at once)\n",
              Percentile(outcomes->ok_ms, 0.5), Percentile(outcomes->ok_ms, 0.99),
              Percentile(outcomes->shed_ms, 0.5), Percentile(outcomes->shed_ms, 0.99));
  std::printf("  RSS after the peak %.1f MiB, after %d-row batches (before) %.1f MiB, max during %.1f MiB, after "
              "%.1f MiB: growth %.1f%% (goal < 10%%; %.1f%% over the peak's)\n",
              rss_after_peak / (1 << 20), absl::GetFlag(FLAGS_max_batch), rss_before / (1 << 20), rss_max / (1 << 20),
              rss_after / (1 << 20), 100.0 * (std::max(rss_max, rss_after) / rss_before - 1),
              100.0 * (std::max(rss_max, rss_after) / rss_after_peak - 1));
  std::printf("  peak again after the overload: %.0f req/s (%.2f x)\n", recovered.rps, recovered.rps / peak.rps);
  server.Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
