// DyT served end to end against its norm twin, same load, one run: the
// ViT-Tiny-sized pair (exported here by export_e2e_models.py) and the
// decoder pair of the default repository. One request in flight at a time
// (batching out of the picture), the models taking turns request by request,
// so that the speed of a shared machine, which drifts by tens of percent
// within seconds, weighs on every model alike. The run is also cut into
// consecutive blocks, each giving its own ratio: their spread shows how far
// one figure can be trusted.
//
//   build/bench/dyt_e2e_bench [--repo=build/repository] [--seconds=60] [--blocks=5] [--rows=1]
//                             [--device=cuda:0] [--python=.venv/bin/python]
//
// --rows sets the rows of every request (images, or token sequences): the
// norms' share of the work grows with the activations they stream through.
//
// Goals: DyT ViT p50 <= 0.95 x LN ViT p50; DyT decoder p50 <= RMSNorm decoder p50.
#include <signal.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

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
ABSL_FLAG(double, seconds, 60, "Measured seconds, all models together (after 3 s of warm-up)");
ABSL_FLAG(int, blocks, 5, "Consecutive blocks the run is cut into for the spread of each ratio");
ABSL_FLAG(std::string, device, "cpu", "Where every model runs: cpu, or cuda:N (a CUDA build on a GPU machine)");
ABSL_FLAG(std::string, python, ".venv/bin/python", "Python with torch, to export the ViT-Tiny pair");
ABSL_FLAG(int, rows, 1, "Rows (images, token sequences) per request, 1 to 8 (the pairs' max_batch_size)");

namespace dytserve {
namespace {

namespace fs = std::filesystem;

int Run() {
  const int rows = absl::GetFlag(FLAGS_rows);
  if (rows < 1 || rows > 8) {
    std::fprintf(stderr, "--rows=%d: must be 1 to 8 (the max_batch_size of the exported pairs)\n", rows);
    return 1;
  }
  const fs::path work = absl::GetFlag(FLAGS_work_dir);
  const std::string device = absl::GetFlag(FLAGS_device);
  const fs::path repo = work / (device == "cpu" ? std::string("repo") : "repo-" + device);
  if (!fs::exists(repo / "vit_tiny_nonorm/config.pbtxt")) {
    const std::string cmd = absl::StrCat(absl::GetFlag(FLAGS_python), " bench/export_e2e_models.py --out ",
                                         repo.string(), " --device ", device);
    if (std::system(cmd.c_str()) != 0) return 1;
  }
  // The default repository's decoders, their configs moved to --device.
  for (const std::string decoder : {"llama_rms", "llama_dyt"}) {
    if (fs::exists(repo / decoder)) continue;
    const fs::path from = fs::absolute(fs::path(absl::GetFlag(FLAGS_repo)) / decoder);
    fs::create_directories(repo / decoder / "1");
    fs::create_symlink(from / "1" / "model.pt", repo / decoder / "1" / "model.pt");
    std::ifstream in(from / "config.pbtxt");
    std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = config.find("device: \"cpu\"");
    if (at != std::string::npos) config.replace(at, 13, absl::StrCat("device: \"", device, "\""));
    std::ofstream(repo / decoder / "config.pbtxt") << config;
  }
  absl::StatusOr<bench::BenchServer> started =
      bench::StartServer(absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", repo.string())});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<testing::ServerProcess>& server = started->process;
  std::unique_ptr<Client>& client = started->client;

  const std::vector<std::string> models = {"vit_tiny_ln", "vit_tiny_dyt", "vit_tiny_dyt_unfused", "vit_tiny_nonorm",
                                           "llama_rms", "llama_dyt"};
  std::vector<bench::Target> targets;
  std::mt19937_64 rng(1);
  for (const std::string& m : models) {
    GenerateOptions g;
    g.rows = rows;
    g.seq_len = 128;
    g.int_high = 256;
    targets.push_back({m, *GenerateInputs(*client->GetModelMetadata(m), g, &rng)});
  }
  absl::StatusOr<std::vector<std::vector<double>>> latencies =
      bench::Interleaved(*client, targets, absl::Seconds(3), absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  if (!latencies.ok()) {
    std::fprintf(stderr, "%s\n", latencies.status().ToString().c_str());
    return 1;
  }
  auto index = [&](const std::string& m) { return std::find(models.begin(), models.end(), m) - models.begin(); };
  const size_t samples = (*latencies)[0].size();
  const int blocks = std::max(1, std::min<int>(absl::GetFlag(FLAGS_blocks), static_cast<int>(samples)));
  // p50(a) / p50(b) over the whole run, and its lowest and highest over the blocks.
  auto ratio = [&](const std::string& a, const std::string& b) {
    const std::vector<double>& la = (*latencies)[index(a)];
    const std::vector<double>& lb = (*latencies)[index(b)];
    double low = 1e9, high = 0;
    for (int k = 0; k < blocks; ++k) {
      const size_t from = samples * k / blocks, to = samples * (k + 1) / blocks;
      const double r = bench::Median({la.begin() + from, la.begin() + to}) /
                       bench::Median({lb.begin() + from, lb.begin() + to});
      low = std::min(low, r);
      high = std::max(high, r);
    }
    return std::array<double, 3>{bench::Median(la) / bench::Median(lb), low, high};
  };
  std::printf("DyT end to end, served on %s, one request in flight, models in turn, %zu requests each\n",
              device.c_str(), samples);
  for (const std::string& m : models) {
    std::printf("  %-22s p50 %8.3f ms\n", m.c_str(), bench::Median((*latencies)[index(m)]));
  }
  const auto vit = ratio("vit_tiny_dyt", "vit_tiny_ln"), unfused = ratio("vit_tiny_dyt_unfused", "vit_tiny_ln");
  const auto floor = ratio("vit_tiny_nonorm", "vit_tiny_ln");
  const auto decoder = ratio("llama_dyt", "llama_rms");
  std::printf("ViT-Tiny (%dx3x224x224): DyT fused / LN = %.3f (blocks %.3f-%.3f; goal <= 0.95); "
              "DyT unfused / LN = %.3f (%.3f-%.3f)\n", rows, vit[0], vit[1], vit[2], unfused[0], unfused[1], unfused[2]);
  std::printf("ViT-Tiny with no norm at all / LN = %.3f (%.3f-%.3f): the floor for any norm replacement\n", floor[0],
              floor[1], floor[2]);
  std::printf("decoder (%dx128 tokens): DyT fused / RMSNorm = %.3f (blocks %.3f-%.3f; goal <= 1.0)\n", rows, decoder[0],
              decoder[1], decoder[2]);
  server->Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
