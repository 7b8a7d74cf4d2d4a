// dytserve-cli against the real server: health, metadata and infer print
// JSON and exit 0; errors go to stderr with a non-zero exit.
#include <signal.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

using testing::ServerProcess;

using CliRun = testing::CommandResult;

CliRun Cli(const std::string& target, const std::string& args) {
  return testing::RunCommand(absl::StrCat(DYTSERVE_CLI_BIN, " --target=", target, " ", args));
}

class CliTest : public testing::SuiteServerTest<CliTest> {};

TEST_F(CliTest, Health) {
  const CliRun server = Cli(server_->grpc_address(), "health");
  EXPECT_EQ(server.exit_code, 0) << server.output;
  EXPECT_EQ(server.output, "{\"service\":\"\",\"status\":\"SERVING\",\"live\":true,\"ready\":true}\n");
  const CliRun model = Cli(server_->grpc_address(), "health vit_dyt");
  EXPECT_EQ(model.exit_code, 0) << model.output;
  EXPECT_NE(model.output.find("\"status\":\"SERVING\""), std::string::npos) << model.output;
  const CliRun unknown = Cli(server_->grpc_address(), "health nope");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("NOT_FOUND"), std::string::npos) << unknown.output;
}

TEST_F(CliTest, Metadata) {
  const CliRun run = Cli(server_->grpc_address(), "metadata llama_dyt");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("\"inputs\":[{\"name\":\"input_ids\",\"datatype\":\"INT64\",\"shape\":[-1,-1]}]"),
            std::string::npos)
      << run.output;
}

TEST_F(CliTest, InferPrintsTopKForTheClassifier) {
  const CliRun run = Cli(server_->grpc_address(), "infer vit_dyt --top_k 3");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(absl::StartsWith(run.output, "{\"model\":\"vit_dyt\",\"version\":\"1\"")) << run.output;
  EXPECT_NE(run.output.find("\"shape\":[1,10],\"top_k\":[[{\"index\":"), std::string::npos) << run.output;
}

TEST_F(CliTest, InferDecoderValuesAndJsonInputs) {
  const CliRun values = Cli(server_->grpc_address(), "infer llama_rms --seq_len 4 --int_high 256 --top_k 0 --max_values 3");
  EXPECT_EQ(values.exit_code, 0) << values.output;
  EXPECT_NE(values.output.find("\"shape\":[1,4,256],\"values\":["), std::string::npos) << values.output;
  EXPECT_NE(values.output.find("\"truncated_from\":1024"), std::string::npos) << values.output;

  const std::string path = ::testing::TempDir() + "/cli-inputs.json";
  std::ofstream(path) << R"({"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,3],"data":[[5,6,7]]}]})";
  const CliRun json = Cli(server_->grpc_address(), absl::StrCat("infer llama_rms --top_k 0 --max_values 2 --input_json ", path));
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_NE(json.output.find("\"shape\":[1,3,256]"), std::string::npos) << json.output;

  std::ofstream(path) << R"({"inputs":[{"name":"input_ids","datatype":"INT64","shape":[1,3],"data":[5,6]}]})";
  const CliRun bad = Cli(server_->grpc_address(), absl::StrCat("infer llama_rms --input_json ", path));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("data has 2 values, the shape needs 3"), std::string::npos) << bad.output;
}

TEST_F(CliTest, UnknownCommandAndModelAreClearErrors) {
  const CliRun command = Cli(server_->grpc_address(), "frobnicate");
  EXPECT_NE(command.exit_code, 0);
  EXPECT_NE(command.output.find("unknown command 'frobnicate'"), std::string::npos) << command.output;
  const CliRun model = Cli(server_->grpc_address(), "infer nope");
  EXPECT_NE(model.exit_code, 0);
  EXPECT_NE(model.output.find("NOT_FOUND"), std::string::npos) << model.output;
}

}  // namespace
}  // namespace dytserve
