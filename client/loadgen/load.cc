#include "loadgen/load.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "loadgen/stats.h"

namespace dytserve::loadgen {
namespace {

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec * 1e-6;
}

// Completed requests, stamped with when they were sent and completed.
struct Record {
  absl::Time sent;
  absl::Time done;
  double latency_us;
  double service_us;
  int model;
  absl::StatusCode code;
};

class Recorder {
 public:
  void Add(Record r) {
    absl::MutexLock lock(&mu_);
    records_.push_back(r);
  }
  std::vector<Record> Between(absl::Time from, absl::Time to) const {
    absl::MutexLock lock(&mu_);
    std::vector<Record> out;
    for (const Record& r : records_) {
      if (r.done >= from && r.done < to) out.push_back(r);
    }
    return out;
  }
  int64_t CountSentBetween(absl::Time from, absl::Time to) const {
    absl::MutexLock lock(&mu_);
    int64_t n = 0;
    for (const Record& r : records_) n += r.sent >= from && r.sent < to;
    return n;
  }
  int64_t CountSince(absl::Time from) const {
    absl::MutexLock lock(&mu_);
    int64_t n = 0;
    for (auto it = records_.rbegin(); it != records_.rend() && it->done >= from; ++it) ++n;
    return n;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Record> records_ ABSL_GUARDED_BY(mu_);
};

struct Shared {
  Sender* sender;
  const RequestSource* source;
  Recorder recorder;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> stop{false};
  absl::Mutex mu;
};

// Sends request number `n` (cycling through the source), intended at `intended`.
void Send(const std::shared_ptr<Shared>& s, int64_t n, absl::Time intended, std::function<void()> then) {
  const auto& [model, inputs] = s->source->requests[static_cast<size_t>(n) % s->source->requests.size()];
  const absl::Time sent = absl::Now();
  s->in_flight.fetch_add(1);
  const int model_index = model;
  s->sender->InferAsync(s->source->models[model], inputs,
                        [s, intended, sent, model_index, then = std::move(then)](absl::Status status) {
                          const absl::Time done = absl::Now();
                          s->recorder.Add({sent, done, absl::ToDoubleMicroseconds(done - intended),
                                           absl::ToDoubleMicroseconds(done - sent), model_index, status.code()});
                          s->in_flight.fetch_sub(1);
                          if (then) then();
                        });
}

void ClosedWorker(const std::shared_ptr<Shared>& s) {
  if (s->stop.load()) return;
  const int64_t n = s->next.fetch_add(1);
  Send(s, n, absl::Now(), [s] { ClosedWorker(s); });
}

}  // namespace

bool WindowsAgree(const std::vector<double>& values, int last, double tolerance) {
  if (static_cast<int>(values.size()) < last) return false;
  const auto begin = values.end() - last;
  double sum = 0;
  for (auto it = begin; it != values.end(); ++it) sum += *it;
  const double mean = sum / last;
  if (mean <= 0) return false;
  for (auto it = begin; it != values.end(); ++it) {
    if (std::abs(*it - mean) > tolerance * mean) return false;
  }
  return true;
}

StepResult RunStep(Sender& sender, const RequestSource& source, const LoadSpec& spec,
                   const std::function<void()>& at_start, const std::function<void()>& at_end,
                   const std::function<void(const Progress&)>& progress) {
  auto shared = std::make_shared<Shared>();
  shared->sender = &sender;
  shared->source = &source;

  std::thread scheduler;
  const absl::Time start = absl::Now();
  if (spec.open_loop) {
    scheduler = std::thread([shared, spec, start] {
      std::mt19937_64 rng(42);
      std::exponential_distribution<double> gap(spec.rate);
      double offset_s = 0;
      for (int64_t n = 0; !shared->stop.load(); ++n) {
        const absl::Time intended = start + absl::Seconds(offset_s);
        // Short sleeps so that a stop is seen; when behind schedule, send at
        // once: the lateness counts in that request's latency.
        while (!shared->stop.load() && absl::Now() < intended) {
          absl::SleepFor(std::min(intended - absl::Now(), absl::Milliseconds(50)));
        }
        if (shared->stop.load()) break;
        Send(shared, n, intended, nullptr);
        offset_s += spec.poisson ? gap(rng) : 1.0 / spec.rate;
      }
    });
  } else {
    for (int i = 0; i < spec.concurrency; ++i) ClosedWorker(shared);
  }

  // Warm-up, then windows until the last few agree or the budget ends.
  absl::SleepFor(spec.warmup);
  if (at_start) at_start();
  const double cpu_start = CpuSeconds();
  const absl::Time measure_start = absl::Now();
  std::vector<absl::Time> edges = {measure_start};
  StepResult result;
  int64_t measured = 0;
  absl::Time next_progress = measure_start + absl::Seconds(1);
  while (true) {
    const absl::Time window_end = edges.back() + spec.window;
    while (absl::Now() < window_end) {
      absl::SleepFor(std::min(absl::Milliseconds(20), window_end - absl::Now()));
      if (spec.max_requests > 0 && shared->recorder.CountSince(measure_start) >= spec.max_requests) break;
      if (progress && absl::Now() >= next_progress) {
        next_progress += absl::Seconds(1);
        std::vector<Record> recent = shared->recorder.Between(absl::Now() - absl::Seconds(1), absl::Now());
        std::vector<double> lat;
        int64_t errors = 0;
        for (const Record& r : shared->recorder.Between(measure_start, absl::Now())) {
          if (r.code == absl::StatusCode::kOk) lat.push_back(r.latency_us);
          else ++errors;
        }
        progress({absl::ToDoubleSeconds(absl::Now() - start), static_cast<double>(recent.size()),
                  Summarize(lat).p99, errors});
      }
    }
    edges.push_back(std::min(absl::Now(), window_end));
    const std::vector<Record> window = shared->recorder.Between(edges[edges.size() - 2], edges.back());
    std::vector<double> lat;
    for (const Record& r : window) {
      if (r.code == absl::StatusCode::kOk) lat.push_back(r.latency_us);
    }
    const double seconds = absl::ToDoubleSeconds(edges.back() - edges[edges.size() - 2]);
    result.window_rps.push_back(seconds > 0 ? lat.size() / seconds : 0);
    result.window_p99_us.push_back(Summarize(lat).p99);
    measured += static_cast<int64_t>(window.size());
    result.stable = WindowsAgree(result.window_rps, spec.stable_windows, spec.stability) &&
                    WindowsAgree(result.window_p99_us, spec.stable_windows, spec.stability);
    const bool budget_done = static_cast<int>(result.window_rps.size()) >= spec.max_windows ||
                             (spec.max_requests > 0 && measured >= spec.max_requests);
    if (result.stable || budget_done) break;
  }
  if (at_end) at_end();
  const double cpu_used = CpuSeconds() - cpu_start;
  shared->stop.store(true);
  if (scheduler.joinable()) scheduler.join();
  // Let what is in flight finish (closed-loop workers stop after their reply).
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (shared->in_flight.load() > 0 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(5));

  // Report the last windows: the stable ones, or as many as ran.
  result.windows = static_cast<int>(result.window_rps.size());
  const int reported = std::min(result.windows, spec.stable_windows);
  const absl::Time from = edges[edges.size() - 1 - reported];
  const int64_t sent_in_windows = shared->recorder.CountSentBetween(from, edges.back());
  for (const Record& r : shared->recorder.Between(from, edges.back())) {
    if (r.code == absl::StatusCode::kOk) {
      result.samples.push_back({r.latency_us, r.service_us, r.model});
    } else {
      ++result.errors[absl::StatusCodeToString(r.code)];
    }
  }
  result.elapsed_s = absl::ToDoubleSeconds(edges.back() - from);
  result.sent_rps = result.elapsed_s > 0 ? sent_in_windows / result.elapsed_s : 0;
  result.cpu_us_per_request = measured > 0 ? 1e6 * cpu_used / static_cast<double>(measured) : 0;
  return result;
}

}  // namespace dytserve::loadgen
