// dytserve::Client features that need more than one server or TLS: each test
// starts real servers on loopback over a one-model repository.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/async_requests.h"
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

// Sends `n` requests to vit_ln, at most `window` in flight, calling
// `midway` once half were sent; returns how many failed.
int SendMany(Client& client, int n, int window, const std::function<void()>& midway = {}) {
  const std::vector<Tensor> image = {Tensor::From<float>("pixel_values", {1, 1, 8, 8}, std::vector<float>(64, 0.25f))};
  int failed = 0;
  for (const testing::Outcome& o : testing::SendAsync(client, "vit_ln", image, n, {}, window, midway)) {
    failed += !o.status.ok();
  }
  return failed;
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

// A rolling update: each of 3 replicas in turn gets SIGTERM (it drains) and
// a new server starts on its port, while an open-loop sender keeps calling
// through the client library. Every call must end OK: the draining replica
// answers what it accepted and refuses the rest with UNAVAILABLE, which the
// client retries on another replica.
TEST_F(ClientTest, RollingRestartOfThreeReplicasUnderOpenLoopLoadLosesNothing) {
  std::unique_ptr<ServerProcess> servers[3] = {Start({"--shutdown_grace_s=20"}), Start({"--shutdown_grace_s=20"}),
                                               Start({"--shutdown_grace_s=20"})};
  ASSERT_TRUE(servers[0] && servers[1] && servers[2]);
  ClientOptions options;
  for (auto& s : servers) options.endpoints.push_back(s->grpc_address());
  options.max_attempts = 5;
  std::unique_ptr<Client> client = *Client::Create(options);
  ASSERT_EQ(SendMany(*client, 30, 4), 0);

  struct Tally {
    absl::Mutex mu;
    std::map<absl::StatusCode, int> codes ABSL_GUARDED_BY(mu);
    std::vector<std::string> failures ABSL_GUARDED_BY(mu);
    int outstanding ABSL_GUARDED_BY(mu) = 0;
  };
  auto tally = std::make_shared<Tally>();
  std::atomic<bool> stop{false};
  const std::vector<Tensor> image = Image();
  std::thread sender([&] {
    // Open loop: one call every 4 ms whatever the answers do.
    absl::Time next = absl::Now();
    while (!stop.load()) {
      {
        absl::MutexLock lock(&tally->mu);
        ++tally->outstanding;
      }
      client->InferAsync("vit_ln", image, {}, [tally](absl::StatusOr<InferResult> r) {
        absl::MutexLock lock(&tally->mu);
        ++tally->codes[r.status().code()];
        if (!r.ok() && tally->failures.size() < 5) tally->failures.push_back(r.status().ToString());
        --tally->outstanding;
      });
      next += absl::Milliseconds(4);
      absl::SleepFor(next - absl::Now());
    }
  });
  for (int i = 0; i < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(700));
    const std::string address = servers[i]->grpc_address();
    const std::string port = address.substr(address.rfind(':') + 1);
    EXPECT_EQ(servers[i]->Stop(SIGTERM, absl::Seconds(60)), 0) << servers[i]->Stderr();
    servers[i] = Start({"--shutdown_grace_s=20", absl::StrCat("--grpc_port=", port)});
    ASSERT_NE(servers[i], nullptr) << "replica " << i << " did not come back on port " << port;
  }
  absl::SleepFor(absl::Milliseconds(700));
  stop = true;
  sender.join();
  absl::MutexLock lock(&tally->mu);
  ASSERT_TRUE(tally->mu.AwaitWithTimeout(
      absl::Condition(+[](Tally* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu) { return t->outstanding == 0; }, tally.get()),
      absl::Seconds(120)));
  int total = 0;
  for (const auto& [code, count] : tally->codes) total += count;
  std::printf("rolling restart of 3 replicas: %d calls, %d OK\n", total, tally->codes[absl::StatusCode::kOk]);
  EXPECT_EQ(tally->codes[absl::StatusCode::kOk], total) << "first failures: " << absl::StrJoin(tally->failures, "; ");
  EXPECT_GT(total, 500);
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
      Start({absl::StrCat("--tls_cert=", cert), absl::StrCat("--tls_key=", key)});
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

  // The REST endpoint serves HTTPS with the same certificate (curl checks it).
  const testing::CommandResult https = testing::RunCommand(absl::StrCat(
      "curl -sS --fail-with-body --cacert ", cert, " https://", server->http_address(), "/v2/models/vit_ln/ready"));
  EXPECT_EQ(https.exit_code, 0) << https.output;
  EXPECT_EQ(https.output, "{}");
  const testing::CommandResult http_plain =
      testing::RunCommand(absl::StrCat("curl -sS --max-time 5 http://", server->http_address(), "/v2/health/live"));
  EXPECT_NE(http_plain.exit_code, 0) << "plain HTTP is refused by an HTTPS endpoint: " << http_plain.output;

  ClientOptions plain;
  plain.endpoints = {server->grpc_address()};
  plain.default_deadline = absl::Seconds(5);
  EXPECT_FALSE((*Client::Create(plain))->Infer("vit_ln", Image()).ok()) << "plaintext is refused by a TLS server";

  // Half a TLS configuration is refused at start-up with a clear message.
  absl::StatusOr<std::unique_ptr<ServerProcess>> half = ServerProcess::Start(
      DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", (dir_ / "repo").string()),
                            absl::StrCat("--tls_cert=", cert)});
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("--tls_cert and --tls_key go together"), std::string::npos)
      << half.status();
}

