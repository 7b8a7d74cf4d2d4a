#include "server/core/feedback.h"

#include <cmath>
#include <limits>
#include <set>

#include <gtest/gtest.h>

namespace dytserve {
namespace {

Served By(const std::string& arm, int64_t top1 = 3) { return Served{"vit", arm, "vit_" + arm, "1", top1}; }

TEST(FeedbackStore, AnOutcomeTakesItsEntryOnceAndSaysWhoServedIt) {
  FakeClock clock;
  FeedbackStore store({/*capacity=*/10, absl::Minutes(10), &clock});
  store.Remember("a", By("ln"));
  store.Remember("a", By("dyt"));  // a reused id keeps its first answer
  Served served;
  EXPECT_EQ(store.Take("a", &served), FeedbackResult::kRecorded);
  EXPECT_EQ(served.arm, "ln");
  EXPECT_EQ(served.top1, 3);
  Served untouched = By("untouched");
  EXPECT_EQ(store.Take("a", &untouched), FeedbackResult::kDuplicate);
  EXPECT_EQ(untouched.arm, "untouched") << "nothing is told about an entry already taken";
  EXPECT_EQ(store.Take("never", &untouched), FeedbackResult::kUnknown);
  EXPECT_EQ(untouched.arm, "untouched");
}

TEST(FeedbackStore, OldEntriesExpireThenAreForgotten) {
  FakeClock clock;
  FeedbackStore store({10, absl::Minutes(10), &clock});
  store.Remember("old", By("ln"));
  store.Remember("older-but-taken-late", By("ln"));
  clock.Advance(absl::Minutes(11));
  Served served;
  EXPECT_EQ(store.Take("old", &served), FeedbackResult::kExpired);
  clock.Advance(absl::Minutes(10));  // now past twice the TTL: gone for good
  EXPECT_EQ(store.Take("older-but-taken-late", &served), FeedbackResult::kUnknown);
  EXPECT_EQ(store.size(), 0u);
}

TEST(FeedbackStore, CapacityBoundsMemoryOldestFirst) {
  FakeClock clock;
  FeedbackStore store({3, absl::Hours(1), &clock});
  for (const char* id : {"1", "2", "3", "4", "5"}) store.Remember(id, By("ln"));
  EXPECT_EQ(store.size(), 3u);
  Served served;
  EXPECT_EQ(store.Take("1", &served), FeedbackResult::kUnknown);
  EXPECT_EQ(store.Take("2", &served), FeedbackResult::kUnknown);
  EXPECT_EQ(store.Take("5", &served), FeedbackResult::kRecorded);
}

TEST(FeedbackStore, ZeroCapacityRemembersNothing) {
  FeedbackStore store({0, absl::Hours(1), RealClock::Get()});
  EXPECT_FALSE(store.enabled());
  store.Remember("a", By("ln"));
  Served served;
  EXPECT_EQ(store.Take("a", &served), FeedbackResult::kUnknown);
}

TEST(FeedbackStore, OutcomesOutOfRangeAreNamed) {
  Outcome reward{Outcome::Kind::kReward, 0, 1.5};
  EXPECT_NE(CheckOutcome(reward).message().find("reward"), absl::string_view::npos);
  Outcome nan{Outcome::Kind::kValue, 0, std::numeric_limits<double>::quiet_NaN()};
  EXPECT_NE(CheckOutcome(nan).message().find("value"), absl::string_view::npos);
  Outcome label{Outcome::Kind::kLabel, -1, 0};
  EXPECT_NE(CheckOutcome(label).message().find("label"), absl::string_view::npos);
  EXPECT_TRUE(CheckOutcome({Outcome::Kind::kReward, 0, 1.0}).ok());
  EXPECT_TRUE(CheckOutcome({Outcome::Kind::kValue, 0, -3.5}).ok());
}

TEST(FeedbackStore, NewIdsAreDistinct128BitHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_EQ(ids.begin()->size(), 32u);
}

}  // namespace
}  // namespace dytserve
