// The v2 HTTP/REST endpoint and /metrics (libmicrohttpd) on a real server
// over loopback: routes, tokens, JSON and binary tensors against the gRPC
// answers, errors that name the field, limits, keep-alive, and slow clients
// that must not starve a scrape or an inference.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "nlohmann/json.hpp"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::HttpCall;
using testing::HttpResult;

constexpr char kAdmin[] = "rest-admin-token";
constexpr char kInference[] = "rest-inference-token";
const std::vector<std::string> kAuth = {absl::StrCat("Authorization: Bearer ", kInference)};
const std::vector<std::string> kAdminAuth = {absl::StrCat("Authorization: Bearer ", kAdmin)};

fs::path TestDir() { return fs::temp_directory_path() / absl::StrCat("dytserve-rest-", getpid()); }

int Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class RestTest : public testing::SuiteServerTest<RestTest> {
 public:
  static std::vector<std::string> ServerArgs() {
    const fs::path dir = TestDir();
    fs::remove_all(dir);
    fs::create_directories(dir);
    testing::CopyModels(DYTSERVE_TEST_REPO, dir.string(), {"vit_dyt", "vit_ln", "llama_dyt"});
    // One request computing and one waiting at most: the rest are refused.
    testing::AddModel(dir.string(), "vit_one_queued", absl::StrCat(DYTSERVE_TEST_REPO, "/vit_ln/1/model.pt"),
                      testing::VitConfig(1, "dynamic_batching { max_queue_size: 1 }\n"));
    std::ofstream(dir / "admin.token") << kAdmin << "\n";
    std::ofstream(dir / "inference.token") << kInference << "\n";
    return {absl::StrCat("--model_repository=", dir.string()),
            absl::StrCat("--admin_token_file=", (dir / "admin.token").string()),
            absl::StrCat("--inference_token_file=", (dir / "inference.token").string()), "--max_message_mb=1",
            "--strict_readiness=false"};
  }

 protected:
  static void TearDownTestSuite() {
    SuiteServerTest<RestTest>::TearDownTestSuite();
    fs::remove_all(TestDir());
  }

  HttpResult Call(const std::string& method, const std::string& path, const std::string& body = "",
                  const std::vector<std::string>& headers = kAuth) {
    absl::StatusOr<HttpResult> r = HttpCall(server_->http_address(), method, path, body, headers);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HttpResult();
  }

  std::unique_ptr<Client> GrpcClient() {
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    options.bearer_token = kInference;
    return *Client::Create(options);
  }

  static std::vector<float> VitPixels(uint64_t seed, int rows = 1) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(rows) * 64);
    for (float& v : x) v = normal(rng);
    return x;
  }

  // What the gRPC side answers for the same pixels.
  std::vector<float> GrpcLogits(const std::vector<float>& pixels, int rows) {
    Tensor t;
    t.name = "pixel_values";
    t.datatype = "FP32";
    t.shape = {rows, 1, 8, 8};
    t.data.assign(reinterpret_cast<const char*>(pixels.data()), pixels.size() * sizeof(float));
    absl::StatusOr<InferResult> r = GrpcClient()->Infer("vit_dyt", {t});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r->outputs[0].As<float>() : std::vector<float>();
  }
};

TEST_F(RestTest, ListeningLineNamesTheHttpPort) {
  EXPECT_TRUE(absl::StrContains(server_->listening_line(), " http=127.0.0.1:")) << server_->listening_line();
}

