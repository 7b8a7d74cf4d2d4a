// TorchScript against AOTInductor on the same weights, served side by side in
// one run: vit_dyt / vit_dyt_aoti and llama_dyt / llama_dyt_aoti of the
// default repository (on the device its configs name: scripts/gpu_check.sh
// exports a CUDA one).
//
// Latency: one request in flight, the four models taking turns request by
// request (bench::Interleaved), so a shared machine's drift weighs on each
// alike; p50 over the run and over consecutive blocks. Throughput: closed
// loops of --concurrency, the models taking turns in short slices, requests
// per second pooled over the slices.
//
//   build/bench/format_bench [--repo=build/repository] [--seconds=20] [--concurrency=16]
//
// Prints p50 and throughput of each, and AOTI / TorchScript ratios.
#include <signal.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository (with the *_aoti twins)");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(double, seconds, 20, "Measured seconds of the one-in-flight run, all models together");
ABSL_FLAG(int, blocks, 5, "Consecutive blocks the one-in-flight run is cut into, for each ratio's spread");
ABSL_FLAG(int, concurrency, 16, "Closed-loop requests in flight for the throughput run");
ABSL_FLAG(int, slices, 4, "Turns each model takes in the throughput run");
ABSL_FLAG(double, slice_seconds, 2, "Measured seconds of one throughput slice");
ABSL_FLAG(int, seq_len, 64, "Tokens per decoder request");

namespace dytserve {
namespace {

int Run() {
  absl::StatusOr<bench::BenchServer> started = bench::StartServer(
      absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", absl::GetFlag(FLAGS_repo))});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  Client& client = *started->client;
  const std::vector<std::array<std::string, 2>> pairs = {{"vit_dyt", "vit_dyt_aoti"}, {"llama_dyt", "llama_dyt_aoti"}};
  std::vector<bench::Target> targets;
  std::mt19937_64 rng(7);
  for (const auto& pair : pairs) {
    std::vector<Tensor> inputs;  // the same for both formats of a pair
    for (const std::string& m : pair) {
      absl::StatusOr<ModelMetadata> metadata = client.GetModelMetadata(m);
      if (!metadata.ok()) {
        std::fprintf(stderr, "%s: %s (export the repository with its AOTInductor twins)\n", m.c_str(),
                     std::string(metadata.status().message()).c_str());
        return 1;
      }
      if (inputs.empty()) {
        GenerateOptions g;
        g.seq_len = absl::GetFlag(FLAGS_seq_len);
        g.int_high = 256;
        inputs = *GenerateInputs(*metadata, g, &rng);
      }
      targets.push_back({m, inputs});
    }
  }
  absl::StatusOr<std::vector<std::vector<double>>> latencies =
      bench::Interleaved(client, targets, absl::Seconds(3), absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  if (!latencies.ok()) {
    std::fprintf(stderr, "%s\n", latencies.status().ToString().c_str());
    return 1;
  }
  const size_t samples = (*latencies)[0].size();
  const int blocks = std::max(1, std::min<int>(absl::GetFlag(FLAGS_blocks), static_cast<int>(samples)));

  // Throughput: closed loops, the models taking turns slice by slice.
  std::map<std::string, std::array<double, 2>> served;  // model -> {requests, seconds}
  for (int slice = 0; slice < absl::GetFlag(FLAGS_slices); ++slice) {
    for (const bench::Target& t : targets) {
      const bench::LoopResult r = bench::ClosedLoop(client, t.model, t.inputs, absl::GetFlag(FLAGS_concurrency),
                                                    absl::Milliseconds(300),
                                                    absl::Seconds(absl::GetFlag(FLAGS_slice_seconds)));
      served[t.model][0] += r.rps * r.seconds;
      served[t.model][1] += r.seconds;
      if (r.errors > 0) std::fprintf(stderr, "%s: %d errors\n", t.model.c_str(), r.errors);
    }
  }

  std::printf("TorchScript vs AOTInductor, same weights, served by one server (%zu one-in-flight requests each; "
              "throughput at %d in flight)\n",
              samples, absl::GetFlag(FLAGS_concurrency));
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string& m = targets[i].model;
    std::printf("  %-16s p50 %8.3f ms   %9.1f req/s\n", m.c_str(), bench::Median((*latencies)[i]),
                served[m][0] / std::max(served[m][1], 1e-9));
  }
  for (size_t p = 0; p < pairs.size(); ++p) {
    const std::vector<double>& ts = (*latencies)[2 * p];
    const std::vector<double>& aoti = (*latencies)[2 * p + 1];
    double low = 1e9, high = 0;
    for (int k = 0; k < blocks; ++k) {
      const size_t from = samples * k / blocks, to = samples * (k + 1) / blocks;
      const double r =
          bench::Median({aoti.begin() + from, aoti.begin() + to}) / bench::Median({ts.begin() + from, ts.begin() + to});
      low = std::min(low, r);
      high = std::max(high, r);
    }
    const double tput_ts = served[pairs[p][0]][0] / std::max(served[pairs[p][0]][1], 1e-9);
    const double tput_aoti = served[pairs[p][1]][0] / std::max(served[pairs[p][1]][1], 1e-9);
    std::printf("%s: AOTI / TorchScript p50 = %.3f (blocks %.3f-%.3f); throughput AOTI / TorchScript = %.3f\n",
                pairs[p][0].c_str(), bench::Median(aoti) / bench::Median(ts), low, high, tput_aoti / tput_ts);
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
