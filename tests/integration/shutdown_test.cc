// SIGTERM under load: accepted requests finish, late ones are refused with
// UNAVAILABLE, health turns NOT_SERVING, and the process exits 0.
#include <signal.h>

#include <map>
#include <random>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "support/server_process.h"

namespace dytserve {
namespace {

using testing::ServerProcess;

// A server with the given grace period, a client, and decoder inputs of
// `rows` x 128 tokens: long enough that work is queued when the signal lands.
struct Loaded {
  std::unique_ptr<ServerProcess> server;
  std::unique_ptr<Client> client;
  std::vector<Tensor> inputs;
};

Loaded StartLoaded(int grace_s, const std::string& model, int64_t rows) {
  absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(
      DYTSERVE_SERVER_BIN,
      {absl::StrCat("--model_repository=", DYTSERVE_TEST_REPO), absl::StrCat("--shutdown_grace_s=", grace_s)});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return {};
  ClientOptions options;
  options.endpoints = {(*server)->grpc_address()};
  options.default_deadline = absl::Seconds(120);
  std::unique_ptr<Client> client = *Client::Create(options);
  std::mt19937_64 rng(9);
  GenerateOptions g;
  g.rows = rows;
  g.seq_len = 128;
  g.int_high = 256;
  std::vector<Tensor> inputs = *GenerateInputs(*client->GetModelMetadata(model), g, &rng);
  return {*std::move(server), std::move(client), std::move(inputs)};
}

TEST(GracefulShutdown, AcceptedRequestsFinishAndTheServerExitsZero) {
  Loaded loaded = StartLoaded(60, "llama_rms", 4);
  ASSERT_NE(loaded.server, nullptr);
  ServerProcess* server = loaded.server.get();
  Client* client = loaded.client.get();
  const std::vector<Tensor>& inputs = loaded.inputs;
  ASSERT_TRUE(client->Infer("llama_rms", inputs).ok());

  constexpr int kRequests = 120;
  absl::Mutex mu;
  std::map<absl::StatusCode, int> codes;
  int first_done_at = -1;
  int done = 0;
  absl::BlockingCounter pending(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    client->InferAsync("llama_rms", inputs, {}, [&](absl::StatusOr<InferResult> r) {
      {
        absl::MutexLock lock(&mu);
        ++codes[r.status().code()];
        if (r.ok() && first_done_at < 0) first_done_at = done;
        ++done;
        if (r.ok()) {
          EXPECT_EQ(r->Find("logits")->shape, (std::vector<int64_t>{4, 128, 256}));
        }
      }
      pending.DecrementCount();
    });
  }
  {
    // Signal once the server is busy: at least one answer is back.
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(+[](int* d) { return *d > 0; }, &done));
  }
  kill(server->pid(), SIGTERM);
  pending.Wait();

  // Requests sent after the signal are refused; nothing accepted is dropped.
  absl::StatusOr<InferResult> late = client->Infer("llama_rms", inputs);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable) << late.status();
  EXPECT_EQ(server->Stop(SIGTERM, absl::Seconds(60)), 0) << server->Stderr();

  absl::MutexLock lock(&mu);
  for (const auto& [code, count] : codes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kUnavailable)
        << absl::StatusCodeToString(code) << " x" << count;
  }
  EXPECT_GT(codes[absl::StatusCode::kOk], 0);
  std::printf("after SIGTERM: %d OK, %d UNAVAILABLE of %d\n", codes[absl::StatusCode::kOk],
              codes[absl::StatusCode::kUnavailable], kRequests);
  EXPECT_NE(server->Stderr().find("received signal 15"), std::string::npos);
}

TEST(GracefulShutdown, QueuedWorkBeyondTheGracePeriodIsAnsweredUnavailable) {
  Loaded loaded = StartLoaded(0, "llama_dyt", 16);
  ASSERT_NE(loaded.server, nullptr);
  ServerProcess* server = loaded.server.get();
  Client* client = loaded.client.get();
  const std::vector<Tensor>& inputs = loaded.inputs;
  constexpr int kRequests = 40;
  absl::Mutex mu;
  std::map<absl::StatusCode, int> codes;
  absl::BlockingCounter pending(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    client->InferAsync("llama_dyt", inputs, {}, [&](absl::StatusOr<InferResult> r) {
      {
        absl::MutexLock lock(&mu);
        ++codes[r.status().code()];
      }
      // After the lock: once the count hits zero the test may return and
      // destroy `mu`.
      pending.DecrementCount();
    });
  }
  absl::SleepFor(absl::Milliseconds(300));  // let requests reach the queue; not a timing assertion
  const absl::Time signalled = absl::Now();
  kill(server->pid(), SIGTERM);
  pending.Wait();
  EXPECT_EQ(server->Stop(SIGTERM, absl::Seconds(60)), 0) << server->Stderr();
  std::printf("grace 0: exited %.2fs after SIGTERM\n", absl::ToDoubleSeconds(absl::Now() - signalled));
  absl::MutexLock lock(&mu);
  int answered = 0;
  for (const auto& [code, count] : codes) {
    // Never CANCELLED: clients retry UNAVAILABLE, not CANCELLED.
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kUnavailable)
        << absl::StatusCodeToString(code) << " x" << count;
    answered += count;
  }
  EXPECT_EQ(answered, kRequests) << "every call was answered";
}

}  // namespace
}  // namespace dytserve
