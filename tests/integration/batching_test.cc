// Batching never changes a result: hundreds of concurrent requests of mixed
// row counts and sequence lengths, each compared with the same request served
// alone, against the real server and the default repository.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

namespace dytserve {
namespace {

using testing::ServerProcess;

struct Request {
  std::string model;
  std::vector<Tensor> inputs;
  std::vector<float> alone;
};

double Metric(const std::string& body, const std::string& series) {
  const size_t at = body.find(series + " ");
  return at == std::string::npos ? -1 : std::stod(body.substr(at + series.size() + 1));
}

TEST(Batching, ConcurrentRequestsEqualTheSameRequestServedAlone) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", DYTSERVE_TEST_REPO)});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  options.default_deadline = absl::Seconds(120);
  std::unique_ptr<Client> client = *Client::Create(options);

  std::mt19937_64 rng(2024);
  std::vector<Request> requests;
  for (const std::string model : {"vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn", "llama_rms", "llama_dyt"}) {
    const bool decoder = model.rfind("llama", 0) == 0;
    const ModelMetadata metadata = *client->GetModelMetadata(model);
    for (int i = 0; i < 60; ++i) {
      GenerateOptions g;
      g.rows = decoder ? 1 + static_cast<int64_t>(rng() % 2) : 1 + static_cast<int64_t>(rng() % 3);
      g.seq_len = 1 + static_cast<int64_t>(rng() % 40);
      g.int_high = 256;
      requests.push_back({model, *GenerateInputs(metadata, g, &rng), {}});
    }
  }
  // Alone: one request in flight at a time, so each forms its own batch.
  for (Request& r : requests) {
    absl::StatusOr<InferResult> result = client->Infer(r.model, r.inputs);
    ASSERT_TRUE(result.ok()) << result.status();
    r.alone = *result->outputs[0].As<float>();
  }
  absl::StatusOr<std::string> before = testing::HttpGet((*server)->metrics_address(), "/metrics");
  ASSERT_TRUE(before.ok());

  // Together: everything in flight at once.
  absl::Mutex mu;
  std::vector<absl::StatusOr<InferResult>> together(requests.size(), absl::UnknownError("pending"));
  absl::BlockingCounter pending(static_cast<int>(requests.size()));
  for (size_t i = 0; i < requests.size(); ++i) {
    client->InferAsync(requests[i].model, requests[i].inputs, {}, [&, i](absl::StatusOr<InferResult> result) {
      {
        absl::MutexLock lock(&mu);
        together[i] = std::move(result);
      }
      pending.DecrementCount();
    });
  }
  pending.Wait();

  double worst = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(together[i].ok()) << requests[i].model << ": " << together[i].status();
    const std::vector<float> got = *together[i]->outputs[0].As<float>();
    ASSERT_EQ(got.size(), requests[i].alone.size()) << requests[i].model << " request " << i;
    for (size_t j = 0; j < got.size(); ++j) worst = std::max(worst, std::abs(double(got[j]) - requests[i].alone[j]));
  }
  EXPECT_LE(worst, 1e-5);
  std::printf("max abs diff batched vs alone: %.3g over %zu requests\n", worst, requests.size());

  // The server formed batches of several requests: fewer forward passes than requests.
  absl::StatusOr<std::string> after = testing::HttpGet((*server)->metrics_address(), "/metrics");
  ASSERT_TRUE(after.ok());
  double executions = 0, served = 0;
  for (const std::string model : {"vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn", "llama_rms", "llama_dyt"}) {
    const std::string labels = absl::StrCat("{model=\"", model, "\",version=\"1\"}");
    executions += Metric(*after, "dytserve_batch_executions_total" + labels) -
                  Metric(*before, "dytserve_batch_executions_total" + labels);
    const std::string ok = absl::StrCat("dytserve_requests_total{arm=\"\",code=\"OK\",experiment=\"\",model=\"", model, "\",version=\"1\"}");
    served += Metric(*after, ok) - Metric(*before, ok);
  }
  EXPECT_EQ(served, static_cast<double>(requests.size()));
  for (const std::string model : {"vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn", "llama_rms", "llama_dyt"}) {
    EXPECT_EQ(Metric(*after, absl::StrCat("dytserve_queue_depth{model=\"", model, "\",version=\"1\"}")), 0)
        << model << ": the queue-depth gauge returns to 0 when the queue drains";
  }
  EXPECT_LT(executions, served) << "no batch held more than one request";
  std::printf("%g requests in %g forward passes\n", served, executions);
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
}