TEST_F(RestTest, RoutesAnswerLikeTheGrpcSide) {
  EXPECT_EQ(Call("GET", "/v2/health/live", "", {}).code, 200);  // probes need no token
  EXPECT_EQ(Call("GET", "/v2/health/ready", "", {}).code, 200);
  EXPECT_EQ(Call("GET", "/v2", "", {}).code, 401);
  EXPECT_EQ(Call("GET", "/v2", "", {"Authorization: Bearer wrong"}).code, 403);
  HttpResult server = Call("GET", "/v2");
  ASSERT_EQ(server.code, 200) << server.body;
  EXPECT_EQ(json::parse(server.body)["name"], "dytserve");

  HttpResult meta = Call("GET", "/v2/models/vit_dyt");
  ASSERT_EQ(meta.code, 200) << meta.body;
  EXPECT_EQ(json::parse(meta.body)["inputs"][0]["shape"], json({-1, 1, 8, 8}));
  EXPECT_EQ(Call("GET", "/v2/models/vit_dyt/versions/1").code, 200);
  EXPECT_EQ(Call("GET", "/v2/models/vit_dyt/ready").code, 200);
  EXPECT_EQ(Call("GET", "/v2/models/vit_dyt/versions/1/ready").code, 200);
  HttpResult config = Call("GET", "/v2/models/vit_dyt/config");
  ASSERT_EQ(config.code, 200) << config.body;
  EXPECT_EQ(json::parse(config.body)["max_batch_size"], 64);
  HttpResult stats = Call("GET", "/v2/models/vit_dyt/stats");
  ASSERT_EQ(stats.code, 200) << stats.body;
  EXPECT_EQ(json::parse(stats.body)["model_stats"][0]["name"], "vit_dyt");
  EXPECT_EQ(Call("GET", "/v2/models/stats").code, 200);

  HttpResult missing = Call("GET", "/v2/models/no_such_model");
  EXPECT_EQ(missing.code, 404);
  EXPECT_TRUE(absl::StrContains(json::parse(missing.body)["error"].get<std::string>(), "no_such_model")) << missing.body;
  EXPECT_EQ(Call("GET", "/v2/models/no_such_model/ready").code, 503);
  EXPECT_EQ(Call("GET", "/v2/nowhere").code, 404);
  EXPECT_EQ(Call("GET", "/elsewhere").code, 404);
  EXPECT_EQ(Call("GET", "/v2/models/vit_dyt/infer").code, 405);
  EXPECT_EQ(Call("DELETE", "/v2/models/vit_dyt").code, 405);
}

TEST_F(RestTest, JsonAndBinaryTensorsAnswerAsGrpcDoes) {
  const std::vector<float> pixels = VitPixels(3, 2);
  const std::vector<float> expected = GrpcLogits(pixels, 2);
  ASSERT_EQ(expected.size(), 20u);

  json request = {{"id", "j1"},
                  {"inputs", {{{"name", "pixel_values"}, {"datatype", "FP32"}, {"shape", {2, 1, 8, 8}}, {"data", pixels}}}}};
  HttpResult r = Call("POST", "/v2/models/vit_dyt/infer", request.dump());
  ASSERT_EQ(r.code, 200) << r.body;
  json answer = json::parse(r.body);
  EXPECT_EQ(answer["id"], "j1");
  EXPECT_EQ(answer["model_name"], "vit_dyt");
  EXPECT_EQ(answer["outputs"][0]["shape"], json({2, 10}));
  const std::vector<float> got = answer["outputs"][0]["data"].get<std::vector<float>>();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-5) << i;

  // Triton's binary extension, both ways.
  json header = {{"inputs",
                  {{{"name", "pixel_values"},
                    {"datatype", "FP32"},
                    {"shape", {2, 1, 8, 8}},
                    {"parameters", {{"binary_data_size", pixels.size() * 4}}}}}},
                 {"outputs", {{{"name", "logits"}, {"parameters", {{"binary_data", true}}}}}}};
  const std::string text = header.dump();
  std::string body = text;
  body.append(reinterpret_cast<const char*>(pixels.data()), pixels.size() * 4);
  HttpResult b = Call("POST", "/v2/models/vit_dyt/infer", body,
                      {kAuth[0], absl::StrCat("Inference-Header-Content-Length: ", text.size())});
  ASSERT_EQ(b.code, 200) << b.body;
  const size_t at = b.headers.find("Inference-Header-Content-Length: ");
  ASSERT_NE(at, std::string::npos) << b.headers;
  size_t json_length = 0;
  ASSERT_TRUE(absl::SimpleAtoi(b.headers.substr(at + 33, b.headers.find("\r\n", at) - at - 33), &json_length));
  json binary = json::parse(b.body.substr(0, json_length));
  EXPECT_EQ(binary["outputs"][0]["parameters"]["binary_data_size"], 80);
  ASSERT_EQ(b.body.size(), json_length + 80);
  std::vector<float> raw(20);
  std::memcpy(raw.data(), b.body.data() + json_length, 80);
  for (size_t i = 0; i < raw.size(); ++i) EXPECT_NEAR(raw[i], expected[i], 1e-5) << i;

  // A decoder, INT64 tokens as JSON integers.
  json tokens = {{"inputs", {{{"name", "input_ids"}, {"datatype", "INT64"}, {"shape", {1, 5}}, {"data", {{1, 2, 3, 4, 5}}}}}}};
  HttpResult d = Call("POST", "/v2/models/llama_dyt/infer", tokens.dump());
  ASSERT_EQ(d.code, 200) << d.body;
  EXPECT_EQ(json::parse(d.body)["outputs"][0]["shape"], json({1, 5, 256}));
}

