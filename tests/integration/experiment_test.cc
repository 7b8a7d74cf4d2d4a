// A/B experiments against a real server: weighted and sticky routing, live
// changes under load, shadows compared and counted, the admin token, the
// per-arm metrics and the CLI report built from them.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <algorithm>
#include <utility>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "support/async_requests.h"
#include "support/server_process.h"
#include "support/suite_server.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;

constexpr char kRepo[] = DYTSERVE_TEST_REPO;
constexpr char kAdminToken[] = "s3cret-admin-token";
constexpr char kFeedbackToken[] = "label-feed-token";

fs::path TestDir() { return fs::temp_directory_path() / absl::StrCat("dytserve-experiments-", getpid()); }

std::vector<Tensor> Image() { return {Tensor::From<float>("pixel_values", {1, 1, 8, 8}, std::vector<float>(64, 0.5f))}; }
std::vector<Tensor> Tokens(int64_t length) {
  std::vector<int64_t> ids(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) ids[i] = (i * 7 + 3) % 256;
  return {Tensor::From<int64_t>("input_ids", {1, length}, ids)};
}

using testing::Outcome;

// Experiments' requests: the shared sender, 64 in flight.
std::vector<Outcome> RunMany(Client& client, const std::string& name, const std::vector<Tensor>& inputs, int n,
                             const std::function<InferOptions(int)>& options) {
  return testing::SendAsync(client, name, inputs, n, options);
}

InferOptions Keyed(const std::string& key, bool as_metadata) {
  InferOptions o;
  if (as_metadata) {
    o.metadata["x-routing-key"] = key;
  } else {
    o.parameters["routing_key"] = key;
  }
  return o;
}

// Sum of the samples of `family` whose line contains every one of `labels`.
double Sum(const std::string& scrape, const std::string& family, const std::vector<std::string>& labels) {
  double sum = 0;
  size_t start = 0;
  while (start < scrape.size()) {
    size_t end = scrape.find('\n', start);
    if (end == std::string::npos) end = scrape.size();
    const std::string line = scrape.substr(start, end - start);
    start = end + 1;
    if (!absl::StartsWith(line, family + "{")) continue;
    bool all = true;
    for (const std::string& l : labels) all = all && absl::StrContains(line, l);
    if (all) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

class ExperimentTest : public testing::SuiteServerTest<ExperimentTest> {
 public:
  static std::vector<std::string> ServerArgs() {
    const fs::path dir = TestDir();
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* model :
         {"vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn", "llama_rms", "llama_dyt"}) {
      fs::create_directory_symlink(fs::path(kRepo) / model, dir / model);
    }
    // Every copy this shadow gets expires in its queue: shadow errors.
    testing::AddModel(dir.string(), "vit_expiring", absl::StrCat(kRepo, "/vit_dyt/1/model.pt"),
                      testing::VitConfig(8, "dynamic_batching { default_timeout_us: 1 }\n"));
    std::ofstream(dir / "experiments.pbtxt") << R"(
experiments {
  name: "vit"
  arms { name: "ln" model: "vit_ln" weight: 50 }
  arms { name: "dyt" model: "vit_dyt" weight: 50 }
}
experiments {
  name: "llama"
  arms { name: "rms" model: "llama_rms" weight: 100 }
  arms { name: "dyt_shadow" model: "llama_dyt" shadow: true shadow_fraction: 1.0 }
}
# Names a model that does not exist: logged and skipped, the rest load.
experiments {
  name: "broken"
  arms { name: "a" model: "no_such_model" weight: 1 }
}
)";
    std::ofstream(dir / "admin.token") << kAdminToken << "\n";
    std::ofstream(dir / "feedback.token") << kFeedbackToken << "\n";
    return {absl::StrCat("--model_repository=", dir.string()),
            absl::StrCat("--admin_token_file=", (dir / "admin.token").string()),
            absl::StrCat("--feedback_token_file=", (dir / "feedback.token").string()), "--strict_readiness=false"};
  }

 protected:
  static void TearDownTestSuite() {
    SuiteServerTest<ExperimentTest>::TearDownTestSuite();
    fs::remove_all(TestDir());
  }

  std::unique_ptr<Client> MakeClient(const std::string& token = kAdminToken) {
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    options.bearer_token = token;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::string Scrape() {
    absl::StatusOr<std::string> body = testing::HttpGet(server_->metrics_address(), "/metrics");
    EXPECT_TRUE(body.ok()) << body.status();
    return body.ok() ? *body : "";
  }

  static Experiment Split(const std::string& name, uint32_t ln, uint32_t dyt) {
    return {name, {{"ln", "vit_ln", "", ln, false, 0}, {"dyt", "vit_dyt", "", dyt, false, 0}}, {}, {}};
  }
};

TEST_F(ExperimentTest, FileExperimentsLoadAndABrokenOneIsNamed) {
  auto client = MakeClient();
  absl::StatusOr<std::vector<Experiment>> list = client->ListExperiments();
  ASSERT_TRUE(list.ok()) << list.status();
  std::set<std::string> names;
  for (const Experiment& e : *list) names.insert(e.name);
  EXPECT_EQ(names, (std::set<std::string>{"llama", "vit"}));
  EXPECT_TRUE(absl::StrContains(server_->Stderr(), "experiment 'broken' arms[0] ('a'): model 'no_such_model'"))
      << server_->Stderr();
  // An experiment is called like a model: metadata, readiness and health too.
  absl::StatusOr<ModelMetadata> metadata = client->GetModelMetadata("vit");
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  EXPECT_EQ(metadata->name, "vit");
  ASSERT_EQ(metadata->inputs.size(), 1u);
  EXPECT_EQ(metadata->inputs[0].name, "pixel_values");
  EXPECT_EQ(*client->ModelReady("vit"), true);
  EXPECT_EQ(*client->Health("vit"), HealthStatus::kServing);
}

TEST_F(ExperimentTest, ResponseNamesTheArmAndItsModel) {
  auto client = MakeClient();
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<InferResult> r = client->Infer("vit", Image(), Keyed(absl::StrCat("user-", i), false));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->parameters["experiment"], "vit");
    const std::string arm = r->parameters["arm"];
    ASSERT_TRUE(arm == "ln" || arm == "dyt") << arm;
    EXPECT_EQ(r->model_name, arm == "ln" ? "vit_ln" : "vit_dyt");
    EXPECT_EQ(r->model_version, "1");
  }
}

