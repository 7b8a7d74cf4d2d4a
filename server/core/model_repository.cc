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
        (fs::exists(it->path() / "model.pt", entry_ec) || fs::exists(it->path() / "model.pt2", entry_ec))) {
      available.insert(v);
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat("model '", spec.name, "': ", ec.message()));
  if (available.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model '", spec.name, "': no version directory with a model.pt or model.pt2 under ", model_dir.string()));
  }
  const v1::VersionPolicy& policy = spec.config.version_policy();
  std::vector<int64_t> selected;
  if (policy.has_all()) {
    selected.assign(available.begin(), available.end());
  } else if (policy.has_specific()) {
    for (int64_t v : policy.specific().versions()) {
      if (available.count(v) == 0) {
        return absl::NotFoundError(absl::StrCat("model '", spec.name, "': version_policy.specific: version ", v,
                                                " has no ", v, "/model.pt or ", v, "/model.pt2"));
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

absl::StatusOr<ModelRepository::Versions_> ModelRepository::LoadVersions(const fs::path& dir) const {
  absl::StatusOr<ModelSpec> spec = LoadModelSpec(dir);
  if (!spec.ok()) return spec.status();
  absl::StatusOr<std::vector<int64_t>> selected = SelectVersions(dir, *spec);
  if (!selected.ok()) return selected.status();
  Versions_ versions;
  for (int64_t v : *selected) {
    const fs::path version_dir = dir / std::to_string(v);
    absl::StatusOr<ModelFormat> format = FormatOfVersion(version_dir, *spec);
    absl::StatusOr<std::shared_ptr<ModelVersion>> served =
        format.ok() ? ModelVersion::Load(*spec, v, version_dir / std::string(ModelFileName(*format)), *format, metrics_)
                    : absl::StatusOr<std::shared_ptr<ModelVersion>>(format.status());
    if (!served.ok()) {
      // What loaded of this model goes: a model is served whole or not.
      for (auto& [unused, loaded] : versions) loaded->Shutdown();
      return absl::Status(served.status().code(),
                          absl::StrCat("version ", v, ": ", served.status().message()));
    }
    versions[v] = *std::move(served);
  }
  return versions;
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Load(const fs::path& root, ServerMetrics* metrics,
                                                                        LoadReport* report) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("model repository '", root.string(), "' is not a directory"));
  }
  auto repo = std::unique_ptr<ModelRepository>(new ModelRepository(root, metrics));
  std::vector<fs::path> dirs;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code entry_ec;
    if (it->is_directory(entry_ec) && fs::exists(it->path() / "config.pbtxt", entry_ec)) dirs.push_back(it->path());
  }
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot list '", root.string(), "': ", ec.message()));
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& dir : dirs) {
    const std::string name = dir.filename().string();
    absl::StatusOr<Versions_> versions = repo->LoadVersions(dir);
    absl::MutexLock lock(&repo->mu_);
    if (!versions.ok()) {
      const std::string message = absl::StrCat("model '", name, "': ", versions.status().message());
      LogError(absl::StrCat("not serving ", message));
      report->failures.push_back(absl::Status(versions.status().code(), message));
      repo->not_ready_[name] = std::string(versions.status().message());
      continue;
    }
    for (const auto& [v, unused] : *versions) report->loaded.push_back(absl::StrCat(name, ":", v));
    repo->models_[name] = *std::move(versions);
  }
  return repo;
}

absl::StatusOr<std::vector<int64_t>> ModelRepository::LoadModel(absl::string_view name,
                                                                absl::Duration drain_timeout,
                                                                const std::function<void()>& after_swap) {
  const bool plain = !name.empty() && name != "." && name != ".." &&
                     name.find_first_of("/\\") == absl::string_view::npos && name.find('\0') == absl::string_view::npos;
  if (!plain) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' is not a model directory name (no '/', '..')"));
  }
  const fs::path dir = root_ / std::string(name);
  std::error_code ec;
  // A symlink may point anywhere; the model it names must still live inside
  // the repository, or a load call could read any file the server can.
  const fs::path real_root = fs::canonical(root_, ec);
  const fs::path real_dir = ec ? fs::path() : fs::canonical(dir, ec);
  if (ec || !fs::is_directory(real_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model '", name, "': no directory ", dir.string()));
  }
  if (real_dir.parent_path() != real_root) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", name, "': ", dir.string(), " leads outside the repository (to ", real_dir.string(), ")"));
  }
  absl::MutexLock control(&control_mu_);
  absl::StatusOr<Versions_> loaded = LoadVersions(dir);
  if (!loaded.ok()) {
    LogError(absl::StrCat("load of model '", name, "' failed, what was served stays: ", loaded.status().message()));
    return absl::Status(loaded.status().code(), absl::StrCat("model '", name, "': ", loaded.status().message()));
  }
  std::vector<int64_t> versions;
  for (const auto& [v, unused] : *loaded) versions.push_back(v);
  Versions_ old;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it != models_.end()) old = std::move(it->second);
    models_[std::string(name)] = *std::move(loaded);
    not_ready_.erase(std::string(name));
  }
  LogInfo(absl::StrCat("model '", name, "' loaded: versions ", absl::StrJoin(versions, ", ")));
  if (after_swap) after_swap();
  for (auto& [v, version] : old) DrainAndShutdown(std::move(version), drain_timeout);
  return versions;
}

absl::Status ModelRepository::UnloadModel(absl::string_view name, absl::Duration drain_timeout,
                                          const std::function<void()>& after_swap) {
  absl::MutexLock control(&control_mu_);
  Versions_ old;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end()) return absl::NotFoundError(absl::StrCat("model '", name, "' is not served"));
    old = std::move(it->second);
    models_.erase(it);
    not_ready_[std::string(name)] = "unloaded";
  }
  if (after_swap) after_swap();
  int64_t left = 0;
  for (auto& [v, version] : old) left += DrainAndShutdown(std::move(version), drain_timeout);
  LogInfo(absl::StrCat("model '", name, "' unloaded", left > 0 ? absl::StrCat(" (", left, " rows cut off)") : ""));
  return absl::OkStatus();
}

int64_t DrainAndShutdown(std::shared_ptr<ModelVersion> version, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  // Unreachable now, so the count only falls: a request still holding it
  // found it before the swap and is about to queue on it.
  while (absl::Now() < give_up && (version.use_count() > 1 || version->load() > 0)) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  const int64_t left = version->load();
  version->Shutdown();
  return left;
}

std::vector<ModelRepository::IndexEntry> ModelRepository::Index() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, IndexEntry> entries;
  for (const auto& [name, versions] : models_) {
    IndexEntry& e = entries[name];
    e.name = name;
    e.state = "READY";
    for (const auto& [v, unused] : versions) e.versions.push_back(v);
  }
  for (const auto& [name, reason] : not_ready_) {
    if (entries.count(name) > 0) continue;
    entries[name] = {name, {}, "UNAVAILABLE", reason};
  }
  std::vector<IndexEntry> out;
  for (auto& [name, e] : entries) out.push_back(std::move(e));
  return out;
}

std::vector<std::string> ModelRepository::discovered() const {
  std::vector<std::string> names;
  for (const IndexEntry& e : Index()) names.push_back(e.name);
  return names;
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