TEST_F(RestTest, BadRequestsGet400NamingTheFieldAndTheServerLivesOn) {
  struct Case {
    std::string body;
    std::string named;
    int code = 400;
  };
  std::vector<float> ones(64, 1.0f);
  const std::string data = json(ones).dump();
  const std::vector<Case> cases = {
      {"{not json", "not JSON"},
      {"[]", "JSON object"},
      {R"({"inputs":[]})", "inputs"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,8,8],"data":[1,2]}]})", "2 elements"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,8,8],"data":"x"}]})", "must be numbers"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP99","shape":[1],"data":[1]}]})", "'FP99' is not served"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[-1],"data":[1]}]})", "shape"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,8,8]}]})", "needs data"},
      {R"({"inputs":[{"name":"nope","datatype":"FP32","shape":[1,1,8,8],"data":)" + data + "}]}", "nope"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"INT64","shape":[1,1,8,8],"data":)" + data + "}]}",
       "INT64 data must be integers"},
      {R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,8,8],"data":)" + data +
           R"(}],"outputs":[{"name":"logits","parameters":{"classification":3}}]})",
       "classification"},
      {R"({"id":7,"inputs":[]})", "id"},
  };
  for (const Case& c : cases) {
    HttpResult r = Call("POST", "/v2/models/vit_dyt/infer", c.body);
    EXPECT_EQ(r.code, c.code) << c.body << " -> " << r.body;
    const json error = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(error.is_object() && error.contains("error")) << r.body;
    EXPECT_TRUE(absl::StrContains(error["error"].get<std::string>(), c.named)) << c.named << " not in " << r.body;
  }
  // Over --max_message_mb=1: 413, without reading it.
  HttpResult big = Call("POST", "/v2/models/vit_dyt/infer", std::string(2 << 20, ' '));
  EXPECT_EQ(big.code, 413) << big.body;
  // Binary sizes that do not add up.
  HttpResult lying = Call("POST", "/v2/models/vit_dyt/infer",
                          R"({"inputs":[{"name":"pixel_values","datatype":"FP32","shape":[1,1,8,8],"parameters":{"binary_data_size":256}}]})",
                          {kAuth[0], "Inference-Header-Content-Length: 99999"});
  EXPECT_EQ(lying.code, 400);
  EXPECT_TRUE(absl::StrContains(lying.body, "Inference-Header-Content-Length")) << lying.body;

  json request = {{"inputs", {{{"name", "pixel_values"}, {"datatype", "FP32"}, {"shape", {1, 1, 8, 8}}, {"data", ones}}}}};
  EXPECT_EQ(Call("POST", "/v2/models/vit_dyt/infer", request.dump()).code, 200) << "the server serves on";
}

TEST_F(RestTest, RepositoryRoutesNeedTheAdminToken) {
  EXPECT_EQ(Call("POST", "/v2/repository/index", "{}", {}).code, 401);
  EXPECT_EQ(Call("POST", "/v2/repository/index", "{}", kAuth).code, 403);  // the inference token is not the admin's
  HttpResult index = Call("POST", "/v2/repository/index", "{}", kAdminAuth);
  ASSERT_EQ(index.code, 200) << index.body;
  EXPECT_TRUE(absl::StrContains(index.body, R"("name":"vit_ln")")) << index.body;
  ASSERT_EQ(Call("POST", "/v2/repository/models/vit_ln/unload", "", kAdminAuth).code, 200);
  EXPECT_EQ(Call("GET", "/v2/models/vit_ln/ready").code, 503);
  ASSERT_EQ(Call("POST", "/v2/repository/models/vit_ln/load", "", kAdminAuth).code, 200);
  EXPECT_EQ(Call("GET", "/v2/models/vit_ln/ready").code, 200);
  HttpResult refused = Call("POST", "/v2/repository/models/vit_ln/load", R"({"parameters":{"config":"{}"}})", kAdminAuth);
  EXPECT_EQ(refused.code, 400);
  EXPECT_TRUE(absl::StrContains(refused.body, "config")) << refused.body;
  EXPECT_EQ(Call("POST", "/v2/repository/models/no_such_model/load", "", kAdminAuth).code, 404);
}