TEST_F(ExperimentTest, SoftmaxFreeModelsJoinTheVitExperimentAsArms) {
  auto client = MakeClient();
  absl::StatusOr<Experiment> vit = client->GetExperiment("vit");
  ASSERT_TRUE(vit.ok()) << vit.status();
  Experiment four = *vit;
  four.arms.push_back({"relu", "vit_relu_attn", "", 50, false, 0});
  four.arms.push_back({"dyt_relu", "vit_dyt_relu_attn", "", 50, false, 0});
  ASSERT_TRUE(client->UpdateExperiment(four).ok());
  std::vector<Outcome> outcomes = RunMany(*client, "vit", Image(), 800, [](int) { return InferOptions{}; });
  std::map<std::string, int> by_arm;
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.status.ok()) << o.status;
    ++by_arm[o.arm];
  }
  for (const char* arm : {"ln", "dyt", "relu", "dyt_relu"}) {
    EXPECT_GT(by_arm[arm], 120) << arm << ": " << by_arm[arm] << " of 800";
  }
  const std::string scrape = Scrape();
  EXPECT_GT(Sum(scrape, "dytserve_requests_total", {"experiment=\"vit\"", "arm=\"dyt_relu\"",
                                                    "model=\"vit_dyt_relu_attn\"", "code=\"OK\""}),
            0);
  ASSERT_TRUE(client->UpdateExperiment(*vit).ok());  // back to the file's 50/50 for the other tests
}

TEST_F(ExperimentTest, WeightedRandomSplitLandsWithinTwoPercent) {
  auto client = MakeClient();
  ASSERT_TRUE(client->CreateExperiment(Split("split7030", 70, 30)).ok());
  EXPECT_EQ(*client->Health("split7030"), HealthStatus::kServing);
  constexpr int kRequests = 10000;
  std::vector<Outcome> outcomes = RunMany(*client, "split7030", Image(), kRequests, [](int) { return InferOptions{}; });
  int ln = 0, failed = 0;
  for (const Outcome& o : outcomes) {
    if (!o.status.ok()) ++failed;
    ln += o.arm == "ln";
  }
  EXPECT_EQ(failed, 0);
  const double share = static_cast<double>(ln) / kRequests;
  EXPECT_NEAR(share, 0.70, 0.02) << ln << " of " << kRequests << " on ln";
  std::printf("70/30 split: %d of %d requests on ln (%.2f%%)\n", ln, kRequests, 100.0 * share);
  // The per-arm series count exactly what the clients saw.
  const std::string scrape = Scrape();
  EXPECT_EQ(Sum(scrape, "dytserve_requests_total", {"experiment=\"split7030\"", "arm=\"ln\"", "code=\"OK\""}), ln);
  EXPECT_EQ(Sum(scrape, "dytserve_requests_total", {"experiment=\"split7030\"", "arm=\"dyt\"", "code=\"OK\""}),
            kRequests - ln);
  EXPECT_TRUE(client->DeleteExperiment("split7030").ok());
}

