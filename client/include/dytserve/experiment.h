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

struct Experiment {
  std::string name;
  std::vector<ExperimentArm> arms;

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
