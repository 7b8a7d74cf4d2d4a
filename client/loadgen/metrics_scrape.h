// The server-side breakdown of a step, from the server's /metrics scraped
// before and after it: mean queue time, mean batch compute time and rows
// per forward pass of the models under load.
#ifndef DYTSERVE_CLIENT_LOADGEN_METRICS_SCRAPE_H_
#define DYTSERVE_CLIENT_LOADGEN_METRICS_SCRAPE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadgen/report.h"

namespace dytserve::loadgen {

// GET http://HOST:PORT/metrics (or the given URL's path); the body of a 200
// answer (also used for the REST endpoint's model metadata).
// `bearer_token`, when not empty, goes in an Authorization header.
absl::StatusOr<std::string> Scrape(const std::string& url, const std::string& bearer_token = "");

// Sum over `models` of a series' value (labels model=..., any version).
double SumSeries(const std::string& scrape, const std::string& family, const std::vector<std::string>& models);

// One experiment's arms in a scrape: labels fed back and how many were
// correct (dytserve_feedback_total), and the policy's current share
// (dytserve_experiment_arm_share; -1 when absent).
struct ExperimentArmFigures {
  double correct = 0;
  double labels = 0;
  double share = -1;
};
std::map<std::string, ExperimentArmFigures> ExperimentArms(const std::string& scrape, const std::string& experiment);

ServerBreakdown Breakdown(const std::string& before, const std::string& after, const std::vector<std::string>& models);

}  // namespace dytserve::loadgen

#endif  // DYTSERVE_CLIENT_LOADGEN_METRICS_SCRAPE_H_
