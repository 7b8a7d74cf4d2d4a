// One served version of a model: its spec and N instances, each a module copy
// with its own batcher and batch thread.
#ifndef DYTSERVE_SERVER_CORE_MODEL_VERSION_H_
#define DYTSERVE_SERVER_CORE_MODEL_VERSION_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/core/backend.h"
#include "server/core/batcher.h"
#include "server/core/model_config.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

class Model;

class ModelVersion {
 public:
  // Loads `spec.instance_count` copies of `file`; each is checked against the
  // spec. `metrics` must outlive the returned object.
  static absl::StatusOr<std::shared_ptr<ModelVersion>> Load(const ModelSpec& spec, int64_t version,
                                                            const std::filesystem::path& file, ModelFormat format,
                                                            ServerMetrics* metrics);
  ~ModelVersion();

  const ModelSpec& spec() const { return spec_; }
  int64_t version() const { return version_; }
  const std::string& version_string() const { return version_string_; }
  const std::shared_ptr<ModelMetrics>& metrics() const { return metrics_; }
  // Where the instances live ("cpu", "cuda:0").
  const std::string& device() const;
  ModelFormat format() const;

  // Hands the task to the least-loaded instance; Batcher::Schedule's contract.
  absl::Status Schedule(std::unique_ptr<BatchTask>* task, bool may_run_inline = false);

  // Every instance's queue is at its max_queue_size.
  bool full() const;
  // Queued plus executing rows over all instances.
  int64_t load() const;

  // Refuses new tasks and completes queued ones with UNAVAILABLE. Idempotent.
  void Shutdown();

 private:
  struct Instance {
    std::unique_ptr<Model> model;
    std::unique_ptr<Batcher> batcher;  // declared after model: stops first
  };
  ModelVersion(ModelSpec spec, int64_t version, std::shared_ptr<ModelMetrics> metrics);

  const ModelSpec spec_;
  const int64_t version_;
  const std::string version_string_;
  std::shared_ptr<ModelMetrics> metrics_;
  std::vector<Instance> instances_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_VERSION_H_
