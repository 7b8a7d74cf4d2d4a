#include "server/core/tensor_codec.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "server/core/model_config.h"

namespace dytserve {
namespace {

using inference::ModelInferRequest;

ModelSpec Spec(v1::DataType type, std::vector<int64_t> dims, int max_batch = 4) {
  v1::ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(max_batch);
  auto* in = config.add_input();
  in->set_name("x");
  in->set_data_type(type);
  for (int64_t d : dims) in->add_dims(d);
  auto* out = config.add_output();
  out->set_name("y");
  out->set_data_type(v1::TYPE_FP32);
  out->add_dims(1);
  absl::StatusOr<ModelSpec> spec = BuildModelSpec(config, "m");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

ModelInferRequest RawRequest(const std::string& datatype, std::vector<int64_t> shape, std::string bytes) {
  ModelInferRequest req;
  auto* in = req.add_inputs();
  in->set_name("x");
  in->set_datatype(datatype);
  for (int64_t d : shape) in->add_shape(d);
  req.add_raw_input_contents(std::move(bytes));
  return req;
}

struct TypeCase {
  DataType type;
  v1::DataType config;
  at::ScalarType scalar;
};
// Test logs name the case, not its bytes.
void PrintTo(const TypeCase& c, std::ostream* os) { *os << DataTypeName(c.type); }


class RoundTrip : public ::testing::TestWithParam<TypeCase> {};

TEST_P(RoundTrip, RawBytesThroughDecodeAndEncode) {
  const TypeCase& c = GetParam();
  at::Tensor original = (at::arange(12, at::kDouble) * 1.5 - 7).to(c.scalar).reshape({2, 3, 2});
  if (c.scalar == at::kBool) original = at::arange(12).remainder(3).eq(0).reshape({2, 3, 2});
  const std::string bytes = ToRawBytes(original);
  ASSERT_EQ(bytes.size(), 12 * DataTypeSize(c.type));

  const ModelSpec spec = Spec(c.config, {3, 2});
  absl::StatusOr<DecodedRequest> decoded =
      DecodeRequest(RawRequest(std::string(DataTypeName(c.type)), {2, 3, 2}, bytes), spec);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->rows, 2);
  ASSERT_EQ(decoded->inputs.size(), 1u);
  EXPECT_EQ(decoded->inputs[0].scalar_type(), c.scalar);
  EXPECT_TRUE(at::equal(decoded->inputs[0], original));

  inference::ModelInferResponse response;
  ASSERT_TRUE(AppendRawOutput("y", decoded->inputs[0], &response).ok());
  EXPECT_EQ(response.outputs(0).datatype(), DataTypeName(c.type));
  EXPECT_EQ(response.raw_output_contents(0), bytes);
  EXPECT_EQ(std::vector<int64_t>(response.outputs(0).shape().begin(), response.outputs(0).shape().end()),
            (std::vector<int64_t>{2, 3, 2}));
}

INSTANTIATE_TEST_SUITE_P(
    EveryDatatype, RoundTrip,
    ::testing::Values(TypeCase{DataType::kBool, v1::TYPE_BOOL, at::kBool},
                      TypeCase{DataType::kUint8, v1::TYPE_UINT8, at::kByte},
                      TypeCase{DataType::kInt8, v1::TYPE_INT8, at::kChar},
                      TypeCase{DataType::kInt16, v1::TYPE_INT16, at::kShort},
                      TypeCase{DataType::kInt32, v1::TYPE_INT32, at::kInt},
                      TypeCase{DataType::kInt64, v1::TYPE_INT64, at::kLong},
                      TypeCase{DataType::kFp16, v1::TYPE_FP16, at::kHalf},
                      TypeCase{DataType::kBf16, v1::TYPE_BF16, at::kBFloat16},
                      TypeCase{DataType::kFp32, v1::TYPE_FP32, at::kFloat},
                      TypeCase{DataType::kFp64, v1::TYPE_FP64, at::kDouble}),
    [](const auto& info) { return std::string(DataTypeName(info.param.type)); });

TEST(TypedContents, EveryTypedDatatypeDecodes) {
  struct Case {
    v1::DataType config;
    const char* name;
    std::function<void(inference::InferTensorContents*)> fill;
    at::Tensor expected;
  };
  const std::vector<Case> cases = {
      {v1::TYPE_BOOL, "BOOL", [](auto* c) { for (bool b : {true, false}) c->add_bool_contents(b); },
       at::tensor({1, 0}).to(at::kBool)},
      {v1::TYPE_UINT8, "UINT8", [](auto* c) { for (int v : {0, 255}) c->add_uint_contents(v); },
       at::tensor({0, 255}, at::kByte)},
      {v1::TYPE_INT8, "INT8", [](auto* c) { for (int v : {-128, 127}) c->add_int_contents(v); },
       at::tensor({-128, 127}, at::kChar)},
      {v1::TYPE_INT16, "INT16", [](auto* c) { for (int v : {-300, 300}) c->add_int_contents(v); },
       at::tensor({-300, 300}, at::kShort)},
      {v1::TYPE_INT32, "INT32", [](auto* c) { for (int v : {-70000, 70000}) c->add_int_contents(v); },
       at::tensor({-70000, 70000}, at::kInt)},
      {v1::TYPE_INT64, "INT64", [](auto* c) { for (int64_t v : {-(int64_t{1} << 40), int64_t{5}}) c->add_int64_contents(v); },
       at::tensor({-(int64_t{1} << 40), int64_t{5}}, at::kLong)},
      {v1::TYPE_FP32, "FP32", [](auto* c) { for (float v : {1.5f, -2.25f}) c->add_fp32_contents(v); },
       at::tensor({1.5f, -2.25f})},
      {v1::TYPE_FP64, "FP64", [](auto* c) { for (double v : {1e-300, 3.0}) c->add_fp64_contents(v); },
       at::tensor({1e-300, 3.0}, at::kDouble)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ModelInferRequest req;
    auto* in = req.add_inputs();
    in->set_name("x");
    in->set_datatype(c.name);
    in->add_shape(1);
    in->add_shape(2);
    c.fill(in->mutable_contents());
    absl::StatusOr<DecodedRequest> decoded = DecodeRequest(req, Spec(c.config, {2}));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(at::equal(decoded->inputs[0], c.expected.reshape({1, 2})));
  }
}

// Each malformed request is INVALID_ARGUMENT with a message naming the problem.
struct BadCase {
  const char* label;
  std::function<void(ModelInferRequest*)> mutate;
  const char* message_part;
};
// Test logs name the case, not its bytes.
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.label; }


class BadRequest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadRequest, IsInvalidArgumentNamingTheProblem) {
  const ModelSpec spec = Spec(v1::TYPE_FP32, {3});
  ModelInferRequest req = RawRequest("FP32", {2, 3}, std::string(24, '\0'));
  GetParam().mutate(&req);
  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(req, spec);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find(GetParam().message_part), std::string::npos) << decoded.status();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadRequest,
    ::testing::Values(
        BadCase{"missing", [](auto* r) { r->clear_inputs(); r->clear_raw_input_contents(); }, "'x': is missing"},
        BadCase{"extra", [](auto* r) { r->add_inputs()->set_name("z"); r->add_raw_input_contents(""); },
                "unexpected input 'z'"},
        BadCase{"duplicate", [](auto* r) { *r->add_inputs() = r->inputs(0); r->add_raw_input_contents(r->raw_input_contents(0)); },
                "given more than once"},
        BadCase{"wrong_type", [](auto* r) { r->mutable_inputs(0)->set_datatype("FP64"); }, "does not match the model's FP32"},
        BadCase{"unknown_type", [](auto* r) { r->mutable_inputs(0)->set_datatype("BYTES"); }, "unsupported datatype 'BYTES'"},
        BadCase{"wrong_rank", [](auto* r) { r->mutable_inputs(0)->add_shape(1); }, "has rank 3"},
        BadCase{"wrong_dim", [](auto* r) { r->mutable_inputs(0)->set_shape(1, 4); }, "at dimension 1"},
        BadCase{"negative_dim", [](auto* r) { r->mutable_inputs(0)->set_shape(0, -2); }, "negative dimension"},
        BadCase{"overflow", [](auto* r) { r->mutable_inputs(0)->set_shape(0, int64_t{1} << 62); }, "too many elements"},
        BadCase{"raw_size", [](auto* r) { r->mutable_raw_input_contents(0)->resize(20); }, "raw contents have 20 bytes"},
        BadCase{"raw_count", [](auto* r) { r->add_raw_input_contents(""); }, "raw_input_contents has 2 entries"},
        BadCase{"mixed", [](auto* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); }, "one or the other"},
        BadCase{"typed_kind", [](auto* r) { r->clear_raw_input_contents(); for (int i = 0; i < 6; ++i) r->mutable_inputs(0)->mutable_contents()->add_int_contents(1); },
                "wrong kind"},
        BadCase{"typed_count", [](auto* r) { r->clear_raw_input_contents(); r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
                "has 1 values, the shape needs 6"},
        BadCase{"batch_too_big", [](auto* r) { r->mutable_inputs(0)->set_shape(0, 5); r->mutable_raw_input_contents(0)->resize(60); },
                "exceeds max_batch_size 4"},
        BadCase{"zero_batch", [](auto* r) { r->mutable_inputs(0)->set_shape(0, 0); r->mutable_raw_input_contents(0)->clear(); },
                "batch dimension is 0"},
        BadCase{"unknown_output", [](auto* r) { r->add_outputs()->set_name("nope"); }, "requested output 'nope'"},
        BadCase{"duplicate_output", [](auto* r) { r->add_outputs()->set_name("y"); r->add_outputs()->set_name("y"); },
                "requested more than once"}),
    [](const auto& info) { return std::string(info.param.label); });

