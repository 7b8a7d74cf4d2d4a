// Softmax-free attention served end to end: the ReLU(qk/sqrt(d))/L ViTs
// against their softmax twins (LN and DyT), at the same load in one run,
// models interleaved over several rounds so drift hits all alike.
//
//   build/bench/attention_bench [--repo=build/repository] [--rounds=3] [--seconds=2] [--concurrency=1,8]
//
// Prints each model's p50/p99 and the ratios relu/softmax per pair and load.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(int, rounds, 3, "Interleaved rounds");
ABSL_FLAG(double, seconds, 2, "Measured seconds per model per round and load");
ABSL_FLAG(std::string, concurrency, "1,8", "Closed-loop concurrencies (requests in flight)");

namespace dytserve {
namespace {

int Run() {
  std::vector<int> loads;
  for (absl::string_view c : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(c, &n) || n < 1) {
      std::fprintf(stderr, "--concurrency: '%s' is not a positive integer\n", std::string(c).c_str());
      return 2;
    }
    loads.push_back(n);
  }
  absl::StatusOr<bench::BenchServer> started = bench::StartServer(
      absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", absl::GetFlag(FLAGS_repo))});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  Client& client = *started->client;
  const std::vector<std::pair<std::string, std::string>> pairs = {{"vit_ln", "vit_relu_attn"},
                                                                  {"vit_dyt", "vit_dyt_relu_attn"}};
  std::map<std::string, std::vector<Tensor>> inputs;
  std::mt19937_64 rng(1);
  for (const auto& [softmax, relu] : pairs) {
    for (const std::string& m : {softmax, relu}) {
      absl::StatusOr<ModelMetadata> metadata = client.GetModelMetadata(m);
      if (!metadata.ok()) {
        std::fprintf(stderr, "%s: %s\n", m.c_str(), metadata.status().ToString().c_str());
        return 1;
      }
      inputs[m] = *GenerateInputs(*metadata, {}, &rng);
    }
  }
  // (model, concurrency) -> per-round p50 and p99
  std::map<std::pair<std::string, int>, std::vector<bench::LoopResult>> results;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (int c : loads) {
      for (const auto& [softmax, relu] : pairs) {
        for (const std::string& m : {softmax, relu}) {
          results[{m, c}].push_back(bench::ClosedLoop(client, m, inputs[m], c, absl::Milliseconds(300),
                                                      absl::Seconds(absl::GetFlag(FLAGS_seconds))));
        }
      }
    }
  }
  auto median = [&](const std::string& m, int c, double bench::LoopResult::*field) {
    std::vector<double> v;
    for (const bench::LoopResult& r : results[{m, c}]) v.push_back(r.*field);
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("Softmax-free (ReLU/L) vs softmax attention, digits ViTs served on CPU, median of %d rounds\n",
              absl::GetFlag(FLAGS_rounds));
  for (int c : loads) {
    std::printf("concurrency %d:\n", c);
    for (const auto& [softmax, relu] : pairs) {
      for (const std::string& m : {softmax, relu}) {
        std::printf("  %-18s p50 %7.3f ms  p99 %7.3f ms  %8.0f req/s\n", m.c_str(),
                    median(m, c, &bench::LoopResult::p50_ms), median(m, c, &bench::LoopResult::p99_ms),
                    median(m, c, &bench::LoopResult::rps));
      }
      std::printf("  p50 %s / %s = %.3f\n", relu.c_str(), softmax.c_str(),
                  median(relu, c, &bench::LoopResult::p50_ms) / median(softmax, c, &bench::LoopResult::p50_ms));
    }
  }
  started->process->Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
