// Repository control under load: load a new version, reload, fail to load
// (the old version keeps serving), unload (draining), load a new model, and
// refuse names outside the repository. A real server, real clients.
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "dytserve/client.h"
#include "support/server_process.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;
using testing::ServerProcess;

constexpr char kRepo[] = DYTSERVE_TEST_REPO;

std::vector<Tensor> Image() { return {Tensor::From<float>("pixel_values", {1, 1, 8, 8}, std::vector<float>(64, 0.1f))}; }

// Steady closed-loop load on one name from `threads` threads until Stop();
// remembers every failure's code and which versions answered.
class Load {
 public:
  Load(Client* client, std::string name, int threads) : client_(client), name_(std::move(name)) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        while (!stop_.load()) {
          absl::StatusOr<InferResult> r = client_->Infer(name_, Image());
          absl::MutexLock lock(&mu_);
          ++sent_;
          if (r.ok()) {
            ++versions_[r->model_version];
          } else {
            ++failures_[r.status().code()];
            if (first_failure_.empty()) first_failure_ = r.status().ToString();
          }
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  std::map<absl::StatusCode, int> failures() {
    absl::MutexLock lock(&mu_);
    return failures_;
  }
  std::map<std::string, int> versions() {
    absl::MutexLock lock(&mu_);
    return versions_;
  }
  std::string first_failure() {
    absl::MutexLock lock(&mu_);
    return first_failure_;
  }

 private:
  Client* const client_;
  const std::string name_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  int sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<absl::StatusCode, int> failures_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> versions_ ABSL_GUARDED_BY(mu_);
  std::string first_failure_ ABSL_GUARDED_BY(mu_);
};

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / absl::StrCat("dytserve-reload-", getpid());
    fs::remove_all(dir_);
    // Real copies, not symlinks: a load call refuses models outside the repository.
    for (const char* model : {"vit_ln", "vit_dyt"}) {
      fs::create_directories(repo() / model / "1");
      fs::copy_file(fs::path(kRepo) / model / "config.pbtxt", repo() / model / "config.pbtxt");
      fs::copy_file(fs::path(kRepo) / model / "1/model.pt", repo() / model / "1/model.pt");
    }
    std::ofstream(repo() / "experiments.pbtxt")
        << "experiments { name: \"ab\" arms { name: \"ln\" model: \"vit_ln\" weight: 1 }"
           " arms { name: \"dyt\" model: \"vit_dyt\" weight: 1 } }\n";
    absl::StatusOr<std::unique_ptr<ServerProcess>> server =
        ServerProcess::Start(DYTSERVE_SERVER_BIN, {absl::StrCat("--model_repository=", repo().string())});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ClientOptions options;
    options.endpoints = {server_->grpc_address()};
    client_ = *Client::Create(options);
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Stderr();
    }
    fs::remove_all(dir_);
  }
  fs::path repo() const { return dir_ / "repo"; }

  fs::path dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ReloadTest, LoadReloadFailAndUnloadUnderLoadFailNoRequestOfModelsThatStay) {
  Load ln(client_.get(), "vit_ln", 3);
  Load dyt(client_.get(), "vit_dyt", 2);
  Load ab(client_.get(), "ab", 1);
  absl::SleepFor(absl::Milliseconds(300));

  // A new version: the DyT weights as vit_ln version 2 (same inputs/outputs).
  fs::create_directories(repo() / "vit_ln/2");
  fs::copy_file(repo() / "vit_dyt/1/model.pt", repo() / "vit_ln/2/model.pt");
  absl::StatusOr<std::vector<int64_t>> loaded = client_->LoadModel("vit_ln");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(*loaded, (std::vector<int64_t>{2}));  // version_policy latest 1: version 1 drained and gone
  absl::SleepFor(absl::Milliseconds(300));

  // Reloading the same model swaps in fresh copies, again without a failure.
  ASSERT_TRUE(client_->LoadModel("vit_ln").ok());
  absl::SleepFor(absl::Milliseconds(200));

  // A version that does not load: the call fails, version 2 keeps serving.
  fs::create_directories(repo() / "vit_ln/3");
  std::ofstream(repo() / "vit_ln/3/model.pt") << "not a TorchScript archive";
  absl::StatusOr<std::vector<int64_t>> broken = client_->LoadModel("vit_ln");
  EXPECT_FALSE(broken.ok());
  EXPECT_TRUE(absl::StrContains(broken.status().message(), "model 'vit_ln': version 3")) << broken.status();
  fs::remove_all(repo() / "vit_ln/3");
  // A config that does not parse: same.
  fs::copy_file(repo() / "vit_ln/config.pbtxt", dir_ / "config.bak");
  std::ofstream(repo() / "vit_ln/config.pbtxt", std::ios::app) << "\nno_such_field: 1\n";
  absl::StatusOr<std::vector<int64_t>> bad_config = client_->LoadModel("vit_ln");
  EXPECT_EQ(bad_config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad_config.status().message(), "no_such_field")) << bad_config.status();
  fs::copy_file(dir_ / "config.bak", repo() / "vit_ln/config.pbtxt", fs::copy_options::overwrite_existing);
  absl::SleepFor(absl::Milliseconds(200));

  // Unload vit_dyt while its load runs: requests already queued finish; new
  // ones get NOT_FOUND; the experiment over it says UNAVAILABLE until it is back.
  ASSERT_TRUE(client_->UnloadModel("vit_dyt").ok());
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(client_->Infer("ab", Image()).status().code(), absl::StatusCode::kUnavailable);
  dyt.Stop();
  ab.Stop();
  ASSERT_TRUE(client_->LoadModel("vit_dyt").ok());
  EXPECT_TRUE(client_->Infer("ab", Image()).ok()) << "the experiment routes again once its model is back";
  absl::SleepFor(absl::Milliseconds(200));
  ln.Stop();

  EXPECT_TRUE(ln.failures().empty()) << ln.first_failure();
  EXPECT_GT(ln.versions()["1"], 0);
  EXPECT_GT(ln.versions()["2"], 0);
  std::printf("vit_ln: %d requests across the reloads, versions 1: %d, 2: %d, none failed\n", ln.sent(),
              ln.versions()["1"], ln.versions()["2"]);
  // The model that went: only NOT_FOUND (after it went), never a request
  // cut off in its queue.
  std::map<absl::StatusCode, int> dyt_failures = dyt.failures();
  for (const auto& [code, n] : dyt_failures) {
    EXPECT_EQ(code, absl::StatusCode::kNotFound) << n << " x " << absl::StatusCodeToString(code) << ": "
                                                 << dyt.first_failure();
  }
  EXPECT_GT(dyt_failures[absl::StatusCode::kNotFound], 0);
  for (const auto& [code, n] : ab.failures()) {
    EXPECT_EQ(code, absl::StatusCode::kUnavailable) << n << " x " << absl::StatusCodeToString(code);
  }
}