TEST(GeneratedInputs, MaskIsNotExpectedAndRefusedWhenSent) {
  v1::ModelConfig config;
  config.set_max_batch_size(4);
  auto* ids = config.add_input();
  ids->set_name("ids");
  ids->set_data_type(v1::TYPE_INT64);
  ids->add_dims(-1);
  auto* mask = config.add_input();
  mask->set_name("mask");
  mask->set_data_type(v1::TYPE_INT64);
  mask->add_dims(-1);
  mask->set_mask_of("ids");
  auto* out = config.add_output();
  out->set_name("y");
  out->set_data_type(v1::TYPE_FP32);
  out->add_dims(-1);
  absl::StatusOr<ModelSpec> spec = BuildModelSpec(config, "m");
  ASSERT_TRUE(spec.ok()) << spec.status();

  ModelInferRequest req;
  auto* in = req.add_inputs();
  in->set_name("ids");
  in->set_datatype("INT64");
  in->add_shape(1);
  in->add_shape(3);
  req.add_raw_input_contents(std::string(24, '\0'));
  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(req, *spec);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_FALSE(decoded->inputs[1].defined()) << "the mask is built with the batch";

  *req.add_inputs() = req.inputs(0);
  req.mutable_inputs(1)->set_name("mask");
  req.add_raw_input_contents(req.raw_input_contents(0));
  decoded = DecodeRequest(req, *spec);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("generated by the server"), std::string::npos) << decoded.status();
}