// A CA, a server certificate and a client certificate it signed, plus a
// client certificate from another CA; written by openssl at test time.
struct Pki {
  std::string ca, server_cert, server_key, client_cert, client_key, stranger_cert, stranger_key;
};

absl::StatusOr<Pki> MakePki(const fs::path& dir) {
  auto p = [&](const char* name) { return (dir / name).string(); };
  const std::string quiet = " >/dev/null 2>&1";
  const std::vector<std::string> commands = {
      absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ", p("ca.key"),
                   " -out ", p("ca.pem"), quiet),
      absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout ", p("server.key"), " -out ",
                   p("server.csr"), quiet),
      absl::StrCat("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > ", p("san.ext")),
      absl::StrCat("openssl x509 -req -in ", p("server.csr"), " -CA ", p("ca.pem"), " -CAkey ", p("ca.key"),
                   " -CAcreateserial -days 1 -extfile ", p("san.ext"), " -out ", p("server.pem"), quiet),
      absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout ", p("client.key"), " -out ",
                   p("client.csr"), quiet),
      absl::StrCat("openssl x509 -req -in ", p("client.csr"), " -CA ", p("ca.pem"), " -CAkey ", p("ca.key"),
                   " -CAcreateserial -days 1 -out ", p("client.pem"), quiet),
      absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=stranger -keyout ",
                   p("stranger.key"), " -out ", p("stranger.pem"), quiet),
  };
  for (const std::string& c : commands) {
    if (std::system(c.c_str()) != 0) return absl::InternalError("openssl failed: " + c);
  }
  auto read = [](const std::string& path) {
    std::stringstream s;
    s << std::ifstream(path).rdbuf();
    return s.str();
  };
  return Pki{read(p("ca.pem")),     p("server.pem"),           p("server.key"),         read(p("client.pem")),
             read(p("client.key")), read(p("stranger.pem")), read(p("stranger.key"))};
}

TEST_F(ClientTest, MutualTlsAcceptsOnlyClientsWithACertificateFromTheCa) {
  absl::StatusOr<Pki> pki = MakePki(dir_);
  ASSERT_TRUE(pki.ok()) << pki.status();
  const std::string ca_file = (dir_ / "ca.pem").string();
  std::unique_ptr<ServerProcess> server =
      Start({absl::StrCat("--tls_cert=", pki->server_cert), absl::StrCat("--tls_key=", pki->server_key),
             absl::StrCat("--tls_client_ca=", ca_file)});
  ASSERT_TRUE(server);
  auto client_with = [&](const std::string& cert, const std::string& key) {
    ClientOptions options;
    options.endpoints = {server->grpc_address()};
    options.tls = true;
    options.tls_root_certs = pki->ca;
    options.tls_client_cert = cert;
    options.tls_client_key = key;
    options.default_deadline = absl::Seconds(10);
    return *Client::Create(options);
  };
  absl::StatusOr<InferResult> ok = client_with(pki->client_cert, pki->client_key)->Infer("vit_ln", Image());
  EXPECT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(client_with("", "")->Infer("vit_ln", Image()).ok()) << "no client certificate";
  EXPECT_FALSE(client_with(pki->stranger_cert, pki->stranger_key)->Infer("vit_ln", Image()).ok())
      << "a certificate from another CA";

  // The CLI speaks mutual TLS too.
  testing::CommandResult cli = testing::RunCommand(absl::StrCat(
      DYTSERVE_CLI_BIN, " --target=", server->grpc_address(), " --tls --tls_ca=", ca_file,
      " --tls_cert=", (dir_ / "client.pem").string(), " --tls_key=", (dir_ / "client.key").string(), " health"));
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  testing::CommandResult no_cert = testing::RunCommand(
      absl::StrCat(DYTSERVE_CLI_BIN, " --target=", server->grpc_address(), " --tls --tls_ca=", ca_file, " health"));
  EXPECT_NE(no_cert.exit_code, 0) << no_cert.output;

  // REST (HTTPS) asks for the same client certificate: 403 without one, or
  // with one another CA signed.
  auto rest = [&](const std::string& cert_args) {
    return testing::RunCommand(absl::StrCat("curl -s -o /dev/null -w '%{http_code}' --cacert ", ca_file, " ", cert_args,
                                            " https://", server->http_address(), "/v2/health/live"));
  };
  EXPECT_EQ(rest(absl::StrCat("--cert ", (dir_ / "client.pem").string(), " --key ", (dir_ / "client.key").string()))
                .output,
            "200");
  EXPECT_EQ(rest("").output, "403");
  EXPECT_EQ(
      rest(absl::StrCat("--cert ", (dir_ / "stranger.pem").string(), " --key ", (dir_ / "stranger.key").string())).output,
      "403");

  // A client CA without a server certificate is refused at start-up.
  absl::StatusOr<std::unique_ptr<ServerProcess>> half = ServerProcess::Start(
      DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", (dir_ / "repo").string()),
                            absl::StrCat("--tls_client_ca=", ca_file)});
  ASSERT_FALSE(half.ok());
  EXPECT_NE(half.status().message().find("--tls_client_ca needs --tls_cert and --tls_key"), std::string::npos)
      << half.status();
}

