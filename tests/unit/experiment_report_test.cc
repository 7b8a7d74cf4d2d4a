#include "cli/experiment_report.h"

#include <cmath>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dytserve::cli {
namespace {

// The series a server exposes for one arm: `ok` and `errors` requests whose
// latencies all fall in the bucket (lo, hi].
std::string ArmSeries(const std::string& experiment, const std::string& arm, double ok, double errors, double lo,
                      double hi) {
  const std::string labels = absl::StrCat("arm=\"", arm, "\",experiment=\"", experiment,
                                          "\",model=\"m_", arm, "\",version=\"1\"");
  const double n = ok + errors;
  std::string out = absl::StrCat("dytserve_requests_total{", labels, ",code=\"OK\"} ", ok, "\n",
                                 "dytserve_requests_total{", labels, ",code=\"INTERNAL\"} ", errors, "\n");
  for (double le : {0.001, 0.002, 0.005, 0.01}) {
    absl::StrAppend(&out, "dytserve_request_duration_seconds_bucket{", labels, ",le=\"", le, "\"} ",
                    le >= hi ? n : (le <= lo ? 0 : n / 2), "\n");
  }
  absl::StrAppend(&out, "dytserve_request_duration_seconds_bucket{", labels, ",le=\"+Inf\"} ", n, "\n",
                  "dytserve_request_duration_seconds_sum{", labels, "} ", n * (lo + hi) / 2, "\n",
                  "dytserve_request_duration_seconds_count{", labels, "} ", n, "\n");
  return out;
}

// The feedback series a server exposes for one arm.
std::string FeedbackSeries(const std::string& experiment, const std::string& arm, double correct, double incorrect,
                           double rewards = 0, double reward_sum = 0) {
  const std::string labels = absl::StrCat("arm=\"", arm, "\",experiment=\"", experiment, "\",model=\"m_", arm, "\"");
  return absl::StrCat("dytserve_feedback_total{", labels, ",outcome=\"correct\"} ", correct, "\n",
                      "dytserve_feedback_total{", labels, ",outcome=\"incorrect\"} ", incorrect, "\n",
                      "dytserve_feedback_total{", labels, ",outcome=\"reward\"} ", rewards, "\n",
                      "dytserve_feedback_reward_sum{", labels, "} ", reward_sum, "\n");
}

TEST(ExperimentReport, AccuracyTwoPointsWorseIsInferior) {
  const std::string scrape = ArmSeries("vit", "ln", 5000, 0, 0.001, 0.002) + FeedbackSeries("vit", "ln", 4750, 250) +
                             ArmSeries("vit", "dyt", 5000, 0, 0.001, 0.002) + FeedbackSeries("vit", "dyt", 4650, 350);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "vit", "ln", {}, 0.005);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->arms[1].model, "m_dyt:1") << "feedback series carry no version and must not rename the model";
  EXPECT_NEAR(r->arms[0].accuracy.estimate, 0.95, 1e-12);
  const ArmComparison& c = r->comparisons[0];
  EXPECT_EQ(c.quality, "accuracy");
  EXPECT_NEAR(c.quality_difference.estimate, -0.02, 1e-12);
  EXPECT_EQ(c.inferiority, stats::Inferiority::kInferior) << c.quality_verdict;
  EXPECT_EQ(c.outcomes_still_needed, 0);
  const std::string text = ReportText(*r);
  EXPECT_TRUE(absl::StrContains(text, "accuracy: inferior at a margin of 0.50 points")) << text;
  EXPECT_TRUE(absl::StrContains(ReportJson(*r), "\"non_inferiority\":\"inferior\"")) << ReportJson(*r);
}

TEST(ExperimentReport, CloseArmsSayHowManyMoreOutcomesTheyNeed) {
  const std::string scrape = ArmSeries("vit", "ln", 500, 0, 0.001, 0.002) + FeedbackSeries("vit", "ln", 475, 25) +
                             ArmSeries("vit", "dyt", 500, 0, 0.001, 0.002) + FeedbackSeries("vit", "dyt", 474, 26);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "vit", "ln", {}, 0.005);
  ASSERT_TRUE(r.ok());
  const ArmComparison& c = r->comparisons[0];
  EXPECT_EQ(c.inferiority, stats::Inferiority::kInconclusive);
  EXPECT_GT(c.outcomes_still_needed, 1000);
  EXPECT_TRUE(absl::StrContains(c.quality_verdict, "more outcomes per arm")) << c.quality_verdict;
  EXPECT_FALSE(BuildExperimentReport(scrape, "", "vit", "ln", {}, 0).ok()) << "a margin of 0 is refused";
}

TEST(ExperimentReport, RewardsAreComparedWhenNoLabelsCame) {
  const std::string scrape = ArmSeries("e", "a", 100, 0, 0.001, 0.002) + FeedbackSeries("e", "a", 0, 0, 2000, 1400) +
                             ArmSeries("e", "b", 100, 0, 0.001, 0.002) + FeedbackSeries("e", "b", 0, 0, 2000, 1420);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "e", "a", {}, 0.05);
  ASSERT_TRUE(r.ok());
  const ArmComparison& c = r->comparisons[0];
  EXPECT_EQ(c.quality, "mean reward");
  EXPECT_NEAR(c.quality_difference.estimate, 0.01, 1e-12);
  EXPECT_EQ(c.inferiority, stats::Inferiority::kNonInferior) << c.quality_verdict;
}