TEST_F(ExperimentTest, StickyKeysStayAndAWeightChangeMovesFewKeys) {
  auto client = MakeClient();
  ASSERT_TRUE(client->CreateExperiment(Split("sticky", 50, 50)).ok());
  constexpr int kKeys = 10000;
  auto key = [](int i) { return absl::StrCat("customer-", i); };
  std::vector<Outcome> first = RunMany(*client, "sticky", Image(), kKeys, [&](int i) { return Keyed(key(i), false); });
  // The same keys again, half through the metadata instead of the parameter.
  std::vector<Outcome> again =
      RunMany(*client, "sticky", Image(), kKeys, [&](int i) { return Keyed(key(i), i % 2 == 0); });
  int unstable = 0, ln = 0;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(first[i].status.ok() && again[i].status.ok()) << first[i].status << again[i].status;
    unstable += first[i].arm != again[i].arm;
    ln += first[i].arm == "ln";
  }
  EXPECT_EQ(unstable, 0) << "keys that changed arm without any change to the experiment";
  EXPECT_NEAR(static_cast<double>(ln) / kKeys, 0.5, 0.02);

  ASSERT_TRUE(client->UpdateExperiment(Split("sticky", 60, 40)).ok());
  std::vector<Outcome> after = RunMany(*client, "sticky", Image(), kKeys, [&](int i) { return Keyed(key(i), false); });
  int moved = 0, moved_wrong_way = 0;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(after[i].status.ok()) << after[i].status;
    if (after[i].arm == first[i].arm) continue;
    ++moved;
    moved_wrong_way += first[i].arm == "ln";  // ln grew: nothing should leave it
  }
  std::printf("50/50 -> 60/40: %d of %d keys moved (%.2f%%)\n", moved, kKeys, 100.0 * moved / kKeys);
  EXPECT_LE(moved, kKeys * 11 / 100);
  EXPECT_GT(moved, 0);
  EXPECT_EQ(moved_wrong_way, 0);
  EXPECT_TRUE(client->DeleteExperiment("sticky").ok());
}

