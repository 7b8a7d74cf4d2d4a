// What per-request metrics cost: the same closed-loop load on two servers
// that differ only in --record_metrics, rounds interleaved (on, off, on, off,
// ...) so that drift on a shared machine hits both alike.
//
//   build/bench/metrics_overhead_bench [--repo=build/repository] [--rounds=5] [--seconds=2]
//
// Prints each round and the overhead of the median throughputs; goal <= 3%.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(std::string, model, "vit_dyt", "Model to load");
ABSL_FLAG(int, concurrency, 32, "Closed-loop clients");
ABSL_FLAG(int, rounds, 5, "Interleaved rounds per setting");
ABSL_FLAG(double, seconds, 2, "Measured seconds per round");

namespace dytserve {
namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int Run() {
  const std::string repo = absl::StrCat("--model_repository=", absl::GetFlag(FLAGS_repo));
  std::unique_ptr<testing::ServerProcess> servers[2];
  std::unique_ptr<Client> clients[2];
  const char* names[2] = {"metrics on ", "metrics off"};
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<bench::BenchServer> s = bench::StartServer(
        absl::GetFlag(FLAGS_server), {repo, i == 0 ? "--record_metrics=true" : "--record_metrics=false"});
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.status().message()).c_str());
      return 1;
    }
    servers[i] = std::move(s->process);
    clients[i] = std::move(s->client);
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  std::mt19937_64 rng(1);
  GenerateOptions g;
  g.int_high = 256;
  const std::vector<Tensor> inputs = *GenerateInputs(*clients[0]->GetModelMetadata(model), g, &rng);
  const absl::Duration window = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const int c = absl::GetFlag(FLAGS_concurrency);

  std::printf("metrics overhead: %s, closed loop c=%d, %d interleaved rounds of %.1f s\n", model.c_str(), c,
              absl::GetFlag(FLAGS_rounds), absl::ToDoubleSeconds(window));
  std::vector<double> rps[2], p99[2];
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (int i = 0; i < 2; ++i) {
      // Alternate which setting goes first, so neither always follows the other.
      const int which = round % 2 == 0 ? i : 1 - i;
      const bench::LoopResult r =
          bench::ClosedLoop(*clients[which], model, inputs, c, absl::Milliseconds(300), window);
      rps[which].push_back(r.rps);
      p99[which].push_back(r.p99_ms);
      std::printf("  round %d %s: %8.0f rps  p99 %6.2f ms%s\n", round, names[which], r.rps, r.p99_ms,
                  r.errors ? absl::StrCat("  (", r.errors, " errors)").c_str() : "");
    }
  }
  const double on = Median(rps[0]), off = Median(rps[1]);
  std::printf("median: on %.0f rps (p99 %.2f ms), off %.0f rps (p99 %.2f ms)\n", on, Median(p99[0]), off,
              Median(p99[1]));
  std::printf("overhead of metrics: %.2f%% of throughput (goal <= 3%%)\n", 100 * (off - on) / off);
  for (auto& s : servers) s->Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
