// `dytserve-cli experiment report`: per-arm figures of one experiment from a
// scrape of the server's /metrics, and each arm against a baseline arm with
// 95% confidence intervals, so "DyT is faster" is a claim with error bars.
//
// Everything comes from cumulative counters and histograms, so a report
// covers the server's life (or, with --since, the change between scrapes).
#ifndef DYTSERVE_CLIENT_CLI_EXPERIMENT_REPORT_H_
#define DYTSERVE_CLIENT_CLI_EXPERIMENT_REPORT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/ab_stats.h"

namespace dytserve::cli {

// One histogram: cumulative counts per upper bound (+Inf last), sum, count.
struct Histogram {
  std::map<double, double> cumulative;
  double sum = 0;
  double count = 0;

  // histogram_quantile's estimate: linear within the bucket; NaN when empty.
  double Quantile(double q) const;
  double Mean() const { return count > 0 ? sum / count : 0; }
  // Estimated from bucket midpoints (the +Inf bucket at the last bound).
  double Variance() const;
  // Adds `other`'s observations (same buckets).
  void Add(const Histogram& other);
};

// How one histogram family changed between two scrapes, summed over the
// series whose labels include every one of `labels`.
Histogram HistogramDelta(const std::string& before, const std::string& after, const std::string& family,
                         const std::map<std::string, std::string>& labels);

struct ArmFigures {
  std::string arm;
  std::string model;  // "name:version" of what served it
  double requests = 0;
  double errors = 0;  // every code but OK
  Histogram latency;
  // Outcome feedback (dytserve_feedback_total): labels against the top-1,
  // rewards in [0, 1].
  double correct = 0;
  double incorrect = 0;
  double rewards = 0;
  double reward_sum = 0;
  double labels() const { return correct + incorrect; }
  stats::Interval accuracy;  // Wilson, 95%
  stats::Interval mean_reward;
};

struct Interval {
  double estimate = 0;
  double low = 0;
  double high = 0;
  bool significant() const { return low > 0 || high < 0; }
};

struct ArmComparison {
  std::string arm;
  Interval mean_latency_s;  // arm minus baseline
  Interval error_ratio;     // arm minus baseline
  std::string verdict;
  // Quality, arm minus baseline: accuracy (Newcombe, 95%) when labels came,
  // else mean reward when rewards came; `quality` names which ("" for none).
  std::string quality;
  stats::Interval quality_difference;
  stats::Inferiority inferiority = stats::Inferiority::kNotEnoughData;
  // More outcomes per arm before the verdict is likely decided (power 80%,
  // if the rates stay what they are now); 0 once decided, infinite when the
  // difference sits exactly at the margin.
  double outcomes_still_needed = 0;
  std::string quality_verdict;
};

struct ShadowFigures {
  std::string arm;
  std::string model;
  double requests = 0;
  double errors = 0;
  Histogram latency;
  // Per output: compared requests, top-1 agreement and max-abs-difference.
  struct Output {
    std::string name;
    double top1_agreeing = 0;
    double top1_compared = 0;
    double mismatches = 0;
    Histogram max_abs_difference;
  };
  std::vector<Output> outputs;
};

struct ExperimentReport {
  std::string experiment;
  std::string baseline;
  double margin = 0.005;  // non-inferiority margin, in the rate's units
  std::vector<ArmFigures> arms;  // baseline first
  std::vector<ArmComparison> comparisons;
  std::vector<ShadowFigures> shadows;
};

// Builds the report of `experiment` from `scrape` minus `before` (empty:
// since start). `baseline` empty: `arm_order`'s first arm seen in the scrape,
// else the alphabetically first. NOT_FOUND when no series names the
// experiment. `margin`: the non-inferiority margin (0.005: "no worse than
// the baseline by more than half a point").
absl::StatusOr<ExperimentReport> BuildExperimentReport(const std::string& scrape, const std::string& before,
                                                       const std::string& experiment, const std::string& baseline,
                                                       const std::vector<std::string>& arm_order,
                                                       double margin = 0.005);

std::string ReportText(const ExperimentReport& report);
std::string ReportJson(const ExperimentReport& report);

}  // namespace dytserve::cli

#endif  // DYTSERVE_CLIENT_CLI_EXPERIMENT_REPORT_H_
