// `dytserve-cli experiment ...`: list, get, create, update, weights, delete
// and report, over the client library's control calls.
#ifndef DYTSERVE_CLIENT_CLI_EXPERIMENT_COMMAND_H_
#define DYTSERVE_CLIENT_CLI_EXPERIMENT_COMMAND_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dytserve/client.h"

namespace dytserve::cli {

// `args` follow the word "experiment". Returns the process exit code.
int ExperimentCommand(Client& client, const std::vector<std::string>& args);

// "ln=vit_ln:50,dyt=vit_dyt@2:50" -> serving arms (ARM=MODEL[@VERSION]:WEIGHT);
// with `shadow`, the number is the shadow fraction instead.
absl::StatusOr<std::vector<ExperimentArm>> ParseArms(const std::string& spec, bool shadow);

}  // namespace dytserve::cli

#endif  // DYTSERVE_CLIENT_CLI_EXPERIMENT_COMMAND_H_
