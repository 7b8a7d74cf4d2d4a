// A/B experiments: an experiment's name is called like a model and the Router
// picks which of its arms (a model version) serves each request.
//
// Experiments are compiled once (models resolved, metric handles created)
// into immutable snapshots; a change swaps the snapshot, so a request routed
// before the swap finishes on its arm, one routed after sees the change, and
// no request ever sees half of one.
#ifndef DYTSERVE_SERVER_CORE_ROUTER_H_
#define DYTSERVE_SERVER_CORE_ROUTER_H_

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "dytserve/v1/control.pb.h"
#include "server/core/experiment_state.h"
#include "server/core/model_repository.h"
#include "server/core/routing.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

struct RoutedArm {
  std::string name;
  std::shared_ptr<ModelVersion> model;
  double shadow_fraction = 0;                     // shadow arms only
  std::shared_ptr<RequestMetrics> metrics;        // serving arms
  std::shared_ptr<ShadowMetrics> shadow_metrics;  // shadow arms
};

struct CompiledExperiment {
  v1::Experiment config;
  // Not OK when a model its arms need is no longer served (unloaded or
  // reloaded without a version an arm names): the experiment keeps its
  // configuration but answers UNAVAILABLE until the model is back.
  absl::Status broken;
  std::vector<RoutedArm> serving;   // parallel to `weights`
  std::vector<WeightedArm> weights;
  uint64_t total_weight = 0;
  std::vector<RoutedArm> shadows;
  // Shared by every snapshot of this experiment (see experiment_state.h);
  // null only on a broken snapshot.
  std::shared_ptr<ExperimentState> state;

  // `routing_key` empty: by the policy (weighted random under the fixed
  // one); else sticky, by the configured weights, arms a guardrail took out
  // excluded.
  const RoutedArm& Pick(absl::string_view routing_key) const;
};

// Checks what can be checked without the repository: names, weights,
// fractions. INVALID_ARGUMENT naming the experiment, the arm and the field.
absl::Status ValidateExperiment(const v1::Experiment& experiment);

class Router {
 public:
  // Both must outlive the router.
  Router(const ModelRepository* repository, ServerMetrics* metrics);

  // Reads <root>/experiments.pbtxt when it exists. A file that does not parse
  // is an error; otherwise each experiment that fails to compile is listed in
  // `failures` (naming it) and the others are created.
  absl::Status LoadFile(const std::filesystem::path& root, std::vector<absl::Status>* failures);

  absl::StatusOr<v1::Experiment> Create(const v1::Experiment& experiment);
  absl::StatusOr<v1::Experiment> Update(const v1::Experiment& experiment);
  absl::Status Delete(absl::string_view name);
  absl::StatusOr<v1::Experiment> Get(absl::string_view name) const;
  v1::ExperimentList List() const;

  // Compiles every experiment again against the repository as it is now;
  // called after models were loaded or unloaded.
  void Refresh();

  // The current snapshot of experiment `name`; nullptr when there is none.
  std::shared_ptr<const CompiledExperiment> Find(absl::string_view name) const;

  // Brings an arm a guardrail took out back (NOT_FOUND: no such experiment or arm).
  absl::Status ResumeArm(absl::string_view experiment, absl::string_view arm);
  absl::StatusOr<v1::ExperimentState> State(absl::string_view experiment) const;
  // Every experiment's state, to save; and restoring saved ones (experiments
  // that no longer exist, and arms they no longer have, are skipped).
  v1::ExperimentStateList States() const;
  void Restore(const v1::ExperimentStateList& saved);
  // The same through a file (text format), written whole then renamed so
  // that a crash never leaves half a file. Loading a missing file is OK.
  absl::Status SaveStates(const std::filesystem::path& path) const;
  absl::Status LoadStates(const std::filesystem::path& path);

 private:
  // Not yet published, so still mutable: the caller attaches the state.
  absl::StatusOr<std::shared_ptr<CompiledExperiment>> Compile(const v1::Experiment& experiment) const;
  // The state of experiment `name`, created on first use, configured with `config`.
  std::shared_ptr<ExperimentState> StateFor(const v1::Experiment& config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Create (`must_exist` false) or Update (true): check, compile, swap in.
  absl::StatusOr<v1::Experiment> Put(const v1::Experiment& experiment, bool must_exist);

  const ModelRepository* const repository_;
  ServerMetrics* const metrics_;
  // Held across validate-and-swap so that two control calls cannot both
  // pass the "name is free" check; routing only takes mu_.
  absl::Mutex write_mu_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const CompiledExperiment>, std::less<>> experiments_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<ExperimentState>, std::less<>> states_ ABSL_GUARDED_BY(write_mu_);
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_ROUTER_H_