TEST_F(ExperimentTest, LiveChangesUnderLoadFailNoRequest) {
  auto client = MakeClient();
  ASSERT_TRUE(client->CreateExperiment(Split("live", 50, 50)).ok());
  std::vector<Outcome> outcomes;
  std::thread load([&] {
    outcomes = RunMany(*client, "live", Image(), 4000, [](int i) {
      return i % 3 == 0 ? Keyed(absl::StrCat("k", i % 97), false) : InferOptions{};
    });
  });
  // Weights, arms and shadows change while the load runs.
  const std::vector<Experiment> changes = {
      Split("live", 90, 10),
      Split("live", 0, 100),
      {"live", {{"ln", "vit_ln", "1", 1, false, 0}}},
      {"live",
       {{"ln", "vit_ln", "", 30, false, 0}, {"dyt", "vit_dyt", "", 70, false, 0},
        {"dyt_shadow", "vit_expiring", "", 0, true, 0.5}}},
      {"live", {{"dyt", "vit_dyt", "", 1, false, 0}, {"ln_shadow", "vit_ln", "", 0, true, 1.0}}},
      Split("live", 50, 50),
  };
  int updates = 0;
  for (int round = 0; round < 5; ++round) {
    for (const Experiment& e : changes) {
      absl::StatusOr<Experiment> updated = client->UpdateExperiment(e);
      ASSERT_TRUE(updated.ok()) << updated.status();
      ++updates;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  load.join();
  int failed = 0;
  std::set<std::string> arms;
  for (const Outcome& o : outcomes) {
    if (!o.status.ok()) {
      ++failed;
      ADD_FAILURE() << o.status;
    }
    arms.insert(o.arm);
  }
  EXPECT_EQ(failed, 0) << "of " << outcomes.size() << " requests during " << updates << " updates";
  EXPECT_EQ(arms, (std::set<std::string>{"ln", "dyt"}));
  EXPECT_TRUE(client->DeleteExperiment("live").ok());
  // Deleted: the name is free again, and calling it is NOT_FOUND.
  EXPECT_EQ(client->Infer("live", Image()).status().code(), absl::StatusCode::kNotFound);
}

// Labels arrive later, keyed by the response's id, and are credited to the
// arm that served the request: correct when they match its top-1.
TEST_F(ExperimentTest, FeedbackCreditsTheArmThatServedEachRequest) {
  std::unique_ptr<Client> client = MakeClient();
  std::unique_ptr<Client> feedback = MakeClient(kFeedbackToken);
  ASSERT_TRUE(client && feedback);
  const std::string before = Scrape();

  // The server names requests that come without an id; a client's id is kept.
  absl::StatusOr<InferResult> first = client->Infer("vit", Image());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->id.size(), 32u) << first->id;
  InferOptions named;
  named.request_id = "client-chosen-id-1";
  absl::StatusOr<InferResult> second = client->Infer("vit", Image(), named);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->id, "client-chosen-id-1");

  auto top1 = [](const InferResult& r) {
    const Tensor* logits = r.Find("logits");
    const std::vector<float> v = *logits->As<float>();
    return static_cast<int64_t>(std::max_element(v.begin(), v.begin() + logits->shape.back()) - v.begin());
  };
  Client::FeedbackOutcome right, wrong;
  right.label = top1(*first);
  wrong.label = top1(*second) + 1;
  EXPECT_EQ(*feedback->Feedback(first->id, right), true);
  EXPECT_EQ(*feedback->Feedback(second->id, wrong), true);
  EXPECT_EQ(*feedback->Feedback(first->id, right), false) << "a duplicate is not counted twice";
  EXPECT_EQ(*feedback->Feedback("no-such-request", right), false);

  // Feedback has its own token: the admin's does not open it, nor does none.
  EXPECT_EQ(client->Feedback(first->id, right).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(MakeClient("")->Feedback(first->id, right).status().code(), absl::StatusCode::kUnauthenticated);
  Client::FeedbackOutcome too_big;
  too_big.reward = 1.5;
  absl::StatusOr<bool> refused = feedback->Feedback(second->id, too_big);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("reward"), std::string::npos) << refused.status();

  // REST: a reward for a third request, and bad bodies named.
  absl::StatusOr<InferResult> third = client->Infer("vit", Image());
  ASSERT_TRUE(third.ok());
  const std::string bearer = absl::StrCat("Authorization: Bearer ", kFeedbackToken);
  absl::StatusOr<testing::HttpResult> rest = testing::HttpCall(
      server_->http_address(), "POST", "/v2/feedback", absl::StrCat(R"({"id":")", third->id, R"(","reward":0.75})"),
      {bearer, "Content-Type: application/json"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(rest->code, 200) << rest->body;
  EXPECT_NE(rest->body.find("\"recorded\":true"), std::string::npos) << rest->body;
  for (const auto& [body, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"id":"x","label":1,"reward":0.5})", "exactly one"},
           {R"({"id":"x","label":"cat"})", "label"},
           {R"({"id":"x","score":1})", "score"},
           {R"({"label":1})", "id"},
           {"not json", "body"}}) {
    absl::StatusOr<testing::HttpResult> bad = testing::HttpCall(server_->http_address(), "POST", "/v2/feedback", body,
                                                                {bearer, "Content-Type: application/json"});
    ASSERT_TRUE(bad.ok());
    EXPECT_EQ(bad->code, 400) << body;
    EXPECT_NE(bad->body.find(field), std::string::npos) << body << " -> " << bad->body;
  }
  absl::StatusOr<testing::HttpResult> admin_token = testing::HttpCall(
      server_->http_address(), "POST", "/v2/feedback", R"({"id":"x","label":1})",
      {absl::StrCat("Authorization: Bearer ", kAdminToken)});
  ASSERT_TRUE(admin_token.ok());
  EXPECT_EQ(admin_token->code, 403);

  const std::string after = Scrape();
  auto delta = [&](const std::vector<std::string>& labels) {
    return Sum(after, "dytserve_feedback_total", labels) - Sum(before, "dytserve_feedback_total", labels);
  };
  const std::string arm1 = absl::StrCat("arm=\"", first->parameters["arm"], "\"");
  const std::string arm2 = absl::StrCat("arm=\"", second->parameters["arm"], "\"");
  const std::string arm3 = absl::StrCat("arm=\"", third->parameters["arm"], "\"");
  EXPECT_EQ(delta({arm1, "experiment=\"vit\"", "outcome=\"correct\""}), 1.0);
  EXPECT_EQ(delta({arm2, "experiment=\"vit\"", "outcome=\"incorrect\""}), 1.0);
  EXPECT_EQ(delta({arm3, "experiment=\"vit\"", "outcome=\"reward\""}), 1.0);
  EXPECT_EQ(delta({"outcome=\"duplicate\""}), 1.0);
  EXPECT_EQ(delta({"outcome=\"unknown\""}), 1.0) << "no-such-request; refused calls never reach the store";
  const double reward_sum = Sum(after, "dytserve_feedback_reward_sum", {arm3}) -
                            Sum(before, "dytserve_feedback_reward_sum", {arm3});
  EXPECT_DOUBLE_EQ(reward_sum, 0.75);
}

