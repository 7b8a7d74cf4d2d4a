#include "server/core/infer_task.h"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <vector>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/log.h"
#include "server/core/model.h"

namespace dytserve {

InferTask::InferTask(DecodedRequest request, inference::ModelInferResponse* response, InferCall call,
                     std::shared_ptr<ModelMetrics> model_metrics, std::shared_ptr<RequestMetrics> request_metrics,
                     absl::Time received_at)
    : request_(std::move(request)),
      response_(response),
      call_(std::move(call)),
      metrics_(std::move(model_metrics)),
      request_metrics_(std::move(request_metrics)),
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
  const absl::Duration total = absl::Now() - received_at_;
  request_metrics_->RecordRequest(status.code(), absl::ToDoubleSeconds(total));
  metrics_->stats().RecordRequest(status.ok(), total);
  if (!status.ok()) {
    response_->clear_outputs();
    response_->clear_raw_output_contents();
  }
  // The call may be answered and its response freed as soon as done() runs.
  auto done = std::move(call_.done);
  done(std::move(status));
}

namespace {

// Tasks that can share one forward pass get the same key: equal non-batch
// shapes, or with ragged batching equal fixed dims and the same length bucket.
using ShapeKey = std::vector<std::vector<int64_t>>;

ShapeKey KeyOf(const ModelSpec& spec, const DecodedRequest& request) {
  ShapeKey key;
  for (size_t i = 0; i < request.inputs.size(); ++i) {
    if (spec.inputs[i].generated()) continue;
    auto sizes = request.inputs[i].sizes();
    std::vector<int64_t> dims(sizes.begin() + 1, sizes.end());
    if (spec.ragged_batching) {
      for (size_t d = 0; d < dims.size(); ++d) {
        if (spec.inputs[i].dims[d] != -1) continue;
        dims[d] = spec.length_bucket > 0 ? -1 - (dims[d] - 1) / spec.length_bucket : -1;
      }
    }
    key.push_back(std::move(dims));
  }
  return key;
}

// The first variable dim of `spec`'s input `index` (without the batch dim).
int FirstVariableDim(const TensorSpec& input) {
  for (size_t d = 0; d < input.dims.size(); ++d) {
    if (input.dims[d] == -1) return static_cast<int>(d);
  }
  return -1;
}

// Builds the batch's value of input `i`: the tasks' tensors, padded on the
// right to the longest of each dim with the input's pad value, stacked along
// dim 0. Generated masks are built from the input they mask.
at::Tensor AssembleInput(const ModelSpec& spec, size_t i, const std::vector<InferTask*>& tasks, int64_t rows) {
  const TensorSpec& input = spec.inputs[i];
  if (input.generated()) {
    const int var = FirstVariableDim(spec.inputs[input.mask_of]);
    int64_t longest = 0;
    for (InferTask* t : tasks) longest = std::max(longest, t->request().inputs[input.mask_of].size(var + 1));
    at::Tensor mask = at::zeros({rows, longest}, at::TensorOptions().dtype(ScalarTypeOf(input.type)));
    int64_t offset = 0;
    for (InferTask* t : tasks) {
      mask.narrow(0, offset, t->rows()).narrow(1, 0, t->request().inputs[input.mask_of].size(var + 1)).fill_(1);
      offset += t->rows();
    }
    return mask;
  }
  if (tasks.size() == 1) return tasks[0]->request().inputs[i];
  std::vector<int64_t> shape = tasks[0]->request().inputs[i].sizes().vec();
  bool ragged = false;
  for (InferTask* t : tasks) {
    const at::Tensor& x = t->request().inputs[i];
    for (int64_t d = 1; d < x.dim(); ++d) {
      ragged |= x.size(d) != shape[d];
      shape[d] = std::max(shape[d], x.size(d));
    }
  }
  std::vector<at::Tensor> parts;
  for (InferTask* t : tasks) parts.push_back(t->request().inputs[i]);
  if (!ragged) return at::cat(parts, 0);
  shape[0] = rows;
  at::Tensor batch = at::full(shape, input.pad_value, parts[0].options());
  int64_t offset = 0;
  for (const at::Tensor& x : parts) {
    at::Tensor region = batch.narrow(0, offset, x.size(0));
    for (int64_t d = 1; d < x.dim(); ++d) region = region.narrow(d, 0, x.size(d));
    region.copy_(x);
    offset += x.size(0);
  }
  return batch;
}

// Task `t`'s part of a batch output: its rows, and for outputs that follow a
// variable input dim, only its own length.
at::Tensor OutputPart(const TensorSpec& output, const at::Tensor& full, const InferTask& t, int64_t offset,
                      bool shared) {
  at::Tensor part = shared ? full.narrow(0, offset, t.rows()) : full;
  if (output.follows_input >= 0) {
    const int64_t length = t.request().inputs[output.follows_input].size(output.follows_input_dim + 1);
    const int64_t dim = output.follows_output_dim + 1;
    if (part.dim() <= dim || part.size(dim) < length) {
      throw std::runtime_error(absl::StrCat("output '", output.name, "' has fewer positions than the length ",
                                            length, " of the input it follows"));
    }
    part = part.narrow(dim, 0, length);
  }
  return part;
}

void RunGroup(Model& model, int instance, ModelMetrics& metrics, const std::vector<InferTask*>& tasks) {
  const ModelSpec& spec = model.spec();
  const absl::Time start = absl::Now();

  int64_t rows = 0;
  for (InferTask* t : tasks) rows += t->rows();
  std::vector<at::Tensor> inputs;
  absl::Status status;
  try {
    for (size_t i = 0; i < spec.inputs.size(); ++i) inputs.push_back(AssembleInput(spec, i, tasks, rows));
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("assembling the batch failed: ", e.what()));
  }
  const absl::Time assembled = absl::Now();

