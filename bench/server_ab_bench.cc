// Two dytserve-server builds on the same repository, side by side in one run:
// for the runtime move (LibTorch 1.13 from Debian against the wheel's 2.11)
// or any two commits. Both servers run at once; they take turns in blocks of
// --block_seconds (one request in flight, the models in turn request by
// request), so a shared machine's drift weighs on both alike, and an idle
// server is idle while the other is measured. Per model: p50 of each server
// and B/A, with its spread over the block pairs. Per server: resident memory
// after loading and after the run, and the shared libraries it maps.
//
//   build/bench/server_ab_bench --server_a=OLD/dytserve-server --server_b=build/server/dytserve-server
//                               --repo=DIR --models=vit_tiny_ln,vit_tiny_dyt [--blocks=10 --block_seconds=3]
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "closed_loop.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, server_a, "", "dytserve-server binary A (the baseline)");
ABSL_FLAG(std::string, server_b, "build/server/dytserve-server", "dytserve-server binary B");
ABSL_FLAG(std::string, label_a, "A", "What A is, for the report");
ABSL_FLAG(std::string, label_b, "B", "What B is, for the report");
ABSL_FLAG(std::string, repo, "", "Model repository both serve");
ABSL_FLAG(std::string, models, "", "Comma-separated models to measure");
ABSL_FLAG(int, rows, 1, "Rows per request");
ABSL_FLAG(int, seq_len, 128, "Length of every variable dimension but the batch");
ABSL_FLAG(int, blocks, 10, "Blocks each server gets, alternating");
ABSL_FLAG(double, block_seconds, 3, "Seconds of one block");
ABSL_FLAG(std::string, server_flags, "", "Further flags for both servers, space-separated");

namespace dytserve {
namespace {

struct Footprint {
  double rss_mib = 0;
  size_t libraries = 0;
};

Footprint Measure(pid_t pid) {
  Footprint f;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  for (std::string line; std::getline(status, line);) {
    if (absl::StartsWith(line, "VmRSS:")) f.rss_mib = std::stod(line.substr(6)) / 1024.0;
  }
  std::ifstream maps(absl::StrCat("/proc/", pid, "/maps"));
  std::set<std::string> libraries;
  for (std::string line; std::getline(maps, line);) {
    const size_t slash = line.find('/');
    if (slash != std::string::npos && absl::StrContains(line, ".so")) libraries.insert(line.substr(slash));
  }
  f.libraries = libraries.size();
  return f;
}

int Run() {
  std::vector<std::string> args = {absl::StrCat("--model_repository=", absl::GetFlag(FLAGS_repo))};
  for (absl::string_view f : absl::StrSplit(absl::GetFlag(FLAGS_server_flags), ' ', absl::SkipEmpty())) {
    args.emplace_back(f);
  }
  const std::vector<std::string> models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty());
  if (absl::GetFlag(FLAGS_server_a).empty() || absl::GetFlag(FLAGS_repo).empty() || models.empty()) {
    std::fprintf(stderr, "--server_a, --repo and --models are required\n");
    return 2;
  }
  absl::StatusOr<bench::BenchServer> a = bench::StartServer(absl::GetFlag(FLAGS_server_a), args);
  absl::StatusOr<bench::BenchServer> b = bench::StartServer(absl::GetFlag(FLAGS_server_b), args);
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "%s\n", (a.ok() ? b.status() : a.status()).ToString().c_str());
    return 1;
  }
  const Footprint loaded_a = Measure(a->process->pid()), loaded_b = Measure(b->process->pid());

  std::vector<bench::Target> targets;
  std::mt19937_64 rng(3);
  for (const std::string& m : models) {
    absl::StatusOr<ModelMetadata> metadata = a->client->GetModelMetadata(m);
    if (!metadata.ok()) {
      std::fprintf(stderr, "%s: %s\n", m.c_str(), metadata.status().ToString().c_str());
      return 1;
    }
    GenerateOptions g;
    g.rows = absl::GetFlag(FLAGS_rows);
    g.seq_len = absl::GetFlag(FLAGS_seq_len);
    g.int_high = 256;
    targets.push_back({m, *GenerateInputs(*metadata, g, &rng)});
  }
  // latencies[server][model][block] -> the block's samples
  std::vector<std::vector<std::vector<std::vector<double>>>> latencies(
      2, std::vector<std::vector<std::vector<double>>>(models.size()));
  const absl::Duration block = absl::Seconds(absl::GetFlag(FLAGS_block_seconds));
  for (int k = 0; k < absl::GetFlag(FLAGS_blocks); ++k) {
    for (int s = 0; s < 2; ++s) {
      Client& client = *(s == 0 ? a : b)->client;
      absl::StatusOr<std::vector<std::vector<double>>> run =
          bench::Interleaved(client, targets, absl::Milliseconds(300), block);
      if (!run.ok()) {
        std::fprintf(stderr, "%s\n", run.status().ToString().c_str());
        return 1;
      }
      for (size_t m = 0; m < models.size(); ++m) latencies[s][m].push_back((*run)[m]);
    }
  }
  const Footprint after_a = Measure(a->process->pid()), after_b = Measure(b->process->pid());

  const std::string la = absl::GetFlag(FLAGS_label_a), lb = absl::GetFlag(FLAGS_label_b);
  std::printf("two servers, one repository, one request in flight, %d blocks of %.1f s each, alternating\n",
              absl::GetFlag(FLAGS_blocks), absl::GetFlag(FLAGS_block_seconds));
  std::printf("%-22s %12s %12s %10s %18s\n", "model", ("p50 " + la).c_str(), ("p50 " + lb).c_str(),
              (lb + "/" + la).c_str(), "block pairs min-max");
  for (size_t m = 0; m < models.size(); ++m) {
    std::vector<double> all_a, all_b;
    double low = 1e9, high = 0;
    for (size_t k = 0; k < latencies[0][m].size(); ++k) {
      all_a.insert(all_a.end(), latencies[0][m][k].begin(), latencies[0][m][k].end());
      all_b.insert(all_b.end(), latencies[1][m][k].begin(), latencies[1][m][k].end());
      const double r = bench::Median(latencies[1][m][k]) / bench::Median(latencies[0][m][k]);
      low = std::min(low, r);
      high = std::max(high, r);
    }
    std::printf("%-22s %10.3fms %10.3fms %10.3f %9.3f-%.3f\n", models[m].c_str(), bench::Median(all_a),
                bench::Median(all_b), bench::Median(all_b) / bench::Median(all_a), low, high);
  }
  std::printf("%s: RSS %.1f MiB loaded, %.1f MiB after the run; %zu shared libraries mapped\n", la.c_str(),
              loaded_a.rss_mib, after_a.rss_mib, after_a.libraries);
  std::printf("%s: RSS %.1f MiB loaded, %.1f MiB after the run; %zu shared libraries mapped\n", lb.c_str(),
              loaded_b.rss_mib, after_b.rss_mib, after_b.libraries);
  a->process->Stop(SIGTERM);
  b->process->Stop(SIGTERM);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