// A model that needs its attention mask: it sums each row's ids where the
// mask is 1. Padding (with pad_value 7) would change every sum unless the
// server builds the mask right, and the per-position output must come back
// at each request's own length.
TEST(RaggedBatching, GeneratedMaskAndFollowingOutputs) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-mask-", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "masked/1");
  torch::jit::Module m("Masked");
  m.define(R"(
def forward(self, ids, mask):
    kept = ids * mask
    return torch.sum(kept, 1, keepdim=True), kept
)");
  m.save((dir / "masked/1/model.pt").string());
  std::ofstream(dir / "masked/config.pbtxt") << R"pb(
max_batch_size: 16
input { name: "ids" data_type: TYPE_INT64 dims: [-1] pad_value: 7 }
input { name: "mask" data_type: TYPE_INT64 dims: [-1] mask_of: "ids" }
output { name: "sum" data_type: TYPE_INT64 dims: [1] }
output { name: "kept" data_type: TYPE_INT64 dims: [-1] follows { input: "ids" input_dim: 0 output_dim: 0 } }
dynamic_batching { max_queue_delay_us: 20000 ragged_batching: true }
)pb";
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  // Metadata hides the generated mask from clients.
  const ModelMetadata metadata = *client->GetModelMetadata("masked");
  ASSERT_EQ(metadata.inputs.size(), 1u);
  EXPECT_EQ(metadata.inputs[0].name, "ids");

  constexpr int kRequests = 24;
  absl::Mutex mu;
  std::vector<absl::StatusOr<InferResult>> results(kRequests, absl::UnknownError("pending"));
  std::vector<std::vector<int64_t>> sent(kRequests);
  absl::BlockingCounter pending(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    const int64_t length = 1 + i % 6;
    for (int64_t j = 0; j < length; ++j) sent[i].push_back(i * 10 + j);
    client->InferAsync("masked", {Tensor::From<int64_t>("ids", {1, length}, sent[i])}, {},
                       [&, i](absl::StatusOr<InferResult> r) {
                         {
                           absl::MutexLock lock(&mu);
                           results[i] = std::move(r);
                         }
                         // After the lock: once the count hits zero the test
                         // may return and destroy `mu`.
                         pending.DecrementCount();
                       });
  }
  pending.Wait();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    int64_t want = 0;
    for (int64_t v : sent[i]) want += v;
    EXPECT_EQ(*results[i]->Find("sum")->As<int64_t>(), std::vector<int64_t>{want}) << "request " << i;
    EXPECT_EQ(*results[i]->Find("kept")->As<int64_t>(), sent[i]) << "request " << i;
    EXPECT_EQ(results[i]->Find("kept")->shape, (std::vector<int64_t>{1, static_cast<int64_t>(sent[i].size())}));
  }
  const std::string body = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  EXPECT_LT(Metric(body, "dytserve_batch_executions_total{model=\"masked\",version=\"1\"}"), kRequests)
      << "requests of different lengths shared batches";
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

