#include "server/core/ab_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dytserve::stats {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Interval Nan() { return {kNaN, kNaN, kNaN}; }

}  // namespace

Interval Wilson(double successes, double n, double z) {
  if (n < 1) return Nan();
  const double p = std::clamp(successes / n, 0.0, 1.0);
  const double z2 = z * z;
  const double center = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half = z / (1 + z2 / n) * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n));
  return {p, std::max(0.0, center - half), std::min(1.0, center + half)};
}

Interval Newcombe(double s1, double n1, double s0, double n0, double z) {
  const Interval a = Wilson(s1, n1, z), b = Wilson(s0, n0, z);
  if (!a.valid() || !b.valid()) return Nan();
  const double d = a.estimate - b.estimate;
  return {d, d - std::sqrt((a.estimate - a.low) * (a.estimate - a.low) + (b.high - b.estimate) * (b.high - b.estimate)),
          d + std::sqrt((a.high - a.estimate) * (a.high - a.estimate) + (b.estimate - b.low) * (b.estimate - b.low))};
}

Interval BoundedMean(double sum, double n, double z) {
  if (n < 1) return Nan();
  const double m = std::clamp(sum / n, 0.0, 1.0);
  const double half = z * std::sqrt(m * (1 - m) / n);
  return {m, std::max(0.0, m - half), std::min(1.0, m + half)};
}

Interval BoundedMeanDifference(double sum1, double n1, double sum0, double n0, double z) {
  if (n1 < 1 || n0 < 1) return Nan();
  const double m1 = std::clamp(sum1 / n1, 0.0, 1.0), m0 = std::clamp(sum0 / n0, 0.0, 1.0);
  const double half = z * std::sqrt(m1 * (1 - m1) / n1 + m0 * (1 - m0) / n0);
  return {m1 - m0, m1 - m0 - half, m1 - m0 + half};
}

Inferiority NonInferiority(const Interval& difference, double margin) {
  if (!difference.valid()) return Inferiority::kNotEnoughData;
  if (difference.low > -margin) return Inferiority::kNonInferior;
  if (difference.high < -margin) return Inferiority::kInferior;
  return Inferiority::kInconclusive;
}

std::string InferiorityName(Inferiority v) {
  switch (v) {
    case Inferiority::kNotEnoughData:
      return "not enough outcomes";
    case Inferiority::kNonInferior:
      return "non-inferior";
    case Inferiority::kInferior:
      return "inferior";
    case Inferiority::kInconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

double SamplesPerArmNeeded(double p1, double p0, double margin) {
  const double distance = p1 - p0 + margin;
  if (std::fabs(distance) < 1e-12) return std::numeric_limits<double>::infinity();
  // A proportion of exactly 0 or 1 has no variance to plan with; plan with
  // half an outcome's worth instead of promising a sample of 0.
  const double v1 = std::max(p1 * (1 - p1), 1e-4), v0 = std::max(p0 * (1 - p0), 1e-4);
  const double z = kZ95 + kZPower80;
  return std::ceil(z * z * (v1 + v0) / (distance * distance));
}

double ZForUpperTail(double p) {
  double low = 0, high = 40;
  for (int i = 0; i < 200; ++i) {
    const double mid = (low + high) / 2;
    (0.5 * std::erfc(mid / std::sqrt(2.0)) > p ? low : high) = mid;
  }
  return (low + high) / 2;
}

double TwoProportionPValue(double s1, double n1, double s0, double n0) {
  if (n1 < 1 || n0 < 1) return 1;
  const double p = (s1 + s0) / (n1 + n0);
  const double se = std::sqrt(p * (1 - p) * (1 / n1 + 1 / n0));
  if (se == 0) return (s1 / n1 == s0 / n0) ? 1 : 0;
  const double z = std::fabs(s1 / n1 - s0 / n0) / se;
  return std::erfc(z / std::sqrt(2.0));
}

}  // namespace dytserve::stats
