// Per-request overhead of each way into dytserve, on a trivial model (y = x,
// 16 floats), side by side in one run: unary gRPC, gRPC ModelStreamInfer,
// REST with JSON tensors and REST with binary tensors, on the model as
// TorchScript, and unary gRPC on it as an AOTInductor package (exported at
// start by bench/export_echo_aoti.py, about 15 s), against a bare gRPC
// echo server written here (the same v2 ModelInfer, answered at once with
// the inputs: the floor any gRPC server pays). One request in flight, the
// paths taking turns request by request in a new random order each round, so
// a shared machine's drift weighs on each alike.
//
//   build/bench/protocol_bench [--seconds=20] [--blocks=5] [--python=.venv/bin/python]
//
// Prints each path's p50 and its ratio to the floor, with the range of the
// ratio over consecutive blocks. Goal: unary gRPC within 1.25x of the floor.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <torch/script.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "closed_loop.h"
#include "inference/grpc_service.grpc.pb.h"
#include "loadgen/senders.h"
#include "support/server_process.h"

ABSL_FLAG(std::string, server, "build/server/dytserve-server", "dytserve-server binary");
ABSL_FLAG(double, seconds, 20, "Measured seconds, all paths together");
ABSL_FLAG(int, blocks, 5, "Consecutive blocks the run is cut into, for each ratio's spread");
ABSL_FLAG(std::string, python, ".venv/bin/python", "Python with torch, to export the AOTInductor echo");

namespace dytserve {
namespace {

namespace fs = std::filesystem;

// The floor: ModelInfer answered on the gRPC thread with its own inputs.
class EchoService final : public inference::GRPCInferenceService::CallbackService {
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx, const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override {
    resp->set_model_name(req->model_name());
    resp->set_model_version("1");
    resp->set_id(req->id());
    for (int i = 0; i < req->inputs_size(); ++i) {
      auto* out = resp->add_outputs();
      out->set_name("y");
      out->set_datatype(req->inputs(i).datatype());
      *out->mutable_shape() = req->inputs(i).shape();
      if (i < req->raw_input_contents_size()) *resp->add_raw_output_contents() = req->raw_input_contents(i);
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

// A repository holding `echo`: y = x over 16 floats, batched without delay.
fs::path MakeRepository() {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-protocol-bench-", getpid());
  fs::create_directories(dir / "echo" / "1");
  torch::jit::Module module("Echo");
  module.define("def forward(self, x):\n    return x + 0.0\n");
  module.save((dir / "echo" / "1" / "model.pt").string());
  std::ofstream(dir / "echo" / "config.pbtxt") << R"pb(name: "echo"
max_batch_size: 8
input { name: "x" data_type: TYPE_FP32 dims: [16] }
output { name: "y" data_type: TYPE_FP32 dims: [16] }
dynamic_batching { max_queue_delay_us: 0 }
)pb";
  return dir;
}

// One request, waited for; its latency in ms, or -1 on an error.
double Once(loadgen::Sender& sender, const std::string& model, const std::vector<Tensor>& inputs) {
  absl::Notification done;
  absl::Status status;
  const absl::Time start = absl::Now();
  sender.InferAsync(model, inputs, [&](absl::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  if (!status.ok()) {
    std::fprintf(stderr, "protocol_bench: %s\n", status.ToString().c_str());
    return -1;
  }
  return ms;
}

int Run() {
  const fs::path repo = MakeRepository();
  const std::string exporter = absl::StrCat(absl::GetFlag(FLAGS_python), " bench/export_echo_aoti.py --out ", repo.string());
  if (std::system(exporter.c_str()) != 0) {
    std::fprintf(stderr, "protocol_bench: '%s' failed (run from the repository root, after scripts/setup.sh)\n",
                 exporter.c_str());
    fs::remove_all(repo);
    return 1;
  }
  absl::StatusOr<bench::BenchServer> started =
      bench::StartServer(absl::GetFlag(FLAGS_server), {absl::StrCat("--model_repository=", repo.string())});
  if (!started.ok()) {
    std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  const std::string grpc_address = started->process->grpc_address();
  const std::string http_address = started->process->http_address();

  EchoService echo;
  grpc::ServerBuilder builder;
  int echo_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &echo_port);
  builder.RegisterService(&echo);
  std::unique_ptr<grpc::Server> echo_server = builder.BuildAndStart();
  ClientOptions echo_options;
  echo_options.endpoints = {absl::StrCat("127.0.0.1:", echo_port)};
  std::unique_ptr<Client> echo_client = *Client::Create(echo_options);

  struct Path {
    std::string name;
    std::string model;
    std::unique_ptr<loadgen::Sender> sender;
    std::vector<double> ms;
  };
  std::vector<Path> paths;
  paths.push_back({"echo floor (bare gRPC)", "echo", loadgen::GrpcUnarySender(echo_client.get()), {}});
  paths.push_back({"unary gRPC", "echo", loadgen::GrpcUnarySender(started->client.get()), {}});
  paths.push_back({"streaming gRPC", "echo", *loadgen::GrpcStreamSender(grpc_address, 1), {}});
  paths.push_back({"REST JSON", "echo", *loadgen::HttpSender(http_address, false, 1, absl::Seconds(30)), {}});
  paths.push_back({"REST binary", "echo", *loadgen::HttpSender(http_address, true, 1, absl::Seconds(30)), {}});
  paths.push_back({"unary gRPC, AOTInductor", "echo_aoti", loadgen::GrpcUnarySender(started->client.get()), {}});

  Tensor x;
  x.name = "x";
  x.datatype = "FP32";
  x.shape = {1, 16};
  std::vector<float> values(16);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : values) v = normal(rng);
  x.data.assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  const std::vector<Tensor> inputs = {x};

  std::vector<size_t> order(paths.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (int warm = 0; warm < 200; ++warm) {
    for (Path& p : paths) Once(*p.sender, p.model, inputs);
  }
  const absl::Time end = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  while (absl::Now() < end) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      const double ms = Once(*paths[i].sender, paths[i].model, inputs);
      if (ms < 0) return 1;
      paths[i].ms.push_back(ms);
    }
  }

  const int blocks = std::max(1, absl::GetFlag(FLAGS_blocks));
  const double floor = bench::Median(paths[0].ms);
  std::printf("%zu requests per path, one in flight; p50 of each and its ratio to the echo floor:\n", paths[0].ms.size());
  for (size_t p = 0; p < paths.size(); ++p) {
    double low = 1e9, high = 0;
    const size_t n = std::min(paths[p].ms.size(), paths[0].ms.size());
    for (int b = 0; b < blocks; ++b) {
      const size_t from = n * static_cast<size_t>(b) / static_cast<size_t>(blocks);
      const size_t to = n * static_cast<size_t>(b + 1) / static_cast<size_t>(blocks);
      if (to <= from) continue;
      const double r = bench::Median({paths[p].ms.begin() + from, paths[p].ms.begin() + to}) /
                       bench::Median({paths[0].ms.begin() + from, paths[0].ms.begin() + to});
      low = std::min(low, r);
      high = std::max(high, r);
    }
    std::printf("  %-26s p50 %.3f ms  %.2fx floor (blocks %.2f-%.2f)\n", paths[p].name.c_str(),
                bench::Median(paths[p].ms), bench::Median(paths[p].ms) / floor, low, high);
  }
  paths.clear();
  echo_server->Shutdown();
  started->process->Stop(SIGTERM);
  fs::remove_all(repo);
  return 0;
}

}  // namespace
}  // namespace dytserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dytserve::Run();
}
