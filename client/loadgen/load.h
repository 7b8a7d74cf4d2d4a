// Running one load step: closed loop (N clients, one request in flight each)
// or open loop (requests at intended times, constant or Poisson arrivals).
// Open-loop latency is measured from each request's intended send time, so a
// server stall shows in the numbers instead of silently slowing the load
// (coordinated omission, as wrk2 avoids it); service time, from the actual
// send, is kept beside it.
#ifndef DYTSERVE_CLIENT_LOADGEN_LOAD_H_
#define DYTSERVE_CLIENT_LOADGEN_LOAD_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "loadgen/senders.h"
#include "dytserve/client.h"

namespace dytserve::loadgen {

struct LoadSpec {
  bool open_loop = false;
  int concurrency = 1;  // closed loop
  double rate = 0;      // open loop, requests per second
  bool poisson = false;
  absl::Duration warmup = absl::Seconds(1);
  absl::Duration window = absl::Seconds(2);
  int max_windows = 10;
  int stable_windows = 3;   // the last this many windows must agree...
  double stability = 0.10;  // ...within +-this fraction, in throughput and p99
  int64_t max_requests = 0; // measured requests; 0: no bound but the windows
};

// What one step sends: requests are used in turn (A/B mode interleaves the
// two models' copies of the same inputs).
struct RequestSource {
  std::vector<std::string> models;                 // index = Sample::model
  std::vector<std::pair<int, std::vector<Tensor>>> requests;  // (model index, inputs)
};

struct Sample {
  double latency_us;  // from the intended send time (open loop) or the send (closed)
  double service_us;  // from the actual send
  int model;
};

struct StepResult {
  std::vector<Sample> samples;             // successful requests of the reported windows
  std::map<std::string, int64_t> errors;  // gRPC code name -> count, reported windows
  double elapsed_s = 0;                    // length of the reported windows
  int windows = 0;
  bool stable = false;
  std::vector<double> window_rps;
  std::vector<double> window_p99_us;
  double cpu_us_per_request = 0;  // this process's user+system CPU per request
  // Requests sent in the reported windows (and answered, with any code,
  // before the step ended), per second: what an open-loop schedule
  // controls. Completions in the same windows can be more or fewer when the
  // server's latency moves requests across an edge.
  double sent_rps = 0;
  double throughput_rps() const { return elapsed_s > 0 ? samples.size() / elapsed_s : 0; }
};

struct Progress {
  double elapsed_s;
  double rps;
  double p99_us;
  int64_t errors;
};

// The stability criterion: the last `last` values all lie within
// +-tolerance of their mean (and there are at least `last`).
bool WindowsAgree(const std::vector<double>& values, int last, double tolerance);

// Runs one step. `at_start`/`at_end` run at the edges of the measured part
// (server metrics scrapes); `progress` about once a second.
StepResult RunStep(Sender& sender, const RequestSource& source, const LoadSpec& spec,
                   const std::function<void()>& at_start, const std::function<void()>& at_end,
                   const std::function<void(const Progress&)>& progress);

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_LOAD_H_
