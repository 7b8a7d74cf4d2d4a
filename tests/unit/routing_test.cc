#include "server/core/routing.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

std::vector<WeightedArm> Arms(const std::vector<uint32_t>& weights) {
  std::vector<WeightedArm> arms;
  for (size_t i = 0; i < weights.size(); ++i) arms.push_back({weights[i], StableHash(absl::StrCat("arm", i))});
  return arms;
}

TEST(Routing, StableHashIsAFixedFunction) {
  // Replicas and restarts must agree on every key's arm: no per-process seed.
  EXPECT_EQ(StableHash("user-42"), StableHash(std::string("user-") + "42"));
  EXPECT_NE(StableHash("user-42"), StableHash("user-43"));
  // Golden values from an independent (Python) FNV-1a + splitmix64 finalizer:
  // changing them re-routes every sticky key in production.
  EXPECT_EQ(StableHash(""), 0xf52a15e9a9b5e89bULL);
  EXPECT_EQ(StableHash("user-42"), 0x7a1596f0e94b5793ULL);
}

TEST(Routing, DrawsCoverTheWeightsExactly) {
  const std::vector<WeightedArm> arms = Arms({70, 0, 30});
  std::vector<int> counts(3);
  for (uint64_t draw = 0; draw < 100; ++draw) ++counts[PickByDraw(arms, draw)];
  EXPECT_EQ(counts, (std::vector<int>{70, 0, 30}));
}

TEST(Routing, KeysSplitByWeightAndStay) {
  const std::vector<WeightedArm> arms = Arms({70, 30});
  int first = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string key = absl::StrCat("key-", i);
    const size_t arm = PickByKey(arms, key);
    ASSERT_EQ(arm, PickByKey(arms, key));
    first += arm == 0;
  }
  EXPECT_NEAR(first / 10000.0, 0.70, 0.02);
}

TEST(Routing, AWeightChangeMovesOnlyTheKeysItMust) {
  const std::vector<WeightedArm> before = Arms({50, 50});
  const std::vector<WeightedArm> after = Arms({60, 40});
  int moved = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string key = absl::StrCat("customer-", i);
    const size_t a = PickByKey(before, key), b = PickByKey(after, key);
    if (a == b) continue;
    ++moved;
    EXPECT_EQ(a, 1u) << "arm 0 grew, so no key may leave it";
  }
  // 10% must move (50 -> 60); rendezvous hashing moves about that, no more.
  EXPECT_GE(moved, 900);
  EXPECT_LE(moved, 1100);
}

TEST(Routing, AddingAnArmTakesKeysFromEveryOtherAndNothingElseMoves) {
  const std::vector<WeightedArm> two = Arms({50, 50});
  const std::vector<WeightedArm> three = Arms({50, 50, 25});
  int moved = 0;
  for (int i = 0; i < 10000; ++i) {
    const std::string key = absl::StrCat("k", i);
    const size_t a = PickByKey(two, key), b = PickByKey(three, key);
    if (a == b) continue;
    ++moved;
    EXPECT_EQ(b, 2u) << "a key may only move to the new arm";
  }
  EXPECT_NEAR(moved / 10000.0, 0.20, 0.02);
}

TEST(Routing, ParkedArmsGetNothing) {
  const std::vector<WeightedArm> arms = Arms({0, 5, 0});
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(PickByKey(arms, absl::StrCat(i)), 1u);
}

}  // namespace
}  // namespace dytserve