  absl::StatusOr<std::vector<at::Tensor>> outputs =
      status.ok() ? model.Forward(inputs) : absl::StatusOr<std::vector<at::Tensor>>(status);
  const absl::Time forwarded = absl::Now();
  status = outputs.status();
  if (status.ok()) metrics.RecordPeakBytes(instance, static_cast<double>(model.last_peak_bytes()));
  if (status.ok() && spec.batched()) {
    for (const at::Tensor& out : *outputs) {
      if (out.dim() == 0 || out.size(0) != rows) {
        status = absl::InternalError(absl::StrCat("the model returned ", out.dim() == 0 ? 0 : out.size(0),
                                                  " rows for a batch of ", rows));
        break;
      }
    }
  }
  if (!status.ok()) {
    if (tasks.size() > 1) {
      // The failed pass is not counted: its rows are counted when re-run.
      inputs.clear();
      outputs = absl::StatusOr<std::vector<at::Tensor>>(status);
      if (status.code() == absl::StatusCode::kResourceExhausted) {
        // Out of memory: halves need about half the activations; what fails
        // even alone fails with RESOURCE_EXHAUSTED.
        LogWarning(absl::StrCat("model '", spec.name, "': a batch of ", rows, " rows ran out of memory; retrying it as ",
                                tasks.size() / 2, " and ", tasks.size() - tasks.size() / 2, " requests"));
        const auto middle = tasks.begin() + static_cast<std::ptrdiff_t>(tasks.size() / 2);
        RunGroup(model, instance, metrics, std::vector<InferTask*>(tasks.begin(), middle));
        RunGroup(model, instance, metrics, std::vector<InferTask*>(middle, tasks.end()));
        return;
      }
      // One bad request (say a token id past the vocabulary) must not fail
      // the others that shared its batch: run each alone to find out.
      for (InferTask* t : tasks) RunGroup(model, instance, metrics, {t});
      return;
    }
    const absl::Time end = absl::Now();
    metrics.RecordBatch(instance, rows, 1, {assembled - start, forwarded - assembled, end - forwarded}, end);
    tasks[0]->Complete(status);
    return;
  }

  int64_t offset = 0;
  std::vector<absl::Status> results;
  for (InferTask* t : tasks) {
    absl::Status s;
    try {
      for (int index : t->request().outputs) {
        const at::Tensor part = OutputPart(spec.outputs[index], (*outputs)[index], *t, offset, tasks.size() > 1);
        s = AppendRawOutput(spec.outputs[index].name, part, t->response());
        if (!s.ok()) break;
      }
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("model '", spec.name, "': splitting the batch's outputs failed: ", e.what()));
    }
    offset += t->rows();
    results.push_back(std::move(s));
  }
  const absl::Time end = absl::Now();
  metrics.RecordBatch(instance, rows, static_cast<int64_t>(tasks.size()),
                      {assembled - start, forwarded - assembled, end - forwarded}, end);
  for (size_t i = 0; i < tasks.size(); ++i) tasks[i]->Complete(std::move(results[i]));
}

}  // namespace

void RunInferBatch(Model& model, int instance, ModelMetrics& metrics, Batcher::Batch batch) {
  // Every task a model's batcher holds is an InferTask: the engine is the only
  // producer.
  const ModelSpec& spec = model.spec();
  // Once per task here: a failed batch's re-runs are not more queueing.
  const absl::Time start = absl::Now();
  for (auto& task : batch) {
    auto* t = static_cast<InferTask*>(task.get());
    t->request_metrics().RecordQueue(absl::ToDoubleSeconds(start - t->received_at()));
    metrics.stats().RecordQueue(start - t->received_at());
  }
  if (!spec.batched()) {
    for (auto& task : batch) RunGroup(model, instance, metrics, {static_cast<InferTask*>(task.get())});
    return;
  }
  std::map<ShapeKey, std::vector<InferTask*>> groups;
  for (auto& task : batch) {
    auto* t = static_cast<InferTask*>(task.get());
    groups[KeyOf(spec, t->request())].push_back(t);
  }
  for (auto& [key, tasks] : groups) RunGroup(model, instance, metrics, tasks);
}

}  // namespace dytserve
