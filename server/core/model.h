// One loaded model instance, whatever its format (backend.h), checked against
// its config and placed on a device. Forward runs under c10::InferenceMode.
// Thread-compatible: each model instance is driven by one batch thread.
#ifndef DYTSERVE_SERVER_CORE_MODEL_H_
#define DYTSERVE_SERVER_CORE_MODEL_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "server/core/backend.h"
#include "server/core/model_config.h"

namespace dytserve {

class Model {
 public:
  // Loads `file` in `format` onto the spec's device (LoadBackend) and checks
  // it against the spec by running one forward on a sample input built from
  // the config. Errors name the model and the config field that disagrees
  // with the model. `track_memory` turns on last_peak_bytes() (a hook on
  // every allocation).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::filesystem::path& file, ModelFormat format,
                                                     const ModelSpec& spec, bool track_memory = true);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // `inputs` in config order, on the CPU; returns outputs in config order, on
  // the CPU. A module that throws yields INTERNAL with its message; running
  // out of memory yields RESOURCE_EXHAUSTED (after returning the CUDA
  // allocator's cached blocks), so the caller can retry smaller batches.
  absl::StatusOr<std::vector<at::Tensor>> Forward(const std::vector<at::Tensor>& inputs);

  const ModelSpec& spec() const { return spec_; }
  ModelFormat format() const { return backend_->facts().format; }
  // "cpu" or "cuda:N": where the model actually lives.
  const std::string& device() const { return device_name_; }
  // Bytes of parameters, buffers and constants.
  int64_t weight_bytes() const { return backend_->facts().weight_bytes; }
  // Memory of the last Forward: the inputs' bytes plus the peak of what
  // LibTorch's allocators handed out on the calling thread during the pass
  // (activations, workspaces, outputs), through c10's memory-reporting hook.
  // Allocations on intra-op worker threads or inside oneDNN's own pools are
  // not seen; on CPU with one intra-op thread that is almost nothing.
  int64_t last_peak_bytes() const { return last_peak_bytes_; }
  // DyT subgraphs replaced by the fused operator at load (0: none found, or
  // fusion off, or the fused module failed verification, or a format that
  // fuses at export).
  int fused_dyt() const { return backend_->facts().fused_dyt; }
  // Of those, DyTs whose weight and bias were folded into following Linears.
  int folded_dyt() const { return backend_->facts().folded_dyt; }

 private:
  Model(const ModelSpec& spec, std::unique_ptr<ModelBackend> backend, bool track_memory);
  absl::Status CheckAgainstConfig();

  const ModelSpec spec_;
  const std::unique_ptr<ModelBackend> backend_;
  const bool track_memory_;
  std::string device_name_;
  int64_t last_peak_bytes_ = 0;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_H_
