#include "closed_loop.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace dytserve::bench {

bool LowerPriority(int nice) {
  // Linux keeps niceness per thread, and setpriority(PRIO_PROCESS, tid)
  // sets one thread's; /proc/self/task lists them all.
  std::error_code ec;
  bool all = true;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const int tid = std::atoi(task.path().filename().c_str());
    if (tid > 0 && setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice) != 0) all = false;
  }
  return all && !ec;
}

LoopResult ClosedLoop(Client& client, const std::string& model, const std::vector<Tensor>& inputs, int concurrency,
                      absl::Duration warmup, absl::Duration window, const std::function<void()>& at_start,
                      const std::function<void()>& at_end) {
  absl::Mutex mu;
  std::vector<double> latencies;
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<int> errors{0};
  absl::BlockingCounter workers(concurrency);
  std::vector<std::function<void()>> loops(concurrency);
  for (int w = 0; w < concurrency; ++w) {
    loops[w] = [&, w] {
      const absl::Time sent = absl::Now();
      client.InferAsync(model, inputs, {}, [&, w, sent](absl::StatusOr<InferResult> r) {
        if (!r.ok()) ++errors;
        if (measuring.load()) {
          absl::MutexLock lock(&mu);
          latencies.push_back(absl::ToDoubleMilliseconds(absl::Now() - sent));
        }
        if (stop.load()) {
          workers.DecrementCount();
        } else {
          loops[w]();  // the next request of this worker
        }
      });
    };
  }
  for (auto& loop : loops) loop();
  absl::SleepFor(warmup);
  if (at_start) at_start();
  measuring = true;
  const absl::Time start = absl::Now();
  absl::SleepFor(window);
  measuring = false;
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  if (at_end) at_end();
  stop = true;
  workers.Wait();

  LoopResult result;
  absl::MutexLock lock(&mu);
  std::sort(latencies.begin(), latencies.end());
  result.rps = latencies.size() / elapsed;
  if (!latencies.empty()) {
    result.p50_ms = latencies[latencies.size() / 2];
    result.p99_ms = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
  }
  result.errors = errors.load();
  result.seconds = elapsed;
  result.latencies_ms = std::move(latencies);
  return result;
}

absl::StatusOr<std::vector<std::vector<double>>> Interleaved(Client& client, const std::vector<Target>& targets,
                                                             absl::Duration warmup, absl::Duration duration) {
  std::vector<std::vector<double>> latencies(targets.size());
  std::vector<size_t> order(targets.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(7);
  const absl::Time start = absl::Now();
  while (absl::Now() - start < warmup + duration) {
    const bool measured = absl::Now() - start >= warmup;
    // A new order each turn: no model always follows the same other one.
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      const absl::Time sent = absl::Now();
      absl::StatusOr<InferResult> result = client.Infer(targets[i].model, targets[i].inputs);
      if (!result.ok()) return result.status();
      if (measured) latencies[i].push_back(absl::ToDoubleMilliseconds(absl::Now() - sent));
    }
  }
  return latencies;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::StatusOr<BenchServer> StartServer(const std::string& binary, std::vector<std::string> args) {
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> process =
      testing::ServerProcess::Start(binary, std::move(args));
  if (!process.ok()) return process.status();
  ClientOptions options;
  options.endpoints = {(*process)->grpc_address()};
  options.default_deadline = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return client.status();
  return BenchServer{*std::move(process), *std::move(client)};
}

double MetricValue(const std::string& scrape, const std::string& series) {
  // At a line's start: "# HELP <name> ..." also has the name and a space.
  const std::string needle = series + " ";
  for (size_t at = scrape.find(needle); at != std::string::npos; at = scrape.find(needle, at + 1)) {
    if (at == 0 || scrape[at - 1] == '\n') return std::stod(scrape.substr(at + needle.size()));
  }
  return 0;
}

}  // namespace dytserve::bench
