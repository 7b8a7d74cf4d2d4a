#include "server/core/model_config.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

constexpr char kGood[] = R"pb(
  max_batch_size: 8
  input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }
  output { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] }
)pb";

absl::Status Build(const std::string& text, const std::string& dir = "m") {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(text, "m/config.pbtxt");
  if (!config.ok()) return config.status();
  return BuildModelSpec(*config, dir).status();
}

TEST(ModelConfig, PlatformNamesAFormatAndTritonsTorchScriptNameIsAccepted) {
  for (const auto& [written, kept] : std::vector<std::pair<std::string, std::string>>{
           {"torchscript", "torchscript"}, {"pytorch_libtorch", "torchscript"}, {"torch_aoti", "torch_aoti"}}) {
    absl::StatusOr<v1::ModelConfig> config =
        ParseModelConfig(absl::StrCat("platform: \"", written, "\"\n", kGood), "m/config.pbtxt");
    ASSERT_TRUE(config.ok()) << config.status();
    absl::StatusOr<ModelSpec> spec = BuildModelSpec(*config, "m");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->config.platform(), kept) << written;
  }
}

TEST(ModelConfig, DefaultsApplied) {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(kGood, "m/config.pbtxt");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<ModelSpec> spec = BuildModelSpec(*config, "m");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "m");
  EXPECT_EQ(spec->instance_count, 1);
  EXPECT_EQ(spec->device, "cpu");
  EXPECT_EQ(spec->config.platform(), "");  // each version's format is found from its file
  EXPECT_EQ(spec->config.version_policy().latest().num_versions(), 1u);
  EXPECT_EQ(spec->WireShape(spec->inputs[0]), (std::vector<int64_t>{-1, 4}));
}

TEST(ModelConfig, UnknownFieldNamesLineAndField) {
  absl::Status s = Build("max_batch_size: 1\nbogus_field: 3\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("m/config.pbtxt: line 2"), std::string::npos) << s;
  EXPECT_NE(s.message().find("bogus_field"), std::string::npos) << s;
}

struct ErrorCase {
  const char* label;
  std::string text;
  const char* field;
};
// Test logs name the case, not its bytes.
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.label; }


class ConfigError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigError, NamesModelAndField) {
  absl::Status s = Build(GetParam().text);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("model 'm'"), std::string::npos) << s;
  EXPECT_NE(s.message().find(GetParam().field), std::string::npos) << s;
}

const std::string kIo = R"pb(input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }
                             output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb";

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigError,
    ::testing::Values(
        ErrorCase{"name_mismatch", "name: \"other\"\n" + kIo, "does not match the directory name"},
        ErrorCase{"platform", "platform: \"onnx\"\n" + kIo, "platform"},
        ErrorCase{"negative_batch", "max_batch_size: -1\n" + kIo, "max_batch_size"},
        ErrorCase{"no_inputs", R"pb(output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb", "input: at least one"},
        ErrorCase{"no_outputs", R"pb(input { name: "x" data_type: TYPE_FP32 dims: [ 3 ] })pb", "output: at least one"},
        ErrorCase{"empty_name", R"pb(input { data_type: TYPE_FP32 dims: [ 3 ] }
                                     output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb",
                  "input[0]: name is empty"},
        ErrorCase{"duplicate", R"pb(input { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }
                                    input { name: "x" data_type: TYPE_FP32 dims: [ 3 ] }
                                    output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb",
                  "input[1]: duplicate name 'x'"},
        ErrorCase{"no_type", R"pb(input { name: "x" dims: [ 3 ] }
                                  output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb",
                  "input[0] 'x': data_type TYPE_INVALID"},
        ErrorCase{"zero_dim", R"pb(input { name: "x" data_type: TYPE_FP32 dims: [ 0 ] }
                                   output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] })pb",
                  "input[0] 'x'.dims: dimension 0"},
        ErrorCase{"preferred", "max_batch_size: 4\ndynamic_batching { preferred_batch_sizes: 8 }\n" + kIo,
                  "dynamic_batching.preferred_batch_sizes"},
        ErrorCase{"device", "instance_group { device: \"tpu\" }\n" + kIo, "instance_group.device"},
        ErrorCase{"versions", "version_policy { specific { versions: -3 } }\n" + kIo,
                  "version_policy.specific.versions"},
        ErrorCase{"mask_of_unknown",
                  R"pb(max_batch_size: 2
                       input { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] }
                       input { name: "mask" data_type: TYPE_INT64 dims: [ -1 ] mask_of: "nope" }
                       output { name: "y" data_type: TYPE_FP32 dims: [ -1 ] })pb",
                  "input[1] 'mask'.mask_of: 'nope' is not another ordinary input"},
        ErrorCase{"mask_of_fixed",
                  R"pb(max_batch_size: 2
                       input { name: "ids" data_type: TYPE_INT64 dims: [ 4 ] }
                       input { name: "mask" data_type: TYPE_INT64 dims: [ -1 ] mask_of: "ids" }
                       output { name: "y" data_type: TYPE_FP32 dims: [ -1 ] })pb",
                  "has no variable (-1) dimension to mask"},
        ErrorCase{"follows_fixed_dim",
                  R"pb(max_batch_size: 2
                       input { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] }
                       output {
                         name: "y"
                         data_type: TYPE_FP32
                         dims: [ -1, 8 ]
                         follows { input: "ids" input_dim: 0 output_dim: 1 }
                       })pb",
                  "output[0] 'y'.follows: output_dim 1 is not a variable dim"},
        ErrorCase{"ragged_unbatched", "dynamic_batching { ragged_batching: true }\n" + kIo,
                  "dynamic_batching.ragged_batching"},
        ErrorCase{"latest_zero", "version_policy { latest { num_versions: 0 } }\n" + kIo,
                  "version_policy.latest.num_versions"}),
    [](const auto& info) { return std::string(info.param.label); });

