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

}  // namespace
}  // namespace dytserve
