// A model that fails on some inputs, or runs out of memory above some batch
// size, fails only what it must: RunInferBatch with a real TorchScript module
// (compiled here from source) that raises the errors on cue.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/script.h>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "server/core/infer_task.h"
#include "server/core/model.h"
#include "server/core/model_config.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {
namespace {

namespace fs = std::filesystem;

// Doubles its input. Raises the CUDA allocator's own message for batches of
// more than 2 rows (what a real GPU does past its memory), and a model error
// for any negative value (a bad request).
constexpr char kSource[] = R"py(
def forward(self, x):
    assert x.size(0) <= 2, "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"
    assert not bool((x < 0).any()), "negative input"
    return x * 2.0
)py";

class FaultIsolation : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() / ("dytserve-fault-" + std::to_string(getpid()) + ".pt");
    torch::jit::Module module("Faulty");
    module.define(kSource);
    module.save(path_.string());
    v1::ModelConfig config;
    absl::StatusOr<v1::ModelConfig> parsed = ParseModelConfig(
        "max_batch_size: 8\n"
        "input { name: \"x\" data_type: TYPE_FP32 dims: [2] }\n"
        "output { name: \"y\" data_type: TYPE_FP32 dims: [2] }\n"
        "optimization { freeze: false }\n",
        "test");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::StatusOr<ModelSpec> spec = BuildModelSpec(*parsed, "faulty");
    ASSERT_TRUE(spec.ok()) << spec.status();
    spec_ = *spec;
    absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(path_, ModelFormat::kTorchScript, spec_, false);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    model_metrics_ = metrics_.ForModel("faulty", "1", {"cpu"});
  }
  void TearDown() override { fs::remove(path_); }

  struct Outcome {
    absl::Status status = absl::UnknownError("never completed");
    inference::ModelInferResponse response;
  };

  // One task of `rows` rows, each row {value, value}.
  std::unique_ptr<BatchTask> Task(int64_t rows, float value, Outcome* outcome) {
    DecodedRequest request;
    request.inputs.push_back(at::full({rows, 2}, value));
    request.rows = rows;
    request.outputs = {0};
    InferCall call;
    call.done = [outcome](absl::Status s) { outcome->status = std::move(s); };
    return std::make_unique<InferTask>(std::move(request), &outcome->response, std::move(call), model_metrics_,
                                       model_metrics_->direct(), absl::Now());
  }

  static float FirstValue(const Outcome& o) {
    float v = 0;
    std::memcpy(&v, o.response.raw_output_contents(0).data(), sizeof(v));
    return v;
  }

  fs::path path_;
  ModelSpec spec_;
  std::unique_ptr<Model> model_;
  ServerMetrics metrics_{MetricsOptions{}, {"test", "test", false}};
  std::shared_ptr<ModelMetrics> model_metrics_;
};

TEST_F(FaultIsolation, OutOfMemoryBatchIsSplitInHalvesAndEveryRequestSucceeds) {
  std::vector<Outcome> outcomes(4);
  Batcher::Batch batch;
  for (int i = 0; i < 4; ++i) batch.push_back(Task(1, static_cast<float>(i + 1), &outcomes[i]));
  RunInferBatch(*model_, 0, *model_metrics_, std::move(batch));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(outcomes[i].status.ok()) << i << ": " << outcomes[i].status;
    EXPECT_EQ(FirstValue(outcomes[i]), 2.0f * (i + 1)) << "each request gets its own rows back";
  }
}

TEST_F(FaultIsolation, WhatRunsOutOfMemoryEvenAloneIsResourceExhausted) {
  Outcome big, small;
  Batcher::Batch batch;
  batch.push_back(Task(3, 1.0f, &big));  // 3 rows: over the limit on its own
  batch.push_back(Task(1, 5.0f, &small));
  RunInferBatch(*model_, 0, *model_metrics_, std::move(batch));
  EXPECT_EQ(big.status.code(), absl::StatusCode::kResourceExhausted) << big.status;
  EXPECT_TRUE(absl::StrContains(big.status.message(), "model 'faulty' ran out of memory")) << big.status;
  EXPECT_EQ(big.response.outputs_size(), 0);
  ASSERT_TRUE(small.status.ok()) << small.status;
  EXPECT_EQ(FirstValue(small), 10.0f);
}

TEST_F(FaultIsolation, AModelErrorFailsOnlyTheRequestThatCausedIt) {
  Outcome good, bad;
  Batcher::Batch batch;
  batch.push_back(Task(1, 3.0f, &good));
  batch.push_back(Task(1, -1.0f, &bad));
  RunInferBatch(*model_, 0, *model_metrics_, std::move(batch));
  ASSERT_TRUE(good.status.ok()) << good.status;
  EXPECT_EQ(FirstValue(good), 6.0f);
  EXPECT_EQ(bad.status.code(), absl::StatusCode::kInternal) << bad.status;
  EXPECT_TRUE(absl::StrContains(bad.status.message(), "negative input")) << bad.status;
}

}  // namespace
}  // namespace dytserve
