#include "loadgen/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace dytserve::loadgen {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(q * static_cast<double>(sorted.size()));
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

LatencySummary Summarize(std::vector<double> samples) {
  LatencySummary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.p50 = Percentile(samples, 0.50);
  s.p90 = Percentile(samples, 0.90);
  s.p95 = Percentile(samples, 0.95);
  s.p99 = Percentile(samples, 0.99);
  s.p999 = Percentile(samples, 0.999);
  s.max = samples.back();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  return s;
}

DiffEstimate BootstrapQuantileDiff(const std::vector<double>& a, const std::vector<double>& b, double q,
                                   int iterations, std::mt19937_64* rng) {
  DiffEstimate out;
  if (a.empty() || b.empty()) return out;
  std::vector<double> sa = a, sb = b;
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  out.diff = Percentile(sb, q) - Percentile(sa, q);
  std::vector<double> diffs;
  diffs.reserve(static_cast<size_t>(iterations));
  std::vector<double> ra(a.size()), rb(b.size());
  std::uniform_int_distribution<size_t> pick_a(0, a.size() - 1), pick_b(0, b.size() - 1);
  for (int i = 0; i < iterations; ++i) {
    for (double& v : ra) v = a[pick_a(*rng)];
    for (double& v : rb) v = b[pick_b(*rng)];
    std::sort(ra.begin(), ra.end());
    std::sort(rb.begin(), rb.end());
    diffs.push_back(Percentile(rb, q) - Percentile(ra, q));
  }
  std::sort(diffs.begin(), diffs.end());
  out.lo = Percentile(diffs, 0.025);
  out.hi = Percentile(diffs, 0.975);
  return out;
}

MannWhitney MannWhitneyU(const std::vector<double>& a, const std::vector<double>& b) {
  MannWhitney out;
  const double n1 = static_cast<double>(a.size()), n2 = static_cast<double>(b.size());
  if (a.empty() || b.empty()) return out;
  // Rank the pooled samples, ties sharing their average rank.
  std::vector<std::pair<double, int>> pooled;
  for (double v : a) pooled.push_back({v, 0});
  for (double v : b) pooled.push_back({v, 1});
  std::sort(pooled.begin(), pooled.end());
  double rank_sum_a = 0, tie_term = 0;
  for (size_t i = 0; i < pooled.size();) {
    size_t j = i;
    while (j < pooled.size() && pooled[j].first == pooled[i].first) ++j;
    const double average_rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    for (size_t k = i; k < j; ++k) {
      if (pooled[k].second == 0) rank_sum_a += average_rank;
    }
    i = j;
  }
  out.u = rank_sum_a - n1 * (n1 + 1) / 2;
  const double n = n1 + n2;
  const double mean = n1 * n2 / 2;
  const double variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)));
  if (variance <= 0) return out;
  // Continuity correction toward the mean.
  const double delta = out.u - mean;
  const double corrected = std::abs(delta) < 0.5 ? 0 : delta - std::copysign(0.5, delta);
  out.z = corrected / std::sqrt(variance);
  out.p_value = std::erfc(std::abs(out.z) / std::sqrt(2.0));
  return out;
}

}  // namespace dytserve::loadgen