TEST_F(ClientTest, InferenceTokenGuardsInferenceButNotProbes) {
  const std::string token_file = (dir_ / "inference.token").string();
  std::ofstream(token_file) << "infer-token-123\n";
  std::unique_ptr<ServerProcess> server = Start({absl::StrCat("--inference_token_file=", token_file)});
  ASSERT_TRUE(server);
  auto client_with = [&](const std::string& token) {
    ClientOptions options;
    options.endpoints = {server->grpc_address()};
    options.bearer_token = token;
    return *Client::Create(options);
  };
  EXPECT_EQ(client_with("")->Infer("vit_ln", Image()).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client_with("nope")->Infer("vit_ln", Image()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client_with("nope")->GetModelMetadata("vit_ln").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(client_with("infer-token-123")->Infer("vit_ln", Image()).ok());
  // Probes carry no token: liveness, readiness and health stay open.
  EXPECT_TRUE(*client_with("")->ServerLive());
  EXPECT_TRUE(*client_with("")->ServerReady());
  EXPECT_EQ(*client_with("")->Health(""), HealthStatus::kServing);
  absl::StatusOr<std::string> scrape = testing::HttpGet(server->metrics_address(), "/metrics");
  ASSERT_TRUE(scrape.ok());
  EXPECT_NE(scrape->find("dytserve_auth_refusals_total{code=\"PERMISSION_DENIED\",service=\"inference.GRPCInferenceService\"} 2"),
            std::string::npos);
  EXPECT_EQ(server->Stderr().find("infer-token-123"), std::string::npos) << "the token must never be logged";
  // The loadgen sends the token on every protocol, and is refused without it.
  const std::string loadgen = absl::StrCat(DYTSERVE_LOADGEN_BIN, " --progress=false --model=vit_ln --concurrency=2",
                                           " --duration=1 --warmup=0.2 --requests=40 ");
  for (const std::string& protocol :
       {absl::StrCat("--target=", server->grpc_address()), absl::StrCat("--target=", server->grpc_address(), " --streaming"),
        absl::StrCat("--protocol=http --target=", server->http_address()),
        absl::StrCat("--protocol=http --http_binary --target=", server->http_address())}) {
    testing::CommandResult run = testing::RunCommand(absl::StrCat(loadgen, protocol, " --token_file=", token_file));
    EXPECT_EQ(run.exit_code, 0) << protocol << ": " << run.output;
    EXPECT_EQ(run.output.find("\n    errors "), std::string::npos) << protocol << ": " << run.output;
  }
  testing::CommandResult refused = testing::RunCommand(absl::StrCat(loadgen, "--target=", server->grpc_address()));
  EXPECT_NE(refused.output.find("UNAUTHENTICATED"), std::string::npos) << refused.output;
  // A token file that is empty stops the server at start with a clear error.
  const std::string empty = (dir_ / "empty.token").string();
  std::ofstream(empty) << "  \n";
  absl::StatusOr<std::unique_ptr<ServerProcess>> bad = ServerProcess::Start(
      DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", (dir_ / "repo").string()),
                            absl::StrCat("--inference_token_file=", empty)});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--inference_token_file=" + empty + ": holds no token"), std::string::npos)
      << bad.status();
}

}  // namespace
}  // namespace dytserve
