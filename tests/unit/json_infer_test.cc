#include "server/http/json_infer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "server/http/rest_service.h"

namespace dytserve {
namespace {

TEST(HttpCode, EveryEngineStatusHasItsHttpStatus) {
  EXPECT_EQ(HttpCode(absl::OkStatus()), 200);
  EXPECT_EQ(HttpCode(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpCode(absl::UnauthenticatedError("")), 401);
  EXPECT_EQ(HttpCode(absl::PermissionDeniedError("")), 403);
  EXPECT_EQ(HttpCode(absl::NotFoundError("")), 404);
  EXPECT_EQ(HttpCode(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(HttpCode(absl::UnavailableError("")), 503);
  EXPECT_EQ(HttpCode(absl::DeadlineExceededError("")), 504);
  EXPECT_EQ(HttpCode(absl::InternalError("")), 500);
}

TEST(JsonInfer, NestedDataFlattensRowMajorIntoRawBytes) {
  absl::StatusOr<JsonInferRequest> r = ParseInferRequest(
      R"({"id":"a","parameters":{"timeout_us":5,"routing_key":"k","flag":true},
          "inputs":[{"name":"x","datatype":"INT16","shape":[2,2],"data":[[1,-2],[3,4]]}]})",
      "", "m", "2");
  ASSERT_TRUE(r.ok()) << r.status();
  const inference::ModelInferRequest& req = r->request;
  EXPECT_EQ(req.model_name(), "m");
  EXPECT_EQ(req.model_version(), "2");
  EXPECT_EQ(req.id(), "a");
  EXPECT_EQ(req.parameters().at("timeout_us").int64_param(), 5);
  EXPECT_EQ(req.parameters().at("routing_key").string_param(), "k");
  EXPECT_TRUE(req.parameters().at("flag").bool_param());
  ASSERT_EQ(req.raw_input_contents_size(), 1);
  int16_t v[4];
  ASSERT_EQ(req.raw_input_contents(0).size(), sizeof(v));
  std::memcpy(v, req.raw_input_contents(0).data(), sizeof(v));
  EXPECT_EQ(v[1], -2);
  EXPECT_EQ(v[3], 4);
}

TEST(JsonInfer, IntegersOutOfTheirTypeAreRefusedByName) {
  absl::StatusOr<JsonInferRequest> r = ParseInferRequest(
      R"({"inputs":[{"name":"x","datatype":"UINT8","shape":[2],"data":[1,256]}]})", "", "m", "");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("inputs[0] 'x'.data"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("UINT8"), std::string::npos) << r.status();
}

TEST(JsonInfer, BinaryOutputsFollowTheJsonAndHalfFloatsReadAsFloats) {
  inference::ModelInferResponse resp;
  resp.set_model_name("m");
  auto* o = resp.add_outputs();
  o->set_name("h");
  o->set_datatype("FP16");
  o->add_shape(1);
  const uint16_t one_and_half = 0x3e00;  // 1.5 in IEEE half
  resp.add_raw_output_contents(std::string(reinterpret_cast<const char*>(&one_and_half), 2));
  JsonInferRequest asked;
  JsonInferResponse json = RenderInferResponse(resp, asked);
  EXPECT_FALSE(json.binary);
  EXPECT_NE(json.body.find(R"("data":[1.5])"), std::string::npos) << json.body;
  asked.binary_outputs.insert("h");
  JsonInferResponse binary = RenderInferResponse(resp, asked);
  ASSERT_TRUE(binary.binary);
  EXPECT_EQ(binary.body.size(), binary.json_length + 2);
  EXPECT_NE(binary.body.substr(0, binary.json_length).find(R"("binary_data_size":2)"), std::string::npos);
}

}  // namespace
}  // namespace dytserve