TEST_F(ExperimentTest, ShadowIsComparedAndCountedAndNeverSeen) {
  auto client = MakeClient();
  const std::string before = Scrape();
  constexpr int kRequests = 60;
  std::vector<Outcome> outcomes = RunMany(*client, "llama", Tokens(12), kRequests, [](int) { return InferOptions{}; });
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.arm, "rms");  // the shadow never answers
    EXPECT_EQ(o.model, "llama_rms");
  }
  // Shadows finish on their own time: wait until each is compared.
  const std::vector<std::string> shadow = {"experiment=\"llama\"", "arm=\"dyt_shadow\""};
  auto compared = [&](const std::string& s) { return Sum(s, "dytserve_shadow_max_abs_difference_count", shadow); };
  std::string after;
  for (int i = 0; i < 100; ++i) {
    after = Scrape();
    if (compared(after) - compared(before) >= kRequests) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(compared(after) - compared(before), kRequests);
  auto delta = [&](const std::string& family, std::vector<std::string> labels) {
    labels.insert(labels.end(), shadow.begin(), shadow.end());
    return Sum(after, family, labels) - Sum(before, family, labels);
  };
  EXPECT_EQ(delta("dytserve_shadow_requests_total", {"code=\"OK\""}), kRequests);
  // One arg-max per position: 12 tokens per request.
  EXPECT_EQ(delta("dytserve_shadow_top1_comparisons_total", {"output=\"logits\""}), 12 * kRequests);
  // Shadow traffic is kept out of the client-facing series.
  EXPECT_EQ(Sum(after, "dytserve_requests_total", shadow), 0);
  // The twins differ (a random-init decoder and its DyT conversion): a real
  // comparison observes differences above rounding.
  EXPECT_GT(delta("dytserve_shadow_max_abs_difference_sum", {"output=\"logits\""}), 0);
}

TEST_F(ExperimentTest, ShadowErrorsAreCountedNotSurfaced) {
  auto client = MakeClient();
  ASSERT_TRUE(client
                  ->CreateExperiment({"expiring",
                                      {{"ln", "vit_ln", "", 1, false, 0},
                                       {"doomed", "vit_expiring", "", 0, true, 1.0}}})
                  .ok());
  constexpr int kRequests = 40;
  std::vector<Outcome> outcomes = RunMany(*client, "expiring", Image(), kRequests, [](int) { return InferOptions{}; });
  for (const Outcome& o : outcomes) EXPECT_TRUE(o.status.ok()) << o.status;
  const std::vector<std::string> doomed = {"experiment=\"expiring\"", "arm=\"doomed\""};
  double errors = 0;
  for (int i = 0; i < 100 && errors < kRequests; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    const std::string s = Scrape();
    errors = Sum(s, "dytserve_shadow_requests_total", doomed) -
             Sum(s, "dytserve_shadow_requests_total", {"experiment=\"expiring\"", "arm=\"doomed\"", "code=\"OK\""});
  }
  EXPECT_EQ(errors, kRequests);
  const std::string s = Scrape();
  EXPECT_EQ(Sum(s, "dytserve_shadow_requests_total", {"arm=\"doomed\"", "code=\"DEADLINE_EXCEEDED\""}), kRequests);
  EXPECT_EQ(Sum(s, "dytserve_shadow_max_abs_difference_count", doomed), 0);
  EXPECT_TRUE(client->DeleteExperiment("expiring").ok());
}

