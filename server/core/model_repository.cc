#include "server/core/model_repository.h"

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/log.h"

namespace dytserve {

namespace fs = std::filesystem;

absl::StatusOr<std::vector<int64_t>> SelectVersions(const fs::path& model_dir, const ModelSpec& spec) {
  std::set<int64_t> available;
  std::error_code ec;
  // error_code overloads throughout: an unreadable directory is this
  // model's error, never an exception that stops the whole repository.
  for (auto it = fs::directory_iterator(model_dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    int64_t v = 0;
    std::error_code entry_ec;
    if (it->is_directory(entry_ec) && absl::SimpleAtoi(it->path().filename().string(), &v) && v > 0 &&
        fs::exists(it->path() / "model.pt", entry_ec)) {
      available.insert(v);
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("model '", spec.name, "': ", ec.message()));
  if (available.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model '", spec.name, "': no version directory with a model.pt under ", model_dir.string()));
  }
  const v1::VersionPolicy& policy = spec.config.version_policy();
  std::vector<int64_t> selected;
  if (policy.has_all()) {
    selected.assign(available.begin(), available.end());
  } else if (policy.has_specific()) {
    for (int64_t v : policy.specific().versions()) {
      if (available.count(v) == 0) {
        return absl::NotFoundError(absl::StrCat("model '", spec.name, "': version_policy.specific: version ", v,
                                                " has no ", v, "/model.pt"));
      }
      selected.push_back(v);
    }
    std::sort(selected.begin(), selected.end());
    selected.erase(std::unique(selected.begin(), selected.end()), selected.end());
  } else {
    const size_t n = policy.latest().num_versions();
    auto it = available.rbegin();
    for (size_t i = 0; i < n && it != available.rend(); ++i, ++it) selected.push_back(*it);
    std::sort(selected.begin(), selected.end());
  }
  return selected;
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(const fs::path& root, ServerMetrics* metrics,
                                                                        LoadReport* report) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("model repository '", root.string(), "' is not a directory"));
  }
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository());
  std::vector<fs::path> dirs;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code entry_ec;
    if (it->is_directory(entry_ec) && fs::exists(it->path() / "config.pbtxt", entry_ec)) dirs.push_back(it->path());
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list '", root.string(), "': ", ec.message()));
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& dir : dirs) {
    const std::string name = dir.filename().string();
    repo->discovered_.push_back(name);
    absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
    absl::StatusOr<std::vector<int64_t>> versions =
        spec.ok() ? SelectVersions(dir, *spec) : absl::StatusOr<std::vector<int64_t>>(spec.status());
    if (!versions.ok()) {
      LogError(absl::StrCat("not serving model '", name, "': ", versions.status().message()));
      report->failures.push_back(versions.status());
      continue;
    }
    for (int64_t v : *versions) {
      absl::StatusOr<std::shared_ptr<ModelVersion>> served =
          ModelVersion::Load(*spec, v, dir / std::to_string(v) / "model.pt", metrics);
      if (!served.ok()) {
        LogError(absl::StrCat("not serving model '", name, "' version ", v, ": ", served.status().message()));
        report->failures.push_back(served.status());
        continue;
      }
      absl::MutexLock lock(&repo->mu_);
      repo->models_[name][v] = *std::move(served);
      report->loaded.push_back(absl::StrCat(name, ":", v));
    }
  }
  return repo;
}

absl::StatusOr<std::shared_ptr<ModelVersion>> ModelRepository::Find(absl::string_view name,
                                                                     absl::string_view version) const {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not served"));
  }
  if (version.empty()) return it->second.rbegin()->second;
  int64_t v = 0;
  auto vit = absl::SimpleAtoi(version, &v) ? it->second.find(v) : it->second.end();
  if (vit == it->second.end()) {
    std::vector<int64_t> have;
    for (const auto& [k, unused] : it->second) have.push_back(k);
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "' (served: ", absl::StrJoin(have, ", "), ")"));
  }
  return vit->second;
}

std::vector<int64_t> ModelRepository::Versions(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> out;
  auto it = models_.find(name);
  if (it != models_.end()) {
    for (const auto& [v, unused] : it->second) out.push_back(v);
  }
  return out;
}

std::vector<std::string> ModelRepository::ModelNames() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, unused] : models_) out.push_back(name);
  return out;
}

void ModelRepository::ShutdownAll() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, versions] : models_) {
    for (auto& [v, served] : versions) served->Shutdown();
  }
}

}  // namespace dytserve