TEST(ExperimentReport, QuantilesInterpolateLikePrometheus) {
  Histogram h;
  h.cumulative = {{0.001, 0}, {0.002, 100}, {INFINITY, 100}};
  h.count = 100;
  h.sum = 0.15;
  EXPECT_NEAR(h.Quantile(0.5), 0.0015, 1e-12);
  EXPECT_NEAR(h.Quantile(0.99), 0.00199, 1e-12);
  EXPECT_NEAR(h.Mean(), 0.0015, 1e-12);
  EXPECT_TRUE(std::isnan(Histogram{}.Quantile(0.5)));
}

TEST(ExperimentReport, ASlowerArmIsSignificantlySlower) {
  const std::string scrape = "# HELP x\n" + ArmSeries("vit", "ln", 1000, 0, 0.001, 0.002) +
                             ArmSeries("vit", "dyt", 1000, 0, 0.005, 0.01) +
                             ArmSeries("other", "ln", 5, 0, 0.001, 0.002);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "vit", "", {"ln", "dyt"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->baseline, "ln");
  ASSERT_EQ(r->arms.size(), 2u);
  EXPECT_EQ(r->arms[0].requests, 1000);  // the other experiment's ln is not counted
  EXPECT_EQ(r->arms[1].model, "m_dyt:1");
  ASSERT_EQ(r->comparisons.size(), 1u);
  EXPECT_GT(r->comparisons[0].mean_latency_s.low, 0);
  EXPECT_TRUE(absl::StrContains(r->comparisons[0].verdict, "slower")) << r->comparisons[0].verdict;
  EXPECT_TRUE(absl::StrContains(ReportText(*r), "dyt vs ln")) << ReportText(*r);
}

TEST(ExperimentReport, EqualArmsAreNotSignificantlyDifferent) {
  const std::string scrape =
      ArmSeries("vit", "ln", 500, 5, 0.001, 0.002) + ArmSeries("vit", "dyt", 480, 6, 0.001, 0.002);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "vit", "", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->baseline, "dyt");  // no order known: alphabetical
  EXPECT_FALSE(r->comparisons[0].mean_latency_s.significant());
  EXPECT_FALSE(r->comparisons[0].error_ratio.significant());
  EXPECT_TRUE(absl::StrContains(r->comparisons[0].verdict, "no significant difference"));
}

TEST(ExperimentReport, MoreErrorsAreSignificant) {
  const std::string scrape =
      ArmSeries("e", "a", 1000, 0, 0.001, 0.002) + ArmSeries("e", "b", 800, 200, 0.001, 0.002);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "e", "a", {});
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->comparisons[0].error_ratio.low, 0);
  EXPECT_TRUE(absl::StrContains(r->comparisons[0].verdict, "errors: more"));
}

TEST(ExperimentReport, AWindowSubtractsTheEarlierScrape) {
  const std::string before = ArmSeries("e", "a", 100, 0, 0.001, 0.002) + ArmSeries("e", "b", 100, 0, 0.001, 0.002);
  const std::string after = ArmSeries("e", "a", 300, 0, 0.001, 0.002) + ArmSeries("e", "b", 150, 10, 0.001, 0.002);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(after, before, "e", "a", {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->arms[0].requests, 200);
  EXPECT_EQ(r->arms[1].requests, 60);
  EXPECT_EQ(r->arms[1].errors, 10);
}

TEST(ExperimentReport, UnknownExperimentOrBaselineIsNamed) {
  const std::string scrape = ArmSeries("e", "a", 10, 0, 0.001, 0.002);
  absl::StatusOr<ExperimentReport> r = BuildExperimentReport(scrape, "", "nope", "", {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "experiment=\"nope\""));
  r = BuildExperimentReport(scrape, "", "e", "zz", {});
  EXPECT_TRUE(absl::StrContains(r.status().message(), "baseline arm 'zz'"));
}

TEST(HistogramDelta, SubtractsTheEarlierScrapeAndKeepsOnlyMatchingSeries) {
  // Arm a: 10 requests in (1, 2] ms before, 30 after (20 new);
  // arm b's series carry another model label and stay out.
  const std::string before = ArmSeries("e", "a", 10, 0, 0.001, 0.002) + ArmSeries("e", "b", 5, 0, 0.005, 0.01);
  const std::string after = ArmSeries("e", "a", 30, 0, 0.001, 0.002) + ArmSeries("e", "b", 50, 0, 0.005, 0.01);
  const Histogram h = HistogramDelta(before, after, "dytserve_request_duration_seconds", {{"model", "m_a"}});
  EXPECT_EQ(h.count, 20);
  EXPECT_DOUBLE_EQ(h.cumulative.at(0.002), 20);
  EXPECT_DOUBLE_EQ(h.cumulative.at(0.001), 0);
  EXPECT_NEAR(h.Quantile(0.99), 0.001 + 0.001 * 19.8 / 20, 1e-12);
  Histogram pooled = h;
  pooled.Add(h);
  EXPECT_EQ(pooled.count, 40);
  EXPECT_DOUBLE_EQ(pooled.Quantile(0.99), h.Quantile(0.99));
  EXPECT_EQ(HistogramDelta(before, after, "dytserve_request_duration_seconds", {{"model", "nope"}}).count, 0);
}

}  // namespace
}  // namespace dytserve::cli