TEST_F(ExperimentTest, ControlCallsNeedTheAdminToken) {
  const std::string scrape_before = Scrape();
  auto anonymous = MakeClient("");
  auto wrong = MakeClient("not-the-token");
  EXPECT_EQ(anonymous->ListExperiments().status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong->ListExperiments().status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(wrong->CreateExperiment(Split("sneaky", 1, 1)).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(anonymous->DeleteExperiment("vit").code(), absl::StatusCode::kUnauthenticated);
  // Nothing changed, inference needs no admin token, and the token never
  // shows up in what the server says.
  auto admin = MakeClient();
  EXPECT_EQ(admin->GetExperiment("sneaky").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(admin->GetExperiment("vit").ok());
  EXPECT_TRUE(anonymous->Infer("vit", Image()).ok());
  absl::Status denied = wrong->ListExperiments().status();
  EXPECT_FALSE(absl::StrContains(denied.message(), kAdminToken));
  EXPECT_FALSE(absl::StrContains(server_->Stderr(), kAdminToken));
  const std::string scrape = Scrape();
  auto refusals = [](const std::string& s, const char* code) {
    return Sum(s, "dytserve_auth_refusals_total", {"service=\"dytserve.v1.Control\"", code});
  };
  EXPECT_EQ(refusals(scrape, "UNAUTHENTICATED") - refusals(scrape_before, "UNAUTHENTICATED"), 2);
  EXPECT_EQ(refusals(scrape, "PERMISSION_DENIED") - refusals(scrape_before, "PERMISSION_DENIED"), 3);
}

TEST_F(ExperimentTest, BadExperimentsAndRequestsAreRefusedByName) {
  auto client = MakeClient();
  struct Case {
    Experiment experiment;
    absl::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"vit_ln", {{"a", "vit_ln", "", 1, false, 0}}}, absl::StatusCode::kAlreadyExists, "a model has that name"},
      {{"vit", {{"a", "vit_ln", "", 1, false, 0}}}, absl::StatusCode::kAlreadyExists, "exists"},
      {{"bad name!", {{"a", "vit_ln", "", 1, false, 0}}}, absl::StatusCode::kInvalidArgument, "experiment name"},
      {{"e", {{"a", "vit_ln", "", 0, false, 0}}}, absl::StatusCode::kInvalidArgument, "positive weight"},
      {{"e", {{"a", "vit_ln", "", 1, false, 0}, {"a", "vit_dyt", "", 1, false, 0}}},
       absl::StatusCode::kInvalidArgument, "arms[1] ('a'): name is used by another arm"},
      {{"e", {{"a", "vit_ln", "7", 1, false, 0}}}, absl::StatusCode::kInvalidArgument, "arms[0] ('a')"},
      {{"e", {{"a", "vit_ln", "x", 1, false, 0}}}, absl::StatusCode::kInvalidArgument, "not a version number"},
      {{"e", {{"a", "vit_ln", "", 1, false, 0}, {"b", "llama_rms", "", 1, false, 0}}},
       absl::StatusCode::kInvalidArgument, "arms[1] ('b'): model 'llama_rms' input 'input_ids' differs"},
      {{"e", {{"a", "vit_ln", "", 1, false, 0}, {"s", "vit_ln", "", 0, true, 0.5}}},
       absl::StatusCode::kInvalidArgument, "a shadow needs a model"},
      {{"e", {{"a", "vit_ln", "", 1, false, 0}, {"s", "vit_dyt", "", 0, true, 1.5}}},
       absl::StatusCode::kInvalidArgument, "shadow_fraction 1.5"},
      {{"e", {{"a", "vit_ln", "", 1, false, 0}, {"s", "vit_dyt", "", 3, true, 0.5}}},
       absl::StatusCode::kInvalidArgument, "a shadow has no weight"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Experiment> created = client->CreateExperiment(c.experiment);
    EXPECT_EQ(created.status().code(), c.code) << c.experiment.name << ": " << created.status();
    EXPECT_TRUE(absl::StrContains(created.status().message(), c.message)) << created.status();
  }
  EXPECT_EQ(client->UpdateExperiment(Split("nope", 1, 1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->DeleteExperiment("nope").code(), absl::StatusCode::kNotFound);
  // Requests: an experiment has no versions; routing_key must be a string.
  InferOptions versioned;
  versioned.model_version = "1";
  EXPECT_EQ(client->Infer("vit", Image(), versioned).status().code(), absl::StatusCode::kInvalidArgument);
  // The server is fine after all of it.
  EXPECT_TRUE(client->Infer("vit", Image()).ok());
}

TEST_F(ExperimentTest, CliManagesExperimentsAndReportsPerArm) {
  const std::string token_file = (TestDir() / "admin.token").string();
  const std::string cli = absl::StrCat(DYTSERVE_CLI_BIN, " --target=", server_->grpc_address(),
                                       " --token_file=", token_file, " ");
  testing::CommandResult created =
      testing::RunCommand(cli + "experiment create clitest --arms=ln=vit_ln:1,dyt=vit_dyt@1:3");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_TRUE(absl::StrContains(created.output, "\"name\":\"dyt\",\"model\":\"vit_dyt\",\"version\":\"1\",\"weight\":3"))
      << created.output;
  testing::CommandResult weights = testing::RunCommand(cli + "experiment weights clitest ln=3,dyt=1");
  ASSERT_EQ(weights.exit_code, 0) << weights.output;
  EXPECT_TRUE(absl::StrContains(weights.output, "\"name\":\"ln\",\"model\":\"vit_ln\",\"version\":\"\",\"weight\":3"))
      << weights.output;
  auto client = MakeClient();
  std::vector<Outcome> outcomes = RunMany(*client, "clitest", Image(), 400, [](int) { return InferOptions{}; });
  for (const Outcome& o : outcomes) ASSERT_TRUE(o.status.ok()) << o.status;

  const std::string metrics = absl::StrCat("http://", server_->metrics_address(), "/metrics");
  testing::CommandResult report =
      testing::RunCommand(cli + "experiment report clitest --format=json --metrics=" + metrics);
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_TRUE(absl::StrContains(report.output, "\"baseline\":\"ln\"")) << report.output;
  EXPECT_TRUE(absl::StrContains(report.output, "\"arm\":\"dyt\",\"mean_latency_difference_s\":{\"estimate\":"))
      << report.output;
  EXPECT_TRUE(absl::StrContains(report.output, "\"verdict\":\"latency: ")) << report.output;
  testing::CommandResult text = testing::RunCommand(cli + "experiment report clitest --metrics=" + metrics);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_TRUE(absl::StrContains(text.output, "dyt vs ln:")) << text.output;
  EXPECT_TRUE(absl::StrContains(text.output, "95% CI")) << text.output;

  testing::CommandResult shadow_report = testing::RunCommand(cli + "experiment report llama --metrics=" + metrics);
  EXPECT_EQ(shadow_report.exit_code, 0) << shadow_report.output;
  testing::CommandResult deleted = testing::RunCommand(cli + "experiment delete clitest");
  EXPECT_EQ(deleted.exit_code, 0) << deleted.output;
  testing::CommandResult missing = testing::RunCommand(cli + "experiment get clitest");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(missing.output, "NOT_FOUND")) << missing.output;
  testing::CommandResult bad_spec = testing::RunCommand(cli + "experiment create x --arms=ln=vit_ln");
  EXPECT_NE(bad_spec.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(bad_spec.output, "is not ARM=MODEL[@VERSION]:WEIGHT")) << bad_spec.output;
}

// A guardrail on accuracy: the dyt arm's labels all disagree with its
// answers, so it is taken out (logged, counted, its share 0), every request
// then goes to ln, and the CLI brings it back.
TEST_F(ExperimentTest, AnAccuracyGuardrailTakesABadArmOutAndTheCliResumesIt) {
  std::unique_ptr<Client> client = MakeClient();
  std::unique_ptr<Client> feedback = MakeClient(kFeedbackToken);
  Experiment e = Split("guarded", 1, 1);
  e.guardrails.push_back({"accuracy", 0, 0, 0, 20});
  ASSERT_TRUE(client->CreateExperiment(e).ok());
  absl::StatusOr<Experiment> stored = client->GetExperiment("guarded");
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->guardrails.size(), 1u);
  EXPECT_EQ(stored->guardrails[0].kind, "accuracy");

  int dyt_after_trip = 0;
  bool tripped = false;
  for (int i = 0; i < 400; ++i) {
    absl::StatusOr<InferResult> r = client->Infer("guarded", Image());
    ASSERT_TRUE(r.ok()) << r.status();
    if (tripped && r->parameters["arm"] == "dyt") ++dyt_after_trip;
    const std::vector<float> v = *r->Find("logits")->As<float>();
    const int64_t top1 = std::max_element(v.begin(), v.begin() + r->Find("logits")->shape.back()) - v.begin();
    Client::FeedbackOutcome outcome;
    outcome.label = r->parameters["arm"] == "ln" ? top1 : top1 + 1;
    ASSERT_TRUE(*feedback->Feedback(r->id, outcome));
    absl::StatusOr<std::vector<ArmStatus>> state = client->GetExperimentState("guarded");
    ASSERT_TRUE(state.ok());
    tripped = !(*state)[1].tripped.empty();
  }
  EXPECT_TRUE(tripped);
  absl::StatusOr<std::vector<ArmStatus>> state = client->GetExperimentState("guarded");
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->size(), 2u);
  EXPECT_NE((*state)[1].tripped.find("accuracy"), std::string::npos) << (*state)[1].tripped;
  EXPECT_EQ((*state)[1].share, 0);
  EXPECT_EQ(dyt_after_trip, 0) << "no request reached dyt after it was taken out";
  const std::string scrape = Scrape();
  EXPECT_EQ(Sum(scrape, "dytserve_experiment_arm_tripped", {"experiment=\"guarded\"", "arm=\"dyt\""}), 1);
  EXPECT_EQ(Sum(scrape, "dytserve_experiment_guardrail_trips_total",
                {"experiment=\"guarded\"", "arm=\"dyt\"", "rule=\"accuracy\""}),
            1);
  EXPECT_TRUE(absl::StrContains(server_->Stderr(), "guardrail accuracy took arm 'dyt' out")) << server_->Stderr();

  const std::string cli = absl::StrCat(DYTSERVE_CLI_BIN, " --target=", server_->grpc_address(),
                                       " --token_file=", (TestDir() / "admin.token").string(), " ");
  testing::CommandResult resumed = testing::RunCommand(cli + "experiment resume guarded --arm=dyt");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  testing::CommandResult shown = testing::RunCommand(cli + "experiment state guarded");
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_TRUE(absl::StrContains(shown.output, "\"arm\":\"dyt\",\"share\":0.5,\"tripped\":\"\"")) << shown.output;
  testing::CommandResult nope = testing::RunCommand(cli + "experiment resume guarded --arm=nope");
  EXPECT_NE(nope.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(nope.output, "no serving arm 'nope'")) << nope.output;
  EXPECT_EQ(Sum(Scrape(), "dytserve_experiment_arm_tripped", {"experiment=\"guarded\"", "arm=\"dyt\""}), 0);

  // Bad rules are refused with the field named.
  Experiment bad = Split("badrules", 1, 1);
  bad.guardrails.push_back({"p99_latency", 0, 0, 0, 0});
  absl::StatusOr<Experiment> refused = client->CreateExperiment(bad);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "guardrails[0].p99_ms")) << refused.status();
  bad.guardrails.clear();
  bad.policy.kind = "thompson";
  bad.policy.min_share = 0.7;
  refused = client->CreateExperiment(bad);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "policy.min_share")) << refused.status();
  bad.policy.kind = "greedy";
  refused = client->CreateExperiment(bad);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "policy 'greedy'")) << refused.status();
  EXPECT_TRUE(client->DeleteExperiment("guarded").ok());
}

