// The model repository: <root>/<model>/config.pbtxt and
// <root>/<model>/<version>/model.pt. Loading never stops at a bad model:
// each failure is reported with the model's name and the others still load.
#ifndef DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_
#define DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/model_version.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

class ModelRepository {
 public:
  struct LoadReport {
    std::vector<std::string> loaded;     // "name:version"
    std::vector<absl::Status> failures;  // each names its model
  };

  // NOT_FOUND when `root` is not a directory; otherwise loads what it can and
  // lists the rest in `report`. `metrics` must outlive the repository.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Load(const std::filesystem::path& root,
                                                               ServerMetrics* metrics, LoadReport* report);

  // `version` empty: the newest loaded version. NOT_FOUND names what is missing.
  absl::StatusOr<std::shared_ptr<ModelVersion>> Find(absl::string_view name, absl::string_view version) const;
  // Versions served for `name`, ascending; empty when none.
  std::vector<int64_t> Versions(absl::string_view name) const;
  std::vector<std::string> ModelNames() const;
  // Every model directory found, loaded or not.
  const std::vector<std::string>& discovered() const { return discovered_; }

  void ShutdownAll();

 private:
  using Versions_ = std::map<int64_t, std::shared_ptr<ModelVersion>>;
  mutable absl::Mutex mu_;
  std::map<std::string, Versions_, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> discovered_;
};

// Version directories of `model_dir` that the policy selects (ascending), or
// an error naming the model when a required version is missing.
absl::StatusOr<std::vector<int64_t>> SelectVersions(const std::filesystem::path& model_dir, const ModelSpec& spec);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_
