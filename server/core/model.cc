#include "server/core/model.h"

#include <ATen/Parallel.h>
#include <optional>

#include <c10/core/Allocator.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#ifdef DYTSERVE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/tensor_codec.h"

namespace dytserve {
namespace {

// Variable dims in the load-time sample take this size: small, but above 1 so
// that a model which silently squeezes a dimension still fails the check.
constexpr int64_t kSampleVariableDim = 2;

// Follows the bytes allocated and freed on this thread while installed; see
// Model::last_peak_bytes().
class PeakMemoryTracker final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t alloc_size, size_t, size_t, c10::Device) override {
    current_ += alloc_size;
    peak_ = std::max(peak_, current_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t current_ = 0;
  int64_t peak_ = 0;
};

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

Model::Model(const ModelSpec& spec, std::unique_ptr<ModelBackend> backend, bool track_memory)
    : spec_(spec), backend_(std::move(backend)), track_memory_(track_memory) {
  device_name_ = backend_->facts().device.str();
}

Model::~Model() = default;

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::filesystem::path& file, ModelFormat format,
                                                   const ModelSpec& spec, bool track_memory) {
  absl::StatusOr<std::unique_ptr<ModelBackend>> backend = LoadBackend(file, format, spec);
  if (!backend.ok()) return backend.status();
  std::unique_ptr<Model> model(new Model(spec, *std::move(backend), track_memory));
  if (absl::Status s = model->CheckAgainstConfig(); !s.ok()) return s;
  return model;
}

// Runs a sample built from the config (one row; variable dims of 2; zeros,
// and masks of ones) and compares what comes back with the config's outputs.
absl::Status Model::CheckAgainstConfig() {
  const ModelSpec& spec = spec_;
  const int64_t rows = spec.batched() ? 1 : 0;
  absl::StatusOr<std::vector<at::Tensor>> outputs =
      Forward(SampleInputs(spec, rows, kSampleVariableDim, /*random=*/false));
  if (!outputs.ok()) {
    return ModelError(spec, "input",
                      absl::StrCat("forward on a sample built from the config failed: ", outputs.status().message()));
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const TensorSpec& out = spec.outputs[i];
    const at::Tensor& t = (*outputs)[i];
    const std::string field = absl::StrCat("output[", i, "] '", out.name, "'");
    absl::StatusOr<DataType> type = DataTypeOf(t);
    if (!type.ok() || *type != out.type) {
      return ModelError(spec, absl::StrCat(field, ".data_type"),
                        absl::StrCat("the model returns ", c10::toString(t.scalar_type()), ", the config says ",
                                     DataTypeName(out.type)));
    }
    const std::vector<int64_t> expected = spec.WireShape(out);
    bool match = static_cast<size_t>(t.dim()) == expected.size();
    for (size_t d = 0; match && d < expected.size(); ++d) {
      if (spec.batched() && d == 0) {
        match = t.size(0) == rows;
      } else if (expected[d] != -1) {
        match = t.size(static_cast<int64_t>(d)) == expected[d];
      }
    }
    if (!match) {
      return ModelError(spec, absl::StrCat(field, ".dims"),
                        absl::StrCat("the model returns shape ", ShapeString(t.sizes()),
                                     spec.batched() ? absl::StrCat(" for a sample of ", rows, " row(s)") : "",
                                     ", the config says ", ShapeString(expected)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<at::Tensor>> Model::Forward(const std::vector<at::Tensor>& inputs) {
  const int threads = static_cast<int>(spec_.config.optimization().intra_op_threads());
  if (threads > 0 && at::get_num_threads() != threads) at::set_num_threads(threads);
  auto tracker = track_memory_ ? std::make_shared<PeakMemoryTracker>() : nullptr;
  int64_t input_bytes = 0;
  for (const at::Tensor& t : inputs) input_bytes += t.numel() * t.element_size();

  absl::StatusOr<std::vector<at::Tensor>> outputs;
  try {
    std::optional<c10::DebugInfoGuard> tracking;
    if (tracker != nullptr) tracking.emplace(c10::DebugInfoKind::PROFILER_STATE, tracker);
    c10::InferenceMode guard;
    std::vector<at::Tensor> placed;
    placed.reserve(inputs.size());
    const c10::Device device = backend_->facts().device;
    for (const at::Tensor& t : inputs) placed.push_back(t.to(device));
    outputs = backend_->Forward(std::move(placed));
    if (outputs.ok()) {
      if (outputs->size() != spec_.outputs.size()) {
        outputs = absl::InternalError(absl::StrCat("the model returned ", outputs->size(),
                                                   " outputs, the config names ", spec_.outputs.size()));
      } else {
        for (at::Tensor& t : *outputs) t = t.to(c10::kCPU).contiguous();
      }
    }
  } catch (const std::exception& e) {  // moving tensors between devices
    outputs = ForwardFailure(e);
  }
  if (outputs.ok()) {
    last_peak_bytes_ = tracker != nullptr ? input_bytes + tracker->peak() : 0;
    return outputs;
  }
  if (absl::IsResourceExhausted(outputs.status())) {
#ifdef DYTSERVE_WITH_CUDA
    // Cached blocks of the failed pass are free now; give them back so that
    // the smaller retry (the caller splits the batch) finds room.
    if (backend_->facts().device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
    return absl::ResourceExhaustedError(
        absl::StrCat("model '", spec_.name, "' ran out of memory: ", outputs.status().message()));
  }
  return absl::InternalError(absl::StrCat("model '", spec_.name, "' failed: ", outputs.status().message()));
}

}  // namespace dytserve