TEST_F(ReloadTest, IndexAndNewModelsAndNamesOutsideTheRepository) {
  // A model added to the repository after start.
  fs::create_directories(repo() / "vit_new/1");
  fs::copy_file(repo() / "vit_ln/1/model.pt", repo() / "vit_new/1/model.pt");
  std::string config;
  {
    std::ifstream in(repo() / "vit_ln/config.pbtxt");
    config.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(repo() / "vit_new/config.pbtxt") << absl::StrCat("name: \"vit_new\"\n", config.substr(config.find('\n') + 1));
  EXPECT_EQ(client_->Infer("vit_new", Image()).status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::vector<int64_t>> loaded = client_->LoadModel("vit_new");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(client_->Infer("vit_new", Image()).ok());
  EXPECT_EQ(*client_->Health("vit_new"), HealthStatus::kServing);

  ASSERT_TRUE(client_->UnloadModel("vit_dyt").ok());
  EXPECT_EQ(*client_->Health("vit_dyt"), HealthStatus::kNotServing);
  absl::StatusOr<std::vector<RepositoryModel>> index = client_->RepositoryIndex();
  ASSERT_TRUE(index.ok()) << index.status();
  std::map<std::string, RepositoryModel> by_name;
  for (const RepositoryModel& m : *index) by_name[m.name] = m;
  EXPECT_EQ(by_name["vit_new"].state, "READY");
  EXPECT_EQ(by_name["vit_ln"].versions, (std::vector<int64_t>{1}));
  EXPECT_EQ(by_name["vit_dyt"].state, "UNAVAILABLE");
  EXPECT_EQ(by_name["vit_dyt"].reason, "unloaded");
  EXPECT_EQ(client_->UnloadModel("vit_dyt").code(), absl::StatusCode::kNotFound);

  // Names and paths outside the repository are refused before anything is read.
  const fs::path outside = dir_ / "outside_model";
  fs::create_directories(outside / "1");
  fs::copy_file(repo() / "vit_ln/1/model.pt", outside / "1/model.pt");
  fs::copy_file(repo() / "vit_ln/config.pbtxt", outside / "config.pbtxt");
  fs::create_directory_symlink(outside, repo() / "escape");
  for (const char* name : {"..", "../outside_model", "vit_ln/1", "", "escape"}) {
    absl::StatusOr<std::vector<int64_t>> refused = client_->LoadModel(name);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << "'" << name << "': " << refused.status();
  }
  EXPECT_TRUE(absl::StrContains(client_->LoadModel("escape").status().message(), "leads outside the repository"));
  EXPECT_EQ(client_->LoadModel("no_such_model").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->LoadModel("ab").status().code(), absl::StatusCode::kInvalidArgument) << "an experiment";
  // And the server is fine.
  EXPECT_TRUE(client_->Infer("vit_ln", Image()).ok());
}

}  // namespace
}  // namespace dytserve
