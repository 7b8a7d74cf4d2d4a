#include "server/core/ab_stats.h"

#include <cmath>

#include <gtest/gtest.h>

namespace dytserve::stats {
namespace {

// Newcombe (1998), "Two-sided confidence intervals for the single proportion"
// and "Interval estimation for the difference between independent
// proportions": their worked examples.
TEST(AbStats, WilsonMatchesNewcombesExample) {
  const Interval w = Wilson(81, 263);
  EXPECT_NEAR(w.low, 0.2553, 5e-5);
  EXPECT_NEAR(w.high, 0.3662, 5e-5);
  const Interval zero = Wilson(0, 10);
  EXPECT_EQ(zero.low, 0);
  EXPECT_NEAR(zero.high, 0.2775, 5e-5);  // not the Wald interval's [0, 0]
  EXPECT_FALSE(Wilson(0, 0).valid());
}

TEST(AbStats, NewcombeMethodTenMatchesHisExample) {
  const Interval d = Newcombe(56, 70, 48, 80);
  EXPECT_NEAR(d.estimate, 0.2, 1e-12);
  EXPECT_NEAR(d.low, 0.0524, 5e-5);
  EXPECT_NEAR(d.high, 0.3339, 5e-5);
  EXPECT_FALSE(Newcombe(1, 0, 1, 1).valid());
}

TEST(AbStats, NonInferiorityAgainstTheMargin) {
  EXPECT_EQ(NonInferiority({-0.001, -0.004, 0.002}, 0.005), Inferiority::kNonInferior);
  EXPECT_EQ(NonInferiority({-0.02, -0.03, -0.01}, 0.005), Inferiority::kInferior);
  EXPECT_EQ(NonInferiority({-0.004, -0.009, 0.001}, 0.005), Inferiority::kInconclusive);
  EXPECT_EQ(NonInferiority(Newcombe(1, 0, 1, 1), 0.005), Inferiority::kNotEnoughData);
}

TEST(AbStats, SampleSizeShrinksWithDistanceFromTheMargin) {
  // 95% vs 95%, margin 1 point: (1.96 + 0.84)^2 * 2 * 0.0475 / 0.01^2 = 7457.
  EXPECT_NEAR(SamplesPerArmNeeded(0.95, 0.95, 0.01), 7457, 2);
  EXPECT_GT(SamplesPerArmNeeded(0.95, 0.95, 0.005), SamplesPerArmNeeded(0.95, 0.95, 0.01));
  EXPECT_TRUE(std::isinf(SamplesPerArmNeeded(0.94, 0.95, 0.01)));
}

TEST(AbStats, BoundedMeansNeverClaimMoreThanBernoulli) {
  const Interval m = BoundedMean(50, 100);
  EXPECT_NEAR(m.estimate, 0.5, 1e-12);
  EXPECT_NEAR(m.high - m.estimate, kZ95 * 0.05, 1e-12);
  const Interval d = BoundedMeanDifference(60, 100, 50, 100);
  EXPECT_NEAR(d.estimate, 0.1, 1e-12);
  EXPECT_LT(d.low, d.estimate);
}

TEST(AbStats, TwoProportionPValue) {
  EXPECT_NEAR(TwoProportionPValue(50, 100, 50, 100), 1.0, 1e-12);
  // 60/100 vs 40/100: z = 0.2 / sqrt(0.25 * 0.02) = 2.828, p = 0.00468.
  EXPECT_NEAR(TwoProportionPValue(60, 100, 40, 100), 0.00468, 5e-5);
  EXPECT_EQ(TwoProportionPValue(1, 0, 1, 1), 1);
}

}  // namespace
}  // namespace dytserve::stats
