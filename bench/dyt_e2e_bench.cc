// DyT served end to end against its norm twin, same load, one run: the
// ViT-Tiny-sized pair (exported here by export_e2e_models.py) and the
// decoder pair of the default repository. One request in flight at a time
// (batching out of the picture), models interleaved over several rounds.
//
//   build/bench/dyt_e2e_bench [--repo=build/repository] [--rounds=3] [--seconds=2]
//
// Goals: DyT ViT p50 <= 0.95 x LN ViT p50; DyT decoder p50 <= RMSNorm decoder p50.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, repo, "build/repository", "Exported default model repository (for the decoders)");
ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(std::string, work_dir, "build/bench-e2e", "Where the ViT-Tiny pair is exported");
ABSL_FLAG(int, rounds, 3, "Interleaved rounds");
ABSL_FLAG(double, seconds, 2, "Measured seconds per model per round");

namespace dytserve {
namespace {

namespace fs = std::filesystem;

int Run() {
  const fs::path work = absl::GetFlag(FLAGS_work_dir);
  const fs::path repo = work / "repo";
  if (!fs::exists(repo / "vit_tiny_dyt_unfused/config.pbtxt")) {
    const std::string cmd = absl::StrCat("/usr/bin/python3 bench/export_e2e_models.py --out ", repo.string());
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  for (const std::string decoder : {"llama_rms", "llama_dyt"}) {
    if (!fs::exists(repo / decoder)) fs::create_directory_symlink(fs::absolute(fs::path(absl::GetFlag(FLAGS_repo)) / decoder), repo / decoder);
  }
  absl::StatusOr<bench::BenchServer> started =
      bench::StartServer(absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", repo.string())});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<testing::ServerProcess>& server = started->process;
  std::unique_ptr<Client>& client = started->client;

  const std::vector<std::string> models = {"vit_tiny_ln", "vit_tiny_dyt", "vit_tiny_dyt_unfused", "llama_rms",
                                           "llama_dyt"};
  std::map<std::string, std::vector<Tensor>> inputs;
  std::mt19937_64 rng(1);
  for (const std::string& m : models) {
    GenerateOptions g;
    g.seq_len = 128;
    g.int_high = 256;
    inputs[m] = *GenerateInputs(*client->GetModelMetadata(m), g, &rng);
  }
  std::map<std::string, std::vector<double>> p50;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    for (const std::string& m : models) {
      const bench::LoopResult r = bench::ClosedLoop(*client, m, inputs[m], 1, absl::Milliseconds(300),
                                                    absl::Seconds(absl::GetFlag(FLAGS_seconds)));
      p50[m].push_back(r.p50_ms);
    }
  }
  auto median = [&](const std::string& m) {
    std::vector<double> v = p50[m];
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("DyT end to end, served on CPU, one request in flight, median p50 of %d rounds\n",
              absl::GetFlag(FLAGS_rounds));
  for (const std::string& m : models) std::printf("  %-22s p50 %8.3f ms\n", m.c_str(), median(m));
  std::printf("ViT-Tiny (1x3x224x224): DyT fused / LN = %.3f (goal <= 0.95); DyT unfused / LN = %.3f\n",
              median("vit_tiny_dyt") / median("vit_tiny_ln"), median("vit_tiny_dyt_unfused") / median("vit_tiny_ln"));
  std::printf("decoder (1x128 tokens): DyT fused / RMSNorm = %.3f (goal <= 1.0)\n",
              median("llama_dyt") / median("llama_rms"));
  server->Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