// A Triton config for a PyTorch model reads as the dytserve config it means.
TEST(TritonConfig, ReadsAsTheDytserveConfigItMeans) {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(R"pb(
    name: "m"
    backend: "pytorch"
    max_batch_size: 4
    input [ { name: "INPUT__0" data_type: TYPE_INT64 dims: [ -1 ] } ]
    output [ { name: "OUTPUT__0" data_type: TYPE_FP16 dims: [ -1, 8 ] } ]
    dynamic_batching {
      preferred_batch_size: [ 2, 4 ]
      max_queue_delay_microseconds: 300
      default_queue_policy { max_queue_size: 9 default_timeout_microseconds: 5000 }
    }
    instance_group [ { count: 3 kind: KIND_GPU gpus: [ 1 ] } ]
    version_policy { specific { versions: [ 2, 5 ] } }
    parameters { key: "note" value { string_value: "hello" } }
  )pb", "m/config.pbtxt");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->platform(), "");  // backend pytorch: the format comes from the file
  EXPECT_EQ(config->input(0).data_type(), v1::TYPE_INT64);
  EXPECT_EQ(config->output(0).data_type(), v1::TYPE_FP16);
  EXPECT_EQ(config->dynamic_batching().max_queue_delay_us(), 300u);
  EXPECT_EQ(config->dynamic_batching().preferred_batch_sizes_size(), 2);
  EXPECT_EQ(config->dynamic_batching().max_queue_size(), 9u);
  EXPECT_EQ(config->dynamic_batching().default_timeout_us(), 5000u);
  EXPECT_EQ(config->instance_group().count(), 3u);
  EXPECT_EQ(config->instance_group().device(), "cuda:1");
  EXPECT_EQ(config->version_policy().specific().versions_size(), 2);
  EXPECT_EQ(config->parameters().at("note"), "hello");
  EXPECT_TRUE(BuildModelSpec(*config, "m").ok());
}

TEST(TritonConfig, WhatCannotBeServedIsNamedAllAtOnce) {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(R"pb(
    platform: "onnxruntime_onnx"
    max_batch_size: 4
    input [ { name: "a" data_type: TYPE_STRING dims: [ 1 ] format: FORMAT_NCHW } ]
    output [ { name: "b" data_type: TYPE_UINT32 dims: [ 1 ] } ]
    instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] }, { kind: KIND_CPU } ]
    dynamic_batching { preserve_ordering: true default_queue_policy { timeout_action: DELAY } }
    response_cache { enable: true }
  )pb", "m/config.pbtxt");
  ASSERT_FALSE(config.ok());
  const std::string message(config.status().message());
  for (const char* named : {"m/config.pbtxt", "input[0].format", "dynamic_batching.preserve_ordering",
                            "dynamic_batching.default_queue_policy.timeout_action", "response_cache",
                            "platform: \"onnxruntime_onnx\"", "input[0].data_type: TYPE_STRING",
                            "output[0].data_type: TYPE_UINT32", "instance_group: 2 groups"}) {
    EXPECT_NE(message.find(named), std::string::npos) << named << " not in: " << message;
  }
}

TEST(TritonConfig, ATypoIsReportedAgainstBothSchemas) {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(absl::StrCat(kGood, "max_batch_sise: 3\n"), "m/config.pbtxt");
  ASSERT_FALSE(config.ok());
  const std::string message(config.status().message());
  EXPECT_NE(message.find("max_batch_sise"), std::string::npos) << message;
  EXPECT_NE(message.find("as dytserve's config"), std::string::npos) << message;
}

}  // namespace
}  // namespace dytserve