// A full queue over REST is 429 (Triton's code for RESOURCE_EXHAUSTED), with
// the reason, and the server goes on answering.
TEST_F(RestTest, AFullQueueIs429) {
  json body;
  body["inputs"] = json::array({{{"name", "pixel_values"}, {"datatype", "FP32"}, {"shape", {1, 1, 8, 8}},
                                 {"data", VitPixels(5)}}});
  const std::string text = body.dump();
  std::map<int, int> codes;
  std::string refusal;
  for (int round = 0; round < 20 && codes[429] == 0; ++round) {
    std::mutex mu;
    std::vector<std::thread> callers;
    for (int i = 0; i < 12; ++i) {
      callers.emplace_back([&] {
        absl::StatusOr<HttpResult> r =
            HttpCall(server_->http_address(), "POST", "/v2/models/vit_one_queued/infer", text, kAuth);
        std::lock_guard<std::mutex> lock(mu);
        ++codes[r.ok() ? r->code : -1];
        if (r.ok() && r->code == 429) refusal = r->body;
      });
    }
    for (std::thread& t : callers) t.join();
  }
  EXPECT_GT(codes[429], 0) << "12 concurrent requests, 20 times, never filled a queue of 1";
  EXPECT_GT(codes[200], 0);
  EXPECT_EQ(codes[200] + codes[429], [&] {
    int n = 0;
    for (const auto& [code, count] : codes) n += count;
    return n;
  }()) << "only 200 and 429";
  EXPECT_NE(refusal.find("queue"), std::string::npos) << refusal;
  EXPECT_EQ(Call("POST", "/v2/models/vit_one_queued/infer", text).code, 200) << "the server lives on";
}

TEST_F(RestTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  const int fd = Connect(server_->http_address());
  ASSERT_GE(fd, 0);
  const std::string one = absl::StrCat("GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got;
  char buf[4096];
  for (int i = 0; i < 3; ++i) {
    ASSERT_GT(send(fd, one.data(), one.size(), MSG_NOSIGNAL), 0);
    // Each answer comes on the same connection before the next is sent.
    std::string answer;
    while (answer.find("\r\n\r\n") == std::string::npos || !absl::EndsWith(answer, "{}")) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0) << "request " << i << " got " << answer;
      answer.append(buf, static_cast<size_t>(n));
    }
    EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200")) << answer;
  }
  close(fd);
}

// 300 connections that never finish their headers, on each port: a scrape
// and an inference are still answered (each call gives up after 10 s).
TEST_F(RestTest, SlowClientsHoldNoThread) {
  std::vector<int> slow;
  for (const std::string& address : {server_->metrics_address(), server_->http_address()}) {
    for (int i = 0; i < 300; ++i) {
      const int fd = Connect(address);
      ASSERT_GE(fd, 0) << "connection " << i << " to " << address;
      const std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a";
      send(fd, partial.data(), partial.size(), MSG_NOSIGNAL);
      slow.push_back(fd);
    }
  }
  absl::StatusOr<std::string> scrape = testing::HttpGet(server_->metrics_address(), "/metrics");
  EXPECT_TRUE(scrape.ok()) << scrape.status();
  std::vector<float> ones(64, 1.0f);
  json request = {{"inputs", {{{"name", "pixel_values"}, {"datatype", "FP32"}, {"shape", {1, 1, 8, 8}}, {"data", ones}}}}};
  EXPECT_EQ(Call("POST", "/v2/models/vit_dyt/infer", request.dump()).code, 200);
  for (int fd : slow) close(fd);
}

TEST_F(RestTest, ConcurrentConnectionsAreAllAnswered) {
  std::vector<std::thread> threads;
  std::vector<int> codes(16, 0);
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([t, &codes] {
      json request = {
          {"inputs", {{{"name", "pixel_values"}, {"datatype", "FP32"}, {"shape", {1, 1, 8, 8}}, {"data", VitPixels(t)}}}}};
      absl::StatusOr<HttpResult> r =
          HttpCall(server_->http_address(), "POST", "/v2/models/vit_dyt/infer", request.dump(), kAuth);
      codes[t] = r.ok() ? r->code : -1;
    });
  }
  for (std::thread& t : threads) t.join();
  for (int code : codes) EXPECT_EQ(code, 200);
}

}  // namespace
}  // namespace dytserve