// What a Thompson experiment learned survives a restart through
// --experiment_state_file.
TEST(ExperimentStateFile, APolicysFiguresSurviveARestart) {
  const fs::path dir = fs::temp_directory_path() / absl::StrCat("dytserve-state-file-", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir / "repo");
  for (const char* model : {"vit_ln", "vit_dyt"}) fs::create_directory_symlink(fs::path(kRepo) / model, dir / "repo" / model);
  std::ofstream(dir / "repo" / "experiments.pbtxt") << R"(
experiments {
  name: "vit"
  arms { name: "ln" model: "vit_ln" weight: 50 }
  arms { name: "dyt" model: "vit_dyt" weight: 50 }
  policy { kind: THOMPSON reward: SLO slo_ms: 60000 min_share: 0.05 }
}
)";
  const std::vector<std::string> args = {absl::StrCat("--model_repository=", (dir / "repo").string()),
                                         absl::StrCat("--experiment_state_file=", (dir / "state.pbtxt").string())};
  double trials_before = 0;
  {
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server = testing::ServerProcess::Start(DYTSERVE_SERVER_BIN, args);
    ASSERT_TRUE(server.ok()) << server.status();
    ClientOptions options;
    options.endpoints = {(*server)->grpc_address()};
    std::unique_ptr<Client> client = *Client::Create(options);
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(client->Infer("vit", Image()).ok());
    absl::StatusOr<std::vector<ArmStatus>> state = client->GetExperimentState("vit");
    ASSERT_TRUE(state.ok()) << state.status();
    for (const ArmStatus& a : *state) trials_before += a.reward_trials;
    EXPECT_EQ(trials_before, 50) << "every answer within the SLO is a reward trial";
    EXPECT_EQ((*server)->Stop(SIGTERM), 0) << (*server)->Stderr();
  }
  ASSERT_TRUE(fs::exists(dir / "state.pbtxt"));
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> again = testing::ServerProcess::Start(DYTSERVE_SERVER_BIN, args);
  ASSERT_TRUE(again.ok()) << again.status();
  ClientOptions options;
  options.endpoints = {(*again)->grpc_address()};
  std::unique_ptr<Client> client = *Client::Create(options);
  absl::StatusOr<std::vector<ArmStatus>> state = client->GetExperimentState("vit");
  ASSERT_TRUE(state.ok()) << state.status();
  double trials_after = 0;
  for (const ArmStatus& a : *state) trials_after += a.reward_trials;
  EXPECT_EQ(trials_after, trials_before);
  (*again)->Stop(SIGTERM);

  // A state file that does not parse stops the start, naming the file.
  std::ofstream(dir / "state.pbtxt") << "experiments { nonsense: 1 }\n";
  absl::StatusOr<std::unique_ptr<testing::ServerProcess>> broken = testing::ServerProcess::Start(DYTSERVE_SERVER_BIN, args);
  EXPECT_FALSE(broken.ok());
  EXPECT_TRUE(absl::StrContains(broken.status().message(), "state.pbtxt")) << broken.status();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dytserve
