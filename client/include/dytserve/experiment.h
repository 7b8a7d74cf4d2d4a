// What the control service deals in, as the client library sees it: plain
// structs mirroring dytserve.v1 messages, so users need no generated code.
#ifndef DYTSERVE_CLIENT_EXPERIMENT_H_
#define DYTSERVE_CLIENT_EXPERIMENT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace dytserve {

struct ExperimentArm {
  std::string name;
  std::string model;
  std::string version;  // empty: the newest the server serves
  uint32_t weight = 0;  // share of traffic among serving arms
  bool shadow = false;  // gets a copy of shadow_fraction of the traffic
  double shadow_fraction = 0;
};

// How traffic is shared among the serving arms (dytserve.v1.Policy).
struct ExperimentPolicy {
  std::string kind = "fixed";      // fixed | thompson | epsilon_greedy
  std::string reward = "feedback"; // feedback | slo
  double slo_ms = 0;               // reward "slo": answered OK within this
  double epsilon = 0;              // epsilon_greedy; 0 means 0.1
  double min_share = 0;            // each serving arm keeps at least this share
};

// A rule that takes an arm out of the traffic (dytserve.v1.Guardrail).
struct ExperimentGuardrail {
  std::string kind;  // error_ratio | p99_latency | accuracy
  double p_value = 0;
  double p99_ms = 0;
  double margin = 0;
  uint64_t min_samples = 0;
};

// What the server learned of one serving arm (dytserve.v1.ArmState).
struct ArmStatus {
  std::string arm;
  double share = 0;     // of the requests without a routing key, now
  std::string tripped;  // why a guardrail took the arm out; empty while it serves
  uint64_t requests = 0;
  uint64_t errors = 0;
  double correct = 0;
  double labels = 0;
  double reward_successes = 0;
  double reward_trials = 0;
};

struct Experiment {
  std::string name;
  std::vector<ExperimentArm> arms;
  ExperimentPolicy policy = {};
  std::vector<ExperimentGuardrail> guardrails = {};

  // The arm named `name`, or nullptr.
  ExperimentArm* FindArm(const std::string& name) {
    for (ExperimentArm& arm : arms) {
      if (arm.name == name) return &arm;
    }
    return nullptr;
  }
};

// One entry of the server's repository index.
struct RepositoryModel {
  std::string name;
  std::vector<int64_t> versions;  // served; empty when not
  std::string state;              // READY or UNAVAILABLE
  std::string reason;
};

}  // namespace dytserve

#endif  // DYTSERVE_CLIENT_EXPERIMENT_H_