// delay_from_free, served: a request that queued while a long batch computed
// waits its delay from the batch's end, so one sent after that batch's answer
// shares its batch (preferred size 2: the pair leaves as soon as it is
// complete). Without the option the queued request would have left alone at
// the batch's end, its 3 s delay spent during the 2048-row batch (4 s on
// the 2-core CI machine; where the batch is faster than the delay the test
// passes either way and says so). The delay is also the time the answered
// client has to send again: 1.5 s was once not enough under ASan on CI.
TEST(Batching, DelayFromFreeLetsARequestSentAfterABatchJoinTheOneQueuedDuringIt) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-delay-from-free-", getpid());
  fs::remove_all(dir);
  testing::AddModel(dir, "vit", absl::StrCat(DYTSERVE_TEST_REPO, "/vit_ln/1/model.pt"),
                    testing::VitConfig(2048, "dynamic_batching { max_queue_delay_us: 3000000 "
                                             "preferred_batch_sizes: [2] delay_from_free: true }\n"));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  options.default_deadline = absl::Seconds(50);  // answered or failed before ~Client stops waiting
  std::unique_ptr<Client> client = *Client::Create(options);
  std::mt19937_64 rng(9);
  const ModelMetadata metadata = *client->GetModelMetadata("vit");
  GenerateOptions big;
  big.rows = 2048;  // a full batch: it leaves at once
  const std::vector<Tensor> big_inputs = *GenerateInputs(metadata, big, &rng);
  const std::vector<Tensor> one = *GenerateInputs(metadata, {}, &rng);
  const std::string labels = "{model=\"vit\",version=\"1\"}";
  auto scrape = [&] { return testing::HttpGet((*server)->metrics_address(), "/metrics").value_or(""); };

  // Shared with the callbacks, which may outlive this frame if an assertion
  // returns early.
  struct Call {
    absl::Notification done;
    absl::Status status;
  };
  auto big_call = std::make_shared<Call>(), queued_call = std::make_shared<Call>();
  client->InferAsync("vit", big_inputs, {}, [big_call](absl::StatusOr<InferResult> r) {
    big_call->status = r.status();
    big_call->done.Notify();
  });
  // Until the big request has left the queue and is being computed: its queue
  // time is recorded as its batch starts, after the batcher took it, so a
  // request sent now cannot be a leftover of that batch (which would keep
  // its own arrival time and rightly leave alone).
  const std::string queued_series =
      "dytserve_queue_duration_seconds_count{arm=\"\",experiment=\"\",model=\"vit\",version=\"1\"}";
  bool computing = false;
  for (int i = 0; i < 2000 && !computing && !big_call->done.HasBeenNotified(); ++i) {
    const std::string body = scrape();
    computing = Metric(body, queued_series) == 1 && Metric(body, "dytserve_batch_executions_total" + labels) == 0;
    if (!computing) absl::SleepFor(absl::Milliseconds(5));
  }
  if (!computing) GTEST_SKIP() << "the 2048-row batch ended before a request could queue behind it";
  client->InferAsync("vit", one, {}, [queued_call](absl::StatusOr<InferResult> r) {
    queued_call->status = r.status();
    queued_call->done.Notify();
  });
  ASSERT_TRUE(big_call->done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(big_call->status.ok()) << big_call->status;
  absl::StatusOr<InferResult> after = client->Infer("vit", one);  // the answered client sends again
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_TRUE(queued_call->done.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(queued_call->status.ok()) << queued_call->status;

  const std::string body = scrape();
  EXPECT_EQ(Metric(body, "dytserve_inferences_total" + labels), 2050);
  EXPECT_EQ(Metric(body, "dytserve_batch_executions_total" + labels), 2)
      << "the big batch, then the queued request with the one sent after it";
  const double compute_s = Metric(body, "dytserve_compute_duration_seconds_sum" + labels);
  if (compute_s < 3) {
    std::printf("note: the batches computed in %.2f s, less than the 3 s delay: the test could not tell "
                "delay_from_free from the default here\n", compute_s);
  }
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

TEST(Instances, EachInstanceHasItsCopyAndLoadIsSpread) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-instances-", getpid());
  fs::remove_all(dir);
  testing::AddModel(dir, "vit_dyt", absl::StrCat(DYTSERVE_TEST_REPO, "/vit_dyt/1/model.pt"),
                    testing::VitConfig(8, "dynamic_batching { max_queue_delay_us: 1000 }\n"
                                          "instance_group { count: 2 device: \"cpu\" }\n"));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  std::mt19937_64 rng(5);
  const std::vector<Tensor> inputs = *GenerateInputs(*client->GetModelMetadata("vit_dyt"), {}, &rng);
  constexpr int kRequests = 200;
  absl::BlockingCounter pending(kRequests);
  std::atomic<int> failures{0};
  for (int i = 0; i < kRequests; ++i) {
    client->InferAsync("vit_dyt", inputs, {}, [&](absl::StatusOr<InferResult> r) {
      if (!r.ok()) ++failures;
      pending.DecrementCount();
    });
  }
  pending.Wait();
  EXPECT_EQ(failures.load(), 0);
  const std::string body = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  for (const char* instance : {"0", "1"}) {
    const std::string labels = absl::StrCat("model=\"vit_dyt\",model_instance=\"", instance, "\",version=\"1\"}");
    EXPECT_GT(Metric(body, "dytserve_instance_batch_executions_total{" + labels), 0) << "instance " << instance;
    EXPECT_GT(Metric(body, "dytserve_model_weight_bytes{device=\"cpu\"," + labels), 1e6) << "instance " << instance;
  }
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

TEST(Overload, AFullQueueShedsAtOnceAndServesTheRest) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-shed-", getpid());
  fs::remove_all(dir);
  // A queue of 4 that waits 1.5 s for a fuller batch: a burst overflows it.
  testing::AddModel(dir, "vit_dyt", absl::StrCat(DYTSERVE_TEST_REPO, "/vit_dyt/1/model.pt"),
                    testing::VitConfig(64, "dynamic_batching { max_queue_delay_us: 1500000 max_queue_size: 4 }\n"));
  absl::StatusOr<std::unique_ptr<ServerProcess>> server =
      ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", dir.string())});
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  options.max_attempts = 1;  // see the refusals themselves
  std::unique_ptr<Client> client = *Client::Create(options);
  std::mt19937_64 rng(6);
  const std::vector<Tensor> inputs = *GenerateInputs(*client->GetModelMetadata("vit_dyt"), {}, &rng);
  constexpr int kRequests = 40;
  absl::BlockingCounter pending(kRequests);
  std::atomic<int> ok{0}, shed{0}, other{0};
  std::atomic<int64_t> slowest_shed_us{0};
  for (int i = 0; i < kRequests; ++i) {
    const absl::Time sent = absl::Now();
    client->InferAsync("vit_dyt", inputs, {}, [&, sent](absl::StatusOr<InferResult> r) {
      if (r.ok()) {
        ++ok;
      } else if (r.status().code() == absl::StatusCode::kResourceExhausted &&
                 absl::StrContains(r.status().message(), "max_queue_size 4")) {
        ++shed;
        const int64_t us = absl::ToInt64Microseconds(absl::Now() - sent);
        int64_t prev = slowest_shed_us.load();
        while (us > prev && !slowest_shed_us.compare_exchange_weak(prev, us)) {
        }
      } else {
        ++other;
      }
      pending.DecrementCount();
    });
  }
  pending.Wait();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GE(ok.load(), 4);
  EXPECT_GT(shed.load(), 0);
  EXPECT_EQ(ok.load() + shed.load(), kRequests);
  // Refused at once, not after the 1.5 s the queued requests wait.
  EXPECT_LT(slowest_shed_us.load(), 1000000);
  const std::string body = *testing::HttpGet((*server)->metrics_address(), "/metrics");
  EXPECT_EQ(Metric(body, "dytserve_requests_total{arm=\"\",code=\"RESOURCE_EXHAUSTED\",experiment=\"\",model=\"vit_dyt\","
                         "version=\"1\"}"),
            shed.load());
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dytserve
