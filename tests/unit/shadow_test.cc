#include "server/core/shadow.h"

#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace dytserve {
namespace {

WireOutput Floats(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  WireOutput out{name, "FP32", std::move(shape), std::string(values.size() * 4, '\0')};
  std::memcpy(out.bytes.data(), values.data(), out.bytes.size());
  return out;
}

TEST(Shadow, ComparesMaxDifferenceAndTop1PerRow) {
  const std::vector<WireOutput> serving = {Floats("logits", {2, 3}, {0.1f, 0.9f, 0.0f, 0.5f, 0.2f, 0.1f})};
  const std::vector<WireOutput> shadow = {Floats("logits", {2, 3}, {0.1f, 0.8f, 0.0f, 0.1f, 0.7f, 0.1f})};
  std::vector<OutputComparison> result = CompareOutputs(serving, shadow);
  ASSERT_EQ(result.size(), 1u);
  EXPECT_TRUE(result[0].comparable);
  EXPECT_NEAR(result[0].max_abs_difference, 0.5, 1e-6);
  EXPECT_EQ(result[0].top1_compared, 2);
  EXPECT_EQ(result[0].top1_agreeing, 1);  // row 0 agrees (1), row 1 does not (0 vs 1)
}

TEST(Shadow, SequenceOutputsCompareEveryPosition) {
  // [1, 2 positions, 2 classes]
  std::vector<OutputComparison> r = CompareOutputs({Floats("logits", {1, 2, 2}, {1, 0, 0, 1})},
                                                   {Floats("logits", {1, 2, 2}, {1, 0, 1, 0})});
  EXPECT_EQ(r[0].top1_compared, 2);
  EXPECT_EQ(r[0].top1_agreeing, 1);
}

TEST(Shadow, IdenticalOutputsDifferByZero) {
  const std::vector<WireOutput> a = {Floats("y", {3}, {1, 2, 3})};
  std::vector<OutputComparison> r = CompareOutputs(a, a);
  EXPECT_TRUE(r[0].comparable);
  EXPECT_EQ(r[0].max_abs_difference, 0);
  EXPECT_EQ(r[0].top1_compared, 0);  // rank 1: no classes to arg-max over
}

TEST(Shadow, MissingOrDifferentOutputsAreNotComparable) {
  const std::vector<WireOutput> serving = {Floats("a", {2}, {1, 2}), Floats("b", {2}, {1, 2}),
                                           Floats("c", {2}, {1, 2})};
  WireOutput other_type = Floats("b", {2}, {1, 2});
  other_type.datatype = "INT32";
  const std::vector<WireOutput> shadow = {other_type, Floats("c", {1, 2}, {1, 2})};
  std::vector<OutputComparison> r = CompareOutputs(serving, shadow);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_FALSE(r[0].comparable);  // missing
  EXPECT_FALSE(r[1].comparable);  // datatype
  EXPECT_FALSE(r[2].comparable);  // shape
}

TEST(Shadow, NanOnOneSideIsTheLargestDifference) {
  std::vector<OutputComparison> r =
      CompareOutputs({Floats("y", {2}, {1, 2})}, {Floats("y", {2}, {1, std::nanf("")})});
  EXPECT_TRUE(std::isinf(r[0].max_abs_difference));
}

}  // namespace
}  // namespace dytserve
