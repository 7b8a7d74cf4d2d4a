#include "server/core/infer_task.h"

#include <map>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/model.h"

namespace dytserve {

InferTask::InferTask(DecodedRequest request, inference::ModelInferResponse* response, InferCall call,
                     std::shared_ptr<ModelMetrics> metrics, absl::Time received_at)
    : request_(std::move(request)),
      response_(response),
      call_(std::move(call)),
      metrics_(std::move(metrics)),
      received_at_(received_at) {
  metrics_->AddInFlight(1);
}

InferTask::~InferTask() {
  // A task destroyed without completing was refused by Schedule(); the caller
  // answers that call, so only the gauge is ours to settle.
  if (!completed_) metrics_->AddInFlight(-1);
}

void InferTask::Complete(absl::Status status) {
  completed_ = true;
  metrics_->AddInFlight(-1);
  metrics_->RecordRequest(status.code(), absl::ToDoubleSeconds(absl::Now() - received_at_));
  if (!status.ok()) {
    response_->clear_outputs();
    response_->clear_raw_output_contents();
  }
  // The call may be answered and its response freed as soon as done() runs.
  auto done = std::move(call_.done);
  done(std::move(status));
}

namespace {

// Tasks whose inputs can share one forward pass: same non-batch dims.
using ShapeKey = std::vector<std::vector<int64_t>>;

ShapeKey KeyOf(const DecodedRequest& request) {
  ShapeKey key;
  for (const at::Tensor& t : request.inputs) {
    auto sizes = t.sizes();
    key.emplace_back(sizes.begin() + (sizes.empty() ? 0 : 1), sizes.end());
  }
  return key;
}

void RunGroup(Model& model, ModelMetrics& metrics, const std::vector<InferTask*>& tasks, bool batched) {
  const absl::Time start = absl::Now();
  for (InferTask* t : tasks) metrics.RecordQueue(absl::ToDoubleSeconds(start - t->received_at()));

  std::vector<at::Tensor> inputs;
  int64_t rows = 0;
  for (InferTask* t : tasks) rows += t->rows();
  if (tasks.size() == 1) {
    inputs = tasks[0]->request().inputs;
  } else {
    for (size_t i = 0; i < tasks[0]->request().inputs.size(); ++i) {
      std::vector<at::Tensor> parts;
      for (InferTask* t : tasks) parts.push_back(t->request().inputs[i]);
      inputs.push_back(at::cat(parts, 0));
    }
  }

  absl::StatusOr<std::vector<at::Tensor>> outputs = model.Forward(inputs);
  absl::Status status = outputs.status();
  if (status.ok() && batched) {
    for (const at::Tensor& out : *outputs) {
      if (out.dim() == 0 || out.size(0) != rows) {
        status = absl::InternalError(absl::StrCat("the model returned ", out.dim() == 0 ? 0 : out.size(0),
                                                  " rows for a batch of ", rows));
        break;
      }
    }
  }
  if (!status.ok()) {
    for (InferTask* t : tasks) t->Complete(status);
    metrics.RecordBatch(rows, absl::ToDoubleSeconds(absl::Now() - start));
    return;
  }

  int64_t offset = 0;
  std::vector<absl::Status> results;
  for (InferTask* t : tasks) {
    absl::Status s;
    for (int index : t->request().outputs) {
      const at::Tensor& full = (*outputs)[index];
      const at::Tensor part = batched && tasks.size() > 1 ? full.narrow(0, offset, t->rows()) : full;
      s = AppendRawOutput(model.spec().outputs[index].name, part, t->response());
      if (!s.ok()) break;
    }
    offset += t->rows();
    results.push_back(std::move(s));
  }
  metrics.RecordBatch(rows, absl::ToDoubleSeconds(absl::Now() - start));
  for (size_t i = 0; i < tasks.size(); ++i) tasks[i]->Complete(std::move(results[i]));
}

}  // namespace

void RunInferBatch(Model& model, ModelMetrics& metrics, Batcher::Batch batch) {
  // Every task a model's batcher holds is an InferTask: the engine is the only
  // producer.
  const bool batched = model.spec().batched();
  std::map<ShapeKey, std::vector<InferTask*>> groups;
  for (auto& task : batch) {
    auto* t = static_cast<InferTask*>(task.get());
    groups[batched ? KeyOf(t->request()) : ShapeKey{}].push_back(t);
    if (!batched) {
      RunGroup(model, metrics, {t}, false);
      groups.clear();
    }
  }
  for (auto& [key, tasks] : groups) RunGroup(model, metrics, tasks, true);
}

}  // namespace dytserve
