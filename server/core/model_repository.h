// The model repository: <root>/<model>/config.pbtxt and
// <root>/<model>/<version>/model.pt (TorchScript) or model.pt2 (AOTInductor). Loading never stops at a bad model:
// each failure is reported with the model's name and the others still load.
#ifndef DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_
#define DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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

  // Loads (or reloads) <root>/<name>: reads its config, loads every version
  // the policy selects, then swaps them in at once. On any error nothing
  // changes and the versions served so far keep serving. Versions replaced
  // or no longer selected are drained (see UnloadModel) before this returns.
  // INVALID_ARGUMENT for a name that is not a plain directory name of the
  // repository (no "/", "..", or symlink leading outside it).
  // `after_swap` runs once the new versions are in place and before the old
  // ones drain: whoever else holds versions (the router) lets go there.
  absl::StatusOr<std::vector<int64_t>> LoadModel(absl::string_view name, absl::Duration drain_timeout,
                                                 const std::function<void()>& after_swap);
  // Stops routing new requests to `name`, then waits until its queued and
  // running requests have finished (up to `drain_timeout`; what is left
  // then is completed with UNAVAILABLE). NOT_FOUND when it is not served.
  absl::Status UnloadModel(absl::string_view name, absl::Duration drain_timeout,
                           const std::function<void()>& after_swap);

  struct IndexEntry {
    std::string name;
    std::vector<int64_t> versions;  // served; empty when not
    std::string state;              // READY or UNAVAILABLE
    std::string reason;             // why not ready: the last load error, or "unloaded"
  };
  // Every model directory of the repository and every model served, by name.
  std::vector<IndexEntry> Index() const;

  // `version` empty: the newest loaded version. NOT_FOUND names what is missing.
  absl::StatusOr<std::shared_ptr<ModelVersion>> Find(absl::string_view name, absl::string_view version) const;
  // Versions served for `name`, ascending; empty when none.
  std::vector<int64_t> Versions(absl::string_view name) const;
  std::vector<std::string> ModelNames() const;
  // Every model directory found at start or loaded since, loaded or not.
  std::vector<std::string> discovered() const;

  void ShutdownAll();

 private:
  using Versions_ = std::map<int64_t, std::shared_ptr<ModelVersion>>;
  ModelRepository(std::filesystem::path root, ServerMetrics* metrics) : root_(std::move(root)), metrics_(metrics) {}
  // Loads the versions of <root>/<name> without installing them.
  absl::StatusOr<Versions_> LoadVersions(const std::filesystem::path& dir) const;

  const std::filesystem::path root_;
  ServerMetrics* const metrics_;
  // Serializes load and unload calls, so a reload never races another.
  absl::Mutex control_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, Versions_, std::less<>> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string, std::less<>> not_ready_ ABSL_GUARDED_BY(mu_);  // name -> reason
};

// Waits until nothing but the caller holds `version` (no request is between
// finding it and queueing on it) and its queues are empty, up to `timeout`;
// then shuts it down (completing leftovers with UNAVAILABLE). Returns how
// many rows were still queued or running at the timeout.
int64_t DrainAndShutdown(std::shared_ptr<ModelVersion> version, absl::Duration timeout);

// Version directories of `model_dir` that the policy selects (ascending), or
// an error naming the model when a required version is missing.
absl::StatusOr<std::vector<int64_t>> SelectVersions(const std::filesystem::path& model_dir, const ModelSpec& spec);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_MODEL_REPOSITORY_H_
