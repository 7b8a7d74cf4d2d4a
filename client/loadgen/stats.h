// Statistics for load results: exact percentiles from recorded samples, and
// the two-sample comparisons of A/B mode.
#ifndef DYTSERVE_CLIENT_LOADGEN_STATS_H_
#define DYTSERVE_CLIENT_LOADGEN_STATS_H_

#include <cstdint>
#include <random>
#include <vector>

namespace dytserve::loadgen {

// Nearest-rank percentile (q in [0, 1]) of ascending `sorted`: the smallest
// sample with at least q of the samples at or below it. 0 when empty.
double Percentile(const std::vector<double>& sorted, double q);

struct LatencySummary {
  double p50 = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};
LatencySummary Summarize(std::vector<double> samples);

struct DiffEstimate {
  double diff = 0;  // statistic(b) - statistic(a)
  double lo = 0;    // 95% bootstrap interval
  double hi = 0;
};
// Percentile-q difference between two samples with a percentile-bootstrap
// 95% confidence interval over `iterations` resamples.
DiffEstimate BootstrapQuantileDiff(const std::vector<double>& a, const std::vector<double>& b, double q,
                                   int iterations, std::mt19937_64* rng);

struct MannWhitney {
  double u = 0;        // U of sample a
  double z = 0;
  double p_value = 1;  // two-sided, normal approximation with tie correction
};
MannWhitney MannWhitneyU(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_STATS_H_
