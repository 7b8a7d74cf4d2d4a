// Closed-loop load for benchmarks: `concurrency` workers, each keeping one
// request in flight, measured over a window after a warm-up.
#ifndef DYTSERVE_BENCH_CLOSED_LOOP_H_
#define DYTSERVE_BENCH_CLOSED_LOOP_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dytserve/client.h"
#include "support/server_process.h"

namespace dytserve::bench {

struct LoopResult {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int errors = 0;
  double seconds = 0;                // the measured window
  std::vector<double> latencies_ms;  // sorted
};

// Lowers every thread of this process, those already running (the gRPC
// client's) and, through inheritance, those started later, to `nice`. On a
// small machine the load generator shares the cores with the server it
// measures; lowered, it takes what the server leaves instead of preempting
// its batch threads, as a generator on another machine would. Call it after
// the server process is started: a child inherits its parent's niceness.
// Returns false (and leaves the rest) where a thread could not be lowered.
bool LowerPriority(int nice);

// `at_start` / `at_end` run right at the edges of the measured window (e.g.
// to scrape server metrics).
LoopResult ClosedLoop(Client& client, const std::string& model, const std::vector<Tensor>& inputs, int concurrency,
                      absl::Duration warmup, absl::Duration window, const std::function<void()>& at_start = {},
                      const std::function<void()>& at_end = {});

// One request in flight at a time, the models taking turns request by
// request (in a new random order each turn), so that a machine whose speed
// drifts (shared cores) slows every model alike. Returns each model's
// latencies in ms, in the order sent.
struct Target {
  std::string model;
  std::vector<Tensor> inputs;
};
absl::StatusOr<std::vector<std::vector<double>>> Interleaved(Client& client, const std::vector<Target>& targets,
                                                             absl::Duration warmup, absl::Duration duration);

// The median of `v` (a copy is sorted).
double Median(std::vector<double> v);

// A real server on loopback and a client for it.
struct BenchServer {
  std::unique_ptr<testing::ServerProcess> process;
  std::unique_ptr<Client> client;
};
absl::StatusOr<BenchServer> StartServer(const std::string& binary, std::vector<std::string> args);

// The value of one series in a Prometheus text scrape; 0 when absent.
double MetricValue(const std::string& scrape, const std::string& series);

}  // namespace dytserve::bench

#endif  // DYTSERVE_BENCH_CLOSED_LOOP_H_
