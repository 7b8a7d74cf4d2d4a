#include <gtest/gtest.h>

#include "dytserve/inputs.h"
#include "dytserve/tensor.h"

namespace dytserve {
namespace {

TEST(ClientTensor, TypedRoundTrip) {
  Tensor t = Tensor::From<int64_t>("ids", {1, 3}, {7, -1, 1LL << 40});
  EXPECT_EQ(t.datatype, "INT64");
  EXPECT_EQ(t.data.size(), 24u);
  absl::StatusOr<std::vector<int64_t>> back = t.As<int64_t>();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, (std::vector<int64_t>{7, -1, 1LL << 40}));
  EXPECT_FALSE(t.As<float>().ok()) << "datatype mismatch is an error";
  Tensor b = Tensor::From<bool>("mask", {2}, {true, false});
  EXPECT_EQ(*b.As<bool>(), (std::vector<bool>{true, false}));
}

TEST(ClientTensor, HalfPrecisionWidens) {
  // 1.0 and -2.0 in IEEE half; 1.0 and -2.0 in bfloat16.
  Tensor h{"h", "FP16", {2}, std::string("\x00\x3c\x00\xc0", 4)};
  EXPECT_EQ(*h.AsDoubles(), (std::vector<double>{1.0, -2.0}));
  Tensor b{"b", "BF16", {2}, std::string("\x80\x3f\x00\xc0", 4)};
  EXPECT_EQ(*b.AsDoubles(), (std::vector<double>{1.0, -2.0}));
}

TEST(Inputs, GeneratedFromMetadata) {
  ModelMetadata m;
  m.inputs = {{"input_ids", "INT64", {-1, -1}}, {"pixels", "FP32", {-1, 2}}};
  GenerateOptions options;
  options.rows = 3;
  options.seq_len = 5;
  options.int_high = 10;
  std::mt19937_64 rng(1);
  absl::StatusOr<std::vector<Tensor>> inputs = GenerateInputs(m, options, &rng);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  EXPECT_EQ((*inputs)[0].shape, (std::vector<int64_t>{3, 5}));
  const std::vector<int64_t> ids = *(*inputs)[0].As<int64_t>();
  for (int64_t v : ids) {
    EXPECT_GE(v, 0);
    EXPECT_LT(v, 10);
  }
  EXPECT_EQ((*inputs)[1].shape, (std::vector<int64_t>{3, 2}));
}

TEST(Inputs, JsonParsesAndErrorsNameTheInput) {
  absl::StatusOr<std::vector<Tensor>> ok = ParseInputsJson(
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[[0.5,2]]}]})", "f.json");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*(*ok)[0].As<float>(), (std::vector<float>{0.5f, 2.0f}));

  absl::StatusOr<std::vector<Tensor>> count = ParseInputsJson(
      R"({"inputs":[{"name":"x","datatype":"FP32","shape":[1,3],"data":[1,2]}]})", "f.json");
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.status().message().find("f.json: inputs[0] 'x': data has 2 values"), std::string::npos)
      << count.status();
  absl::StatusOr<std::vector<Tensor>> range = ParseInputsJson(
      R"({"inputs":[{"name":"x","datatype":"INT8","shape":[1],"data":[300]}]})", "f.json");
  EXPECT_FALSE(range.ok());
  EXPECT_FALSE(ParseInputsJson("{not json", "f.json").ok());
}

}  // namespace
}  // namespace dytserve
