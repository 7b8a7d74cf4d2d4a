// One process holding gRPC, our generated messages and the wheel's LibTorch:
// the Protobuf headers compiled in are the runtime's (the wheel's own
// Protobuf 3.13 headers are kept out, cmake/TorchWheel.cmake), exactly one
// libprotobuf and one libtorch_cpu are mapped, and a request travels from a
// generated message through LibTorch and back.
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include <ATen/ATen.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "inference/grpc_service.grpc.pb.h"
#include "server/core/model_config.h"
#include "server/core/tensor_codec.h"

namespace dytserve {
namespace {

TEST(RuntimeLibs, ProtobufHeadersMatchTheRuntimeAndOneOfEachLibraryIsMapped) {
  // Aborts the process if the headers and the linked runtime disagree.
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  // gRPC in use here, not only linked by chance through another object: a
  // channel with our generated stub (a call is not needed to map the library).
  auto stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  ASSERT_NE(stub, nullptr);
  EXPECT_FALSE(grpc::Version().empty());
  std::ifstream in("/proc/self/maps");
  std::stringstream maps;
  maps << in.rdbuf();
  std::set<std::string> files;
  for (absl::string_view line : absl::StrSplit(maps.str(), '\n')) {
    const size_t slash = line.find('/');
    if (slash != absl::string_view::npos) files.insert(std::string(line.substr(slash)));
  }
  int protobuf = 0, torch_cpu = 0, grpc = 0;
  for (const std::string& f : files) {
    protobuf += absl::StrContains(f, "/libprotobuf.so");
    torch_cpu += absl::StrContains(f, "/libtorch_cpu.so");
    grpc += absl::StrContains(f, "/libgrpc++.so");
  }
  EXPECT_EQ(protobuf, 1);
  EXPECT_EQ(torch_cpu, 1);
  EXPECT_EQ(grpc, 1);
}

TEST(RuntimeLibs, AGeneratedRequestDecodesIntoLibTorchAndItsResultEncodesBack) {
  absl::StatusOr<v1::ModelConfig> config = ParseModelConfig(
      "max_batch_size: 4\n"
      "input { name: \"x\" data_type: TYPE_FP32 dims: [3] }\n"
      "output { name: \"y\" data_type: TYPE_FP32 dims: [3] }\n",
      "m/config.pbtxt");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<ModelSpec> spec = BuildModelSpec(*config, "m");
  ASSERT_TRUE(spec.ok()) << spec.status();

  inference::ModelInferRequest request;
  request.set_model_name("m");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  input->add_shape(2);
  input->add_shape(3);
  request.add_raw_input_contents(ToRawBytes(at::arange(6, at::kFloat).reshape({2, 3})));
  inference::ModelInferRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(request.SerializeAsString()));

  absl::StatusOr<DecodedRequest> decoded = DecodeRequest(parsed, *spec);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const at::Tensor y = at::matmul(decoded->inputs[0], at::eye(3) * 2);
  inference::ModelInferResponse response;
  ASSERT_TRUE(AppendRawOutput("y", y, &response).ok());
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  absl::StatusOr<at::Tensor> back = FromRawBytes(response.raw_output_contents(0), DataType::kFp32, {2, 3});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(at::equal(*back, at::arange(6, at::kFloat).reshape({2, 3}) * 2));
}

}  // namespace
}  // namespace dytserve
