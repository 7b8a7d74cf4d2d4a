// One loaded TorchScript module, checked against its config and placed on a
// device. Forward runs under torch::InferenceMode. Thread-compatible: each
// model instance is driven by one batch thread.
#ifndef DYTSERVE_SERVER_CORE_MODEL_H_
#define DYTSERVE_SERVER_CORE_MODEL_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "server/core/model_config.h"

namespace dytserve {

class Model {
 public:
  // Loads `file` onto the spec's device ("auto" picks CUDA when available,
  // else CPU with a logged notice) and checks it against the spec by running
  // one forward on a sample input built from the config. Errors name the
  // model and the config field that disagrees with the module.
  // `track_memory` turns on last_peak_bytes() (a hook on every allocation).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::filesystem::path& file, const ModelSpec& spec,
                                                     bool track_memory = true);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // `inputs` in config order, on the CPU; returns outputs in config order, on
  // the CPU. A module that throws yields INTERNAL with its message; running
  // out of memory yields RESOURCE_EXHAUSTED (after returning the CUDA
  // allocator's cached blocks), so the caller can retry smaller batches.
  absl::StatusOr<std::vector<at::Tensor>> Forward(const std::vector<at::Tensor>& inputs);

  const ModelSpec& spec() const;
  // "cpu" or "cuda:N": where the module actually lives.
  const std::string& device() const { return device_name_; }
  // Bytes of parameters and buffers.
  int64_t weight_bytes() const { return weight_bytes_; }
  // Memory of the last Forward: the inputs' bytes plus the peak of what
  // LibTorch's allocators handed out on the calling thread during the pass
  // (activations, workspaces, outputs), through c10's memory-reporting hook.
  // Allocations on intra-op worker threads or inside oneDNN's own pools are
  // not seen; on CPU with one intra-op thread that is almost nothing.
  int64_t last_peak_bytes() const { return last_peak_bytes_; }
  // DyT subgraphs replaced by the fused operator at load (0: none found, or
  // fusion off, or the fused module failed verification).
  int fused_dyt() const { return fused_dyt_; }
  // Of those, DyTs whose weight and bias were folded into following Linears.
  int folded_dyt() const { return folded_dyt_; }

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  absl::Status FailedForward(absl::string_view what, bool out_of_memory);

  std::unique_ptr<Impl> impl_;
  std::string device_name_;
  int64_t weight_bytes_ = 0;
  int64_t last_peak_bytes_ = 0;
  int fused_dyt_ = 0;
  int folded_dyt_ = 0;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_H_
