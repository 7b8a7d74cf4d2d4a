// What a load run reports: per step a human summary line, JSON, CSV and a
// self-contained HTML page with SVG charts, plus the A/B comparison.
#ifndef DYTSERVE_CLIENT_LOADGEN_REPORT_H_
#define DYTSERVE_CLIENT_LOADGEN_REPORT_H_

#include <optional>
#include <string>
#include <vector>

#include "loadgen/load.h"
#include "loadgen/stats.h"

namespace dytserve::loadgen {

struct ServerBreakdown {
  bool available = false;
  double queue_us = 0;    // mean time in the batch queue
  double compute_us = 0;  // mean batch compute time
  double avg_batch = 0;   // rows per forward pass
};

struct AbComparison {
  std::string a, b;
  LatencySummary latency_a, latency_b;
  DiffEstimate p50, p99;  // b - a, microseconds
  MannWhitney test;
  std::string verdict;
};

struct StepReport {
  std::string label;  // "concurrency 8", "rate 200/s"
  bool open_loop = false;
  double load = 0;    // concurrency or requests/s
  StepResult result;
  LatencySummary latency;
  LatencySummary service;
  ServerBreakdown server;
  std::optional<AbComparison> ab;
};

// Fills latency/service/ab from the result; `models` names A and B when two.
void Analyze(const std::vector<std::string>& models, StepReport* step);

std::string SummaryText(const std::vector<StepReport>& steps);
std::string Json(const std::vector<StepReport>& steps);
std::string Csv(const std::vector<StepReport>& steps);
// An experiment arm over the run (the server's /metrics about once a
// second): accuracy of the labels fed back since the run began, and the
// share of traffic its policy gives it. (seconds since start, value)
struct ArmTimeline {
  std::string arm;
  std::vector<std::pair<double, double>> accuracy;
  std::vector<std::pair<double, double>> share;
};

std::string Html(const std::vector<StepReport>& steps, const std::string& title,
                 const std::vector<ArmTimeline>& arms = {});

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_REPORT_H_
