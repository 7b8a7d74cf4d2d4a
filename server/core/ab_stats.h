// The statistics of an A/B experiment on outcomes: intervals for one arm's
// rate, for the difference between two arms, the non-inferiority verdict,
// and how many more outcomes a decision needs. Pure functions over counts:
// the CLI's report, the server's guardrails and the simulation tests share
// them, so "significant" means one thing everywhere.
#ifndef DYTSERVE_SERVER_CORE_AB_STATS_H_
#define DYTSERVE_SERVER_CORE_AB_STATS_H_

#include <string>

namespace dytserve::stats {

inline constexpr double kZ95 = 1.959963984540054;     // two-sided 95%
inline constexpr double kZ99 = 2.5758293035489004;    // two-sided 99%
inline constexpr double kZPower80 = 0.8416212335729143;

struct Interval {
  double estimate = 0;
  double low = 0;
  double high = 0;
  bool valid() const { return low == low; }  // not NaN
};

// Wilson's score interval for a proportion: `successes` of `n`. NaN when n < 1.
Interval Wilson(double successes, double n, double z = kZ95);

// Newcombe's hybrid score interval (his method 10) for p1 - p0, from the two
// Wilson intervals: good coverage at small counts and near 0 or 1, where the
// Wald interval is too narrow. NaN when either n < 1.
Interval Newcombe(double s1, double n1, double s0, double n0, double z = kZ95);

// Mean of outcomes bounded in [0, 1] (rewards): a normal interval whose
// variance is the largest a [0, 1] variable of that mean can have,
// mean * (1 - mean), so it never claims more than the data allow.
Interval BoundedMean(double sum, double n, double z = kZ95);
// The difference of two such means (arm minus baseline), the same way.
Interval BoundedMeanDifference(double sum1, double n1, double sum0, double n0, double z = kZ95);

enum class Inferiority { kNotEnoughData, kNonInferior, kInferior, kInconclusive };
// From the interval of arm minus baseline and the margin (> 0, in the same
// units: 0.005 is half a point of accuracy): non-inferior when the whole
// interval lies above -margin, inferior when it lies below.
Inferiority NonInferiority(const Interval& difference, double margin);
std::string InferiorityName(Inferiority v);

// Outcomes per arm a non-inferiority test at the margin needs (one-sided
// 2.5%, power 80%) if the true rates are p1 and p0; infinity when p1 - p0
// equals -margin, where no sample decides.
double SamplesPerArmNeeded(double p1, double p0, double margin);

// The z whose upper tail holds probability `p` (0 < p < 0.5): ZForUpperTail(0.025) = 1.96.
double ZForUpperTail(double p);

// Two-sided p-value of a two-proportion z-test (pooled), for "worse than the
// baseline with p < 0.01" rules. 1 when either n < 1.
double TwoProportionPValue(double s1, double n1, double s0, double n0);

}  // namespace dytserve::stats

#endif  // DYTSERVE_SERVER_CORE_AB_STATS_H_
