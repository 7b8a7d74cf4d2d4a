// dytserve::Client features that need more than one server or TLS: each test
// starts real servers on loopback over a one-model repository.
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / absl::StrCat("dytserve-client-test-", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "repo");
    fs::create_directory_symlink(fs::path(DYTSERVE_TEST_REPO) / "vit_ln", dir_ / "repo/vit_ln");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    extra.push_back(absl::StrCat("--model_repository=", (dir_ / "repo").string()));
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(DYTSERVE_SERVER_BIN, extra);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  static std::vector<Tensor> Image() {
    std::mt19937_64 rng(3);
    ModelMetadata m;
    m.inputs = {{"pixel_values", "FP32", {-1, 1, 8, 8}}};
    return *GenerateInputs(m, {}, &rng);
  }

  static double OkCount(const ServerProcess& server) {
    absl::StatusOr<std::string> body = testing::HttpGet(server.metrics_address(), "/metrics");
    if (!body.ok()) return -1;
    const std::string prefix = "dytserve_requests_total{arm=\"\",code=\"OK\",experiment=\"\",model=\"vit_ln\",version=\"1\"} ";
    const size_t at = body->find(prefix);
    return at == std::string::npos ? -1 : std::stod(body->substr(at + prefix.size()));
  }

  fs::path dir_;
};

// Sends `n` async requests, at most `window` in flight, calling `midway`
// once half were sent; returns how many failed. State is shared with the
// callbacks so a late one never touches a finished caller's stack.
int SendMany(Client& client, int n, int window, const std::function<void()>& midway = {}) {
  struct State {
    absl::Mutex mu;
    int in_flight ABSL_GUARDED_BY(mu) = 0;
    int failed ABSL_GUARDED_BY(mu) = 0;
    int window = 0;
  };
  auto state = std::make_shared<State>();
  state->window = window;
  const std::vector<Tensor> image = {Tensor::From<float>("pixel_values", {1, 1, 8, 8}, std::vector<float>(64, 0.25f))};
  for (int i = 0; i < n; ++i) {
    if (i == n / 2 && midway) midway();
    {
      absl::MutexLock lock(&state->mu);
      state->mu.Await(absl::Condition(
          +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->in_flight < s->window; }, state.get()));
      ++state->in_flight;
    }
    client.InferAsync("vit_ln", image, {}, [state](absl::StatusOr<InferResult> r) {
      absl::MutexLock lock(&state->mu);
      --state->in_flight;
      if (!r.ok()) ++state->failed;
    });
  }
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->in_flight == 0; }, state.get()));
  return state->failed;
}

TEST_F(ClientTest, RoundRobinSpreadsEvenlyOverThreeReplicas) {
  std::unique_ptr<ServerProcess> servers[3] = {Start(), Start(), Start()};
  ASSERT_TRUE(servers[0] && servers[1] && servers[2]);
  ClientOptions options;
  for (auto& s : servers) options.endpoints.push_back(s->grpc_address());
  std::unique_ptr<Client> client = *Client::Create(options);
  // Until every subchannel is connected the first calls go where one is.
  ASSERT_EQ(SendMany(*client, 30, 1), 0);
  double before[3];
  for (int i = 0; i < 3; ++i) before[i] = OkCount(*servers[i]);
  constexpr int kRequests = 600;
  ASSERT_EQ(SendMany(*client, kRequests, 6), 0);
  for (int i = 0; i < 3; ++i) {
    const double share = OkCount(*servers[i]) - before[i];
    std::printf("replica %d: %.0f of %d requests\n", i, share, kRequests);
    EXPECT_NEAR(share, kRequests / 3.0, kRequests / 3.0 * 0.10) << "replica " << i;
  }
}

TEST_F(ClientTest, KillingAReplicaMidRunLosesNothingWithRetries) {
  std::unique_ptr<ServerProcess> servers[3] = {Start(), Start(), Start()};
  ASSERT_TRUE(servers[0] && servers[1] && servers[2]);
  ClientOptions options;
  for (auto& s : servers) options.endpoints.push_back(s->grpc_address());
  for (int attempts : {3, 1}) {
    options.max_attempts = attempts;
    std::unique_ptr<Client> client = *Client::Create(options);
    ASSERT_EQ(SendMany(*client, 30, 1), 0);
    constexpr int kWindow = 8;
    const int victim = attempts == 3 ? 2 : 1;
    const int failed = SendMany(*client, 800, kWindow, [&] { servers[victim]->Stop(SIGKILL); });
    std::printf("max_attempts %d: %d of 800 failed after SIGKILL of a replica mid-run\n", attempts, failed);
    if (attempts > 1) {
      EXPECT_EQ(failed, 0) << "retries on UNAVAILABLE should have found another replica";
    } else {
      // Without retries only what was in flight on the killed replica fails.
      EXPECT_LE(failed, kWindow);
    }
  }
}

TEST_F(ClientTest, DefaultDeadlineApplies) {
  std::unique_ptr<ServerProcess> server = Start();
  ASSERT_TRUE(server);
  ClientOptions options;
  options.endpoints = {server->grpc_address()};
  options.default_deadline = absl::Microseconds(1);
  std::unique_ptr<Client> client = *Client::Create(options);
  EXPECT_EQ(client->Infer("vit_ln", Image()).status().code(), absl::StatusCode::kDeadlineExceeded);
  InferOptions longer;
  longer.deadline = absl::Seconds(60);
  EXPECT_TRUE(client->Infer("vit_ln", Image(), longer).ok()) << "a per-call deadline overrides the default";
}

TEST_F(ClientTest, BadOptionsAreRefused) {
  EXPECT_EQ(Client::Create({}).status().code(), absl::StatusCode::kInvalidArgument);
  ClientOptions options;
  options.endpoints = {"127.0.0.1:1"};
  options.default_deadline = absl::ZeroDuration();
  EXPECT_EQ(Client::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, Tls) {
  const std::string cert = (dir_ / "cert.pem").string(), key = (dir_ / "key.pem").string();
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
      "subjectAltName=IP:127.0.0.1,DNS:localhost -keyout ",
      key, " -out ", cert, " >/dev/null 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0) << "openssl could not make a test certificate";
  std::unique_ptr<ServerProcess> server =
      Start({absl::StrCat("--tls_cert_file=", cert), absl::StrCat("--tls_key_file=", key)});
  ASSERT_TRUE(server);

  std::stringstream pem;
  pem << std::ifstream(cert).rdbuf();
  ClientOptions options;
  options.endpoints = {server->grpc_address()};
  options.tls = true;
  options.tls_root_certs = pem.str();
  options.default_deadline = absl::Seconds(30);
  std::unique_ptr<Client> client = *Client::Create(options);
  absl::StatusOr<InferResult> result = client->Infer("vit_ln", Image());
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->Find("logits")->shape, (std::vector<int64_t>{1, 10}));

  ClientOptions plain;
  plain.endpoints = {server->grpc_address()};
  plain.default_deadline = absl::Seconds(5);
  EXPECT_FALSE((*Client::Create(plain))->Infer("vit_ln", Image()).ok()) << "plaintext is refused by a TLS server";

  // Half a TLS configuration is refused at start-up with a clear message.
  absl::StatusOr<std::unique_ptr<ServerProcess>> half = ServerProcess::Start(
      DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", (dir_ / "repo").string()),
                            absl::StrCat("--tls_cert_file=", cert)});
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("--tls_cert_file and --tls_key_file go together"), std::string::npos)
      << half.status();
}

}  // namespace
}  // namespace dytserve
