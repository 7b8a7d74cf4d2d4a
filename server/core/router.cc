#include "server/core/router.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/random/random.h"
#include "google/protobuf/text_format.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/core/log.h"
#include "server/core/text_proto.h"

namespace dytserve {
namespace {

constexpr size_t kMaxNameLength = 64;

bool IsName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

absl::Status ArmError(const v1::Experiment& e, int index, absl::string_view what) {
  const std::string arm = e.arms(index).name().empty() ? "" : absl::StrCat(" ('", e.arms(index).name(), "')");
  return absl::InvalidArgumentError(absl::StrCat("experiment '", e.name(), "' arms[", index, "]", arm, ": ", what));
}

// Requests are decoded against the arm they land on, so every arm must take
// the same inputs: one request must be valid for all of them.
absl::Status SameInputs(const ModelSpec& reference, const ModelSpec& spec) {
  std::vector<const TensorSpec*> a, b;
  for (const TensorSpec& t : reference.inputs) {
    if (!t.generated()) a.push_back(&t);
  }
  for (const TensorSpec& t : spec.inputs) {
    if (!t.generated()) b.push_back(&t);
  }
  if (a.size() != b.size()) {
    return absl::InvalidArgumentError(absl::StrCat("takes ", b.size(), " inputs where model '", reference.name,
                                                   "' takes ", a.size()));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i]->name != b[i]->name || a[i]->type != b[i]->type ||
        reference.WireShape(*a[i]) != spec.WireShape(*b[i])) {
      return absl::InvalidArgumentError(absl::StrCat("input '", b[i]->name, "' differs from input '", a[i]->name,
                                                     "' of model '", reference.name,
                                                     "' in name, datatype or shape"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const RoutedArm& CompiledExperiment::Pick(absl::string_view routing_key) const {
  if (state != nullptr && !state->Plain()) {
    if (!routing_key.empty()) return serving[PickByKey(state->KeyedWeights(), routing_key)];
    return serving[state->PickUnkeyed()];
  }
  if (!routing_key.empty()) return serving[PickByKey(weights, routing_key)];
  thread_local absl::BitGen gen;
  return serving[PickByDraw(weights, absl::Uniform<uint64_t>(gen, 0, total_weight))];
}

absl::Status ValidateExperiment(const v1::Experiment& e) {
  if (!IsName(e.name())) {
    return absl::InvalidArgumentError(absl::StrCat("experiment name '", e.name(), "' must be 1-", kMaxNameLength,
                                                   " characters of [A-Za-z0-9_.-]"));
  }
  std::set<std::string> names;
  uint64_t total_weight = 0;
  for (int i = 0; i < e.arms_size(); ++i) {
    const v1::Arm& arm = e.arms(i);
    if (!IsName(arm.name())) return ArmError(e, i, "name must be 1-64 characters of [A-Za-z0-9_.-]");
    if (!names.insert(arm.name()).second) return ArmError(e, i, "name is used by another arm");
    if (arm.model().empty()) return ArmError(e, i, "model is empty");
    if (!arm.version().empty() && (arm.version().size() > 18 ||
                                   arm.version().find_first_not_of("0123456789") != std::string::npos)) {
      return ArmError(e, i, absl::StrCat("version '", arm.version(), "' is not a version number"));
    }
    if (arm.shadow()) {
      if (arm.weight() != 0) return ArmError(e, i, "a shadow has no weight (it serves no client); set weight 0");
      if (!(arm.shadow_fraction() > 0 && arm.shadow_fraction() <= 1)) {
        return ArmError(e, i, absl::StrCat("shadow_fraction ", arm.shadow_fraction(), " is outside (0, 1]"));
      }
    } else {
      if (arm.shadow_fraction() != 0) return ArmError(e, i, "shadow_fraction is set on an arm that is not a shadow");
      total_weight += arm.weight();
    }
  }
  if (total_weight == 0) {
    return absl::InvalidArgumentError(absl::StrCat("experiment '", e.name(),
                                                   "': no serving arm has a positive weight"));
  }
  auto bad = [&e](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("experiment '", e.name(), "': ", field, " ", why));
  };
  const v1::Policy& p = e.policy();
  if (!v1::Policy::Kind_IsValid(p.kind())) return bad("policy.kind", "is not fixed, thompson or epsilon_greedy");
  if (!v1::Policy::Reward_IsValid(p.reward())) return bad("policy.reward", "is not feedback or slo");
  if (p.reward() == v1::Policy::SLO && !(p.slo_ms() > 0)) return bad("policy.slo_ms", "must be > 0 with reward slo");
  if (p.reward() != v1::Policy::SLO && p.slo_ms() != 0) return bad("policy.slo_ms", "is set without reward slo");
  if (!(p.epsilon() >= 0 && p.epsilon() < 1)) return bad("policy.epsilon", absl::StrCat(p.epsilon(), " is not in [0, 1)"));
  if (p.epsilon() != 0 && p.kind() != v1::Policy::EPSILON_GREEDY) return bad("policy.epsilon", "is set on another policy");
  int serving = 0;
  for (const v1::Arm& arm : e.arms()) serving += !arm.shadow() && arm.weight() > 0;
  if (!(p.min_share() >= 0 && p.min_share() * serving <= 1)) {
    return bad("policy.min_share", absl::StrCat(p.min_share(), " is not in [0, 1/", serving, "]"));
  }
  for (int i = 0; i < e.guardrails_size(); ++i) {
    const v1::Guardrail& g = e.guardrails(i);
    const std::string field = absl::StrCat("guardrails[", i, "]");
    if (!v1::Guardrail::Kind_IsValid(g.kind())) return bad(field + ".kind", "is not error_ratio, p99_latency or accuracy");
    if (!(g.p_value() >= 0 && g.p_value() < 1)) return bad(field + ".p_value", "is not in [0, 1)");
    if (g.kind() == v1::Guardrail::P99_LATENCY && !(g.p99_ms() > 0)) return bad(field + ".p99_ms", "must be > 0");
    if (!(g.margin() >= 0 && g.margin() < 1)) return bad(field + ".margin", "is not in [0, 1)");
  }
  return absl::OkStatus();
}

Router::Router(const ModelRepository* repository, ServerMetrics* metrics)
    : repository_(repository), metrics_(metrics) {}

absl::StatusOr<std::shared_ptr<CompiledExperiment>> Router::Compile(const v1::Experiment& e) const {
  if (absl::Status s = ValidateExperiment(e); !s.ok()) return s;
  for (const std::string& model : repository_->discovered()) {
    if (model == e.name()) {
      return absl::AlreadyExistsError(absl::StrCat("experiment '", e.name(), "': a model has that name"));
    }
  }
  auto compiled = std::make_shared<CompiledExperiment>();
  compiled->config = e;
  const ModelSpec* reference = nullptr;
  std::set<std::string> serving_models;
  // Serving arms first: shadows are checked against them.
  for (bool shadows : {false, true}) {
    for (int i = 0; i < e.arms_size(); ++i) {
      const v1::Arm& arm = e.arms(i);
      if (arm.shadow() != shadows) continue;
      absl::StatusOr<std::shared_ptr<ModelVersion>> model = repository_->Find(arm.model(), arm.version());
      if (!model.ok()) return ArmError(e, i, model.status().message());
      const ModelSpec& spec = (*model)->spec();
      if (reference == nullptr) reference = &spec;
      if (absl::Status s = SameInputs(*reference, spec); !s.ok()) {
        return ArmError(e, i, absl::StrCat("model '", arm.model(), "' ", s.message()));
      }
      RoutedArm routed{arm.name(), *model, arm.shadow_fraction(), nullptr, nullptr};
      if (!shadows) {
        serving_models.insert(arm.model());
        routed.metrics = metrics_->ForArm(spec.name, (*model)->version_string(), e.name(), arm.name());
        compiled->weights.push_back({arm.weight(), StableHash(arm.name())});
        compiled->total_weight += arm.weight();
        compiled->serving.push_back(std::move(routed));
        continue;
      }
      if (serving_models.count(arm.model()) > 0) {
        return ArmError(e, i, absl::StrCat("model '", arm.model(),
                                           "' also serves this experiment; a shadow needs a model (and queue) "
                                           "of its own"));
      }
      std::vector<std::string> outputs;
      for (const TensorSpec& out : reference->outputs) {
        if (spec.FindOutput(out.name) != nullptr) outputs.push_back(out.name);
      }
      if (outputs.empty()) {
        return ArmError(e, i, absl::StrCat("model '", arm.model(), "' has no output named like those of model '",
                                           reference->name, "', so nothing could be compared"));
      }
      routed.shadow_metrics =
          metrics_->ForShadow(spec.name, (*model)->version_string(), e.name(), arm.name(), outputs);
      compiled->shadows.push_back(std::move(routed));
    }
  }
  return compiled;
}

absl::Status Router::LoadFile(const std::filesystem::path& root, std::vector<absl::Status>* failures) {
  const std::filesystem::path path = root / "experiments.pbtxt";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return absl::OkStatus();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": cannot be read"));
  v1::ExperimentList list;
  if (absl::Status s = ParseTextProto(text.str(), path.string(), &list); !s.ok()) return s;
  for (const v1::Experiment& e : list.experiments()) {
    absl::StatusOr<v1::Experiment> created = Create(e);
    if (!created.ok()) {
      failures->push_back(absl::Status(created.status().code(),
                                       absl::StrCat(path.filename().string(), ": ", created.status().message())));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Experiment> Router::Create(const v1::Experiment& experiment) {
  return Put(experiment, /*must_exist=*/false);
}

absl::StatusOr<v1::Experiment> Router::Update(const v1::Experiment& experiment) {
  return Put(experiment, /*must_exist=*/true);
}

absl::StatusOr<v1::Experiment> Router::Put(const v1::Experiment& experiment, bool must_exist) {
  absl::MutexLock write(&write_mu_);
  const bool exists = Find(experiment.name()) != nullptr;
  if (exists && !must_exist) {
    return absl::AlreadyExistsError(absl::StrCat("experiment '", experiment.name(), "' exists; update it instead"));
  }
  if (!exists && must_exist) {
    return absl::NotFoundError(absl::StrCat("experiment '", experiment.name(), "' does not exist; create it"));
  }
  absl::StatusOr<std::shared_ptr<CompiledExperiment>> compiled = Compile(experiment);
  if (!compiled.ok()) return compiled.status();
  (*compiled)->state = StateFor(experiment);
  absl::MutexLock lock(&mu_);
  experiments_[experiment.name()] = *compiled;
  return experiment;
}

std::shared_ptr<ExperimentState> Router::StateFor(const v1::Experiment& config) {
  std::shared_ptr<ExperimentState>& state = states_[config.name()];
  if (state == nullptr) {
    ExperimentState::Hooks hooks;
    ServerMetrics* metrics = metrics_;
    const std::string name = config.name();
    hooks.on_trip = [metrics, name](const std::string& arm, const std::string& rule, const std::string& why) {
      LogWarning(absl::StrCat("experiment '", name, "': guardrail ", rule, " took arm '", arm, "' out: ", why,
                              "; dytserve-cli experiment resume ", name, " --arm=", arm, " brings it back"));
      metrics->CountGuardrailTrip(name, arm, rule);
    };
    hooks.on_share = [metrics, name](const std::string& arm, double share, bool tripped) {
      metrics->SetArmShare(name, arm, share, tripped);
    };
    state = std::make_shared<ExperimentState>(config.name(), std::move(hooks));
  }
  state->Configure(config);
  return state;
}

absl::Status Router::ResumeArm(absl::string_view experiment, absl::string_view arm) {
  std::shared_ptr<const CompiledExperiment> e = Find(experiment);
  if (e == nullptr || e->state == nullptr) {
    return absl::NotFoundError(absl::StrCat("experiment '", experiment, "' does not exist"));
  }
  if (absl::Status s = e->state->Resume(arm); !s.ok()) return s;
  LogInfo(absl::StrCat("experiment '", experiment, "': arm '", arm, "' resumed"));
  return absl::OkStatus();
}

absl::StatusOr<v1::ExperimentState> Router::State(absl::string_view experiment) const {
  std::shared_ptr<const CompiledExperiment> e = Find(experiment);
  if (e == nullptr || e->state == nullptr) {
    return absl::NotFoundError(absl::StrCat("experiment '", experiment, "' does not exist"));
  }
  return e->state->Snapshot();
}

v1::ExperimentStateList Router::States() const {
  v1::ExperimentStateList out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, e] : experiments_) {
    if (e->state != nullptr) *out.add_experiments() = e->state->Snapshot();
  }
  return out;
}

void Router::Restore(const v1::ExperimentStateList& saved) {
  for (const v1::ExperimentState& s : saved.experiments()) {
    std::shared_ptr<const CompiledExperiment> e = Find(s.experiment());
    if (e != nullptr && e->state != nullptr) e->state->Restore(s);
  }
}

absl::Status Router::SaveStates(const std::filesystem::path& path) const {
  std::string text;
  if (!google::protobuf::TextFormat::PrintToString(States(), &text)) {
    return absl::InternalError("cannot print the experiments' state");
  }
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << text;
    if (!out) return absl::UnavailableError(absl::StrCat("--experiment_state_file: cannot write ", temporary.string()));
  }
  std::error_code ec;
  std::filesystem::rename(temporary, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("--experiment_state_file: cannot replace ", path.string(), ": ",
                                                     ec.message()));
  return absl::OkStatus();
}

absl::Status Router::LoadStates(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return absl::OkStatus();
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--experiment_state_file: ", path.string(), " cannot be read"));
  v1::ExperimentStateList list;
  if (absl::Status s = ParseTextProto(text.str(), path.string(), &list); !s.ok()) return s;
  Restore(list);
  return absl::OkStatus();
}

absl::Status Router::Delete(absl::string_view name) {
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  auto it = experiments_.find(name);
  if (it == experiments_.end()) return absl::NotFoundError(absl::StrCat("experiment '", name, "' does not exist"));
  experiments_.erase(it);
  states_.erase(std::string(name));
  return absl::OkStatus();
}

absl::StatusOr<v1::Experiment> Router::Get(absl::string_view name) const {
  std::shared_ptr<const CompiledExperiment> e = Find(name);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat("experiment '", name, "' does not exist"));
  return e->config;
}

v1::ExperimentList Router::List() const {
  v1::ExperimentList list;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [name, e] : experiments_) *list.add_experiments() = e->config;
  return list;
}

void Router::Refresh() {
  absl::MutexLock write(&write_mu_);
  std::vector<v1::Experiment> configs;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [name, e] : experiments_) configs.push_back(e->config);
  }
  for (const v1::Experiment& config : configs) {
    absl::StatusOr<std::shared_ptr<CompiledExperiment>> compiled = Compile(config);
    std::shared_ptr<const CompiledExperiment> snapshot;
    if (compiled.ok()) {
      (*compiled)->state = StateFor(config);
      snapshot = *std::move(compiled);
    } else {
      auto broken = std::make_shared<CompiledExperiment>();
      broken->config = config;
      broken->broken = absl::UnavailableError(
          absl::StrCat("experiment '", config.name(), "' cannot route: ", compiled.status().message()));
      LogWarning(broken->broken.message());
      snapshot = std::move(broken);
    }
    absl::MutexLock lock(&mu_);
    experiments_[config.name()] = std::move(snapshot);
  }
}

std::shared_ptr<const CompiledExperiment> Router::Find(absl::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = experiments_.find(name);
  return it == experiments_.end() ? nullptr : it->second;
}

}  // namespace dytserve
