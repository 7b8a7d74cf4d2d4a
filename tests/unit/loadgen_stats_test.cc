#include <gtest/gtest.h>

#include <random>

#include "loadgen/load.h"
#include "loadgen/stats.h"

namespace dytserve::loadgen {
namespace {

TEST(Percentile, NearestRankOnKnownData) {
  std::vector<double> v;
  for (int i = 1; i <= 1000; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.50), 500);
  EXPECT_EQ(Percentile(v, 0.99), 990);
  EXPECT_EQ(Percentile(v, 0.999), 999);
  EXPECT_EQ(Percentile(v, 1.0), 1000);
  EXPECT_EQ(Percentile({7}, 0.99), 7);
  EXPECT_EQ(Percentile({}, 0.5), 0);
  const LatencySummary s = Summarize({5, 1, 4, 2, 3});  // unsorted in
  EXPECT_EQ(s.p50, 3);
  EXPECT_EQ(s.max, 5);
  EXPECT_EQ(s.mean, 3);
}

TEST(MannWhitney, KnownValues) {
  // Fully separated samples of 3: U = 0; normal approximation with
  // continuity correction: z = (0 - 4.5 + 0.5) / sqrt(5.25), p = 0.0808.
  const MannWhitney separated = MannWhitneyU({1, 2, 3}, {4, 5, 6});
  EXPECT_EQ(separated.u, 0);
  EXPECT_NEAR(separated.p_value, 0.0808, 1e-3);
  const MannWhitney same = MannWhitneyU({1, 2, 3, 4}, {1, 2, 3, 4});
  EXPECT_EQ(same.u, 8);
  EXPECT_NEAR(same.p_value, 1.0, 1e-9);
  // Large shifted samples are clearly different.
  std::mt19937_64 rng(1);
  std::normal_distribution<double> n(0, 1);
  std::vector<double> a, b;
  for (int i = 0; i < 500; ++i) {
    a.push_back(n(rng));
    b.push_back(n(rng) + 0.5);
  }
  EXPECT_LT(MannWhitneyU(a, b).p_value, 1e-6);
}

TEST(Bootstrap, IntervalCoversTheTrueShift) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> n(100, 5);
  std::vector<double> a, b;
  for (int i = 0; i < 2000; ++i) {
    a.push_back(n(rng));
    b.push_back(n(rng) + 10);
  }
  const DiffEstimate p50 = BootstrapQuantileDiff(a, b, 0.5, 500, &rng);
  EXPECT_NEAR(p50.diff, 10, 1);
  EXPECT_LT(p50.lo, 10);
  EXPECT_GT(p50.hi, 10);
  EXPECT_GT(p50.lo, 0) << "the interval excludes no difference";
  const DiffEstimate none = BootstrapQuantileDiff(a, a, 0.99, 500, &rng);
  EXPECT_LE(none.lo, 0);
  EXPECT_GE(none.hi, 0);
}

TEST(Stability, LastWindowsMustAgree) {
  EXPECT_FALSE(WindowsAgree({100, 100}, 3, 0.1)) << "too few windows";
  EXPECT_TRUE(WindowsAgree({50, 100, 95, 105}, 3, 0.1));
  EXPECT_FALSE(WindowsAgree({100, 95, 130}, 3, 0.1));
  EXPECT_FALSE(WindowsAgree({0, 0, 0}, 3, 0.1)) << "no throughput is not stable";
}

}  // namespace
}  // namespace dytserve::loadgen