TEST(TypedContents, Fp16CannotBeTyped) {
  ModelInferRequest req;
  auto* in = req.add_inputs();
  in->set_name("x");
  in->set_datatype("FP16");
  in->add_shape(1);
  in->add_shape(1);
  in->mutable_contents()->add_fp32_contents(1);
  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(req, Spec(v1::TYPE_FP16, {1}));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("raw_input_contents"), std::string::npos);
}

TEST(RawContents, BoolBytesOtherThanZeroOrOneAreRejected) {
  const ModelSpec spec = Spec(v1::TYPE_BOOL, {3});
  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(RawRequest("BOOL", {1, 3}, std::string("\1\0\1", 3)), spec);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  decoded = DecodeRequest(RawRequest("BOOL", {1, 3}, std::string("\1\2\1", 3)), spec);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("input 'x': raw BOOL contents byte 1 is 2"), std::string::npos)
      << decoded.status();
}

TEST(TypedContents, OutOfRangeValueIsRejected) {
  ModelInferRequest req;
  auto* in = req.add_inputs();
  in->set_name("x");
  in->set_datatype("INT8");
  in->add_shape(1);
  in->add_shape(1);
  in->mutable_contents()->add_int_contents(300);
  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(req, Spec(v1::TYPE_INT8, {1}));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("out of range"), std::string::npos);
}

}  // namespace
}  // namespace dytserve
