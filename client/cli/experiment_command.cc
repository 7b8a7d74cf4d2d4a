#include "cli/experiment_command.h"

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/experiment_report.h"
#include "cli/format.h"
#include "loadgen/metrics_scrape.h"

ABSL_FLAG(std::string, arms, "", "experiment create/update: serving arms, ARM=MODEL[@VERSION]:WEIGHT,...");
ABSL_FLAG(std::string, shadows, "", "experiment create/update: shadow arms, ARM=MODEL[@VERSION]:FRACTION,...");
ABSL_FLAG(std::string, policy, "fixed",
          "experiment create/update: fixed, thompson or epsilon_greedy[:EPSILON] (how unkeyed traffic is shared)");
ABSL_FLAG(std::string, reward, "feedback",
          "experiment create/update: what an adaptive policy maximises: feedback (labels, rewards) or slo:MS");
ABSL_FLAG(double, min_share, 0, "experiment create/update: share each serving arm keeps under an adaptive policy");
ABSL_FLAG(std::string, guardrails, "",
          "experiment create/update: rules that take an arm out, e.g. error_ratio:0.01,p99_latency:50,accuracy:0.005 "
          "(the p-value, milliseconds, the accuracy margin)");
ABSL_FLAG(uint64_t, guardrail_min_samples, 0, "experiment create/update: requests or labels before a rule may trip; "
          "0: 100");
ABSL_FLAG(std::string, arm, "", "experiment resume: the arm to bring back");
ABSL_FLAG(std::string, metrics, "", "experiment report: the server's metrics URL (http://HOST:PORT/metrics)");
ABSL_FLAG(std::string, baseline, "", "experiment report: arm the others are compared with; default: the first arm");
ABSL_FLAG(std::string, format, "text", "experiment report: text or json");
ABSL_FLAG(double, margin, 0.005,
          "experiment report: non-inferiority margin for accuracy or mean reward (0.005: half a point)");
ABSL_FLAG(double, window_s, 0, "experiment report: only this many seconds, between two scrapes; 0: since start");

namespace dytserve::cli {
namespace {

int Fail(absl::string_view message) {
  std::fprintf(stderr, "dytserve-cli: %s\n", std::string(message).c_str());
  return 1;
}

std::string ExperimentJson(const Experiment& e) {
  std::string out = absl::StrCat("{\"name\":", JsonString(e.name), ",\"arms\":[");
  for (size_t i = 0; i < e.arms.size(); ++i) {
    const ExperimentArm& a = e.arms[i];
    absl::StrAppend(&out, i ? "," : "", "{\"name\":", JsonString(a.name), ",\"model\":", JsonString(a.model),
                    ",\"version\":", JsonString(a.version), ",\"weight\":", a.weight);
    if (a.shadow) absl::StrAppend(&out, ",\"shadow\":true,\"shadow_fraction\":", a.shadow_fraction);
    absl::StrAppend(&out, "}");
  }
  absl::StrAppend(&out, "],\"policy\":{\"kind\":", JsonString(e.policy.kind), ",\"reward\":",
                  JsonString(e.policy.reward), ",\"slo_ms\":", e.policy.slo_ms, ",\"epsilon\":", e.policy.epsilon,
                  ",\"min_share\":", e.policy.min_share, "},\"guardrails\":[");
  for (size_t i = 0; i < e.guardrails.size(); ++i) {
    const ExperimentGuardrail& g = e.guardrails[i];
    absl::StrAppend(&out, i ? "," : "", "{\"kind\":", JsonString(g.kind), ",\"p_value\":", g.p_value,
                    ",\"p99_ms\":", g.p99_ms, ",\"margin\":", g.margin, ",\"min_samples\":", g.min_samples, "}");
  }
  return out + "]}";
}

// The --policy, --reward, --min_share and --guardrails flags.
absl::Status RulesFromFlags(Experiment* e) {
  std::pair<std::string, std::string> policy = absl::StrSplit(absl::GetFlag(FLAGS_policy), absl::MaxSplits(':', 1));
  e->policy.kind = policy.first;
  if (!policy.second.empty() && !absl::SimpleAtod(policy.second, &e->policy.epsilon)) {
    return absl::InvalidArgumentError(absl::StrCat("--policy: '", policy.second, "' is not a number"));
  }
  std::pair<std::string, std::string> reward = absl::StrSplit(absl::GetFlag(FLAGS_reward), absl::MaxSplits(':', 1));
  e->policy.reward = reward.first;
  if (!reward.second.empty() && !absl::SimpleAtod(reward.second, &e->policy.slo_ms)) {
    return absl::InvalidArgumentError(absl::StrCat("--reward: '", reward.second, "' is not a number of ms"));
  }
  e->policy.min_share = absl::GetFlag(FLAGS_min_share);
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_guardrails), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits(':', 1));
    ExperimentGuardrail g;
    g.kind = kv.first;
    g.min_samples = absl::GetFlag(FLAGS_guardrail_min_samples);
    double number = 0;
    if (!kv.second.empty() && !absl::SimpleAtod(kv.second, &number)) {
      return absl::InvalidArgumentError(absl::StrCat("--guardrails: '", part, "': '", kv.second, "' is not a number"));
    }
    if (g.kind == "error_ratio") {
      g.p_value = number;
    } else if (g.kind == "p99_latency") {
      g.p99_ms = number;
    } else if (g.kind == "accuracy") {
      g.margin = number;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--guardrails: '", part, "': the rules are error_ratio, p99_latency and accuracy"));
    }
    e->guardrails.push_back(std::move(g));
  }
  return absl::OkStatus();
}

absl::StatusOr<Experiment> FromFlags(const std::string& name) {
  Experiment e{name, {}, {}, {}};
  if (absl::Status s = RulesFromFlags(&e); !s.ok()) return s;
  absl::StatusOr<std::vector<ExperimentArm>> serving = ParseArms(absl::GetFlag(FLAGS_arms), false);
  if (!serving.ok()) return serving.status();
  absl::StatusOr<std::vector<ExperimentArm>> shadows = ParseArms(absl::GetFlag(FLAGS_shadows), true);
  if (!shadows.ok()) return shadows.status();
  e.arms = *std::move(serving);
  e.arms.insert(e.arms.end(), shadows->begin(), shadows->end());
  if (e.arms.empty()) return absl::InvalidArgumentError("--arms is required");
  return e;
}

// "ln=60,dyt=40": the named arms' new weights; the others keep theirs.
int SetWeights(Client& client, const std::string& name, const std::string& spec) {
  absl::StatusOr<Experiment> e = client.GetExperiment(name);
  if (!e.ok()) return Fail(e.status().ToString());
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    uint32_t weight = 0;
    if (!absl::SimpleAtoi(kv.second, &weight)) return Fail(absl::StrCat("'", part, "' is not ARM=WEIGHT"));
    ExperimentArm* arm = e->FindArm(kv.first);
    if (arm == nullptr) return Fail(absl::StrCat("experiment '", name, "' has no arm '", kv.first, "'"));
    arm->weight = weight;
  }
  absl::StatusOr<Experiment> updated = client.UpdateExperiment(*e);
  if (!updated.ok()) return Fail(updated.status().ToString());
  std::printf("%s\n", ExperimentJson(*updated).c_str());
  return 0;
}

int Report(Client& client, const std::string& name) {
  const std::string url = absl::GetFlag(FLAGS_metrics);
  if (url.empty()) return Fail("experiment report needs --metrics=http://HOST:PORT/metrics");
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "text" && format != "json") return Fail("--format must be text or json");
  // The arm order (baseline = first serving arm) comes from the server when
  // it answers; the report itself needs only the metrics.
  std::vector<std::string> order;
  if (absl::StatusOr<Experiment> e = client.GetExperiment(name); e.ok()) {
    for (const ExperimentArm& arm : e->arms) order.push_back(arm.name);
  }
  std::string before;
  if (absl::GetFlag(FLAGS_window_s) > 0) {
    absl::StatusOr<std::string> first = loadgen::Scrape(url);
    if (!first.ok()) return Fail(first.status().ToString());
    before = *std::move(first);
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_window_s)));
  }
  absl::StatusOr<std::string> scrape = loadgen::Scrape(url);
  if (!scrape.ok()) return Fail(scrape.status().ToString());
  absl::StatusOr<ExperimentReport> report =
      BuildExperimentReport(*scrape, before, name, absl::GetFlag(FLAGS_baseline), order,
                            absl::GetFlag(FLAGS_margin));
  if (!report.ok()) return Fail(report.status().message());
  std::printf("%s\n", format == "json" ? ReportJson(*report).c_str() : ReportText(*report).c_str());
  return 0;
}

}  // namespace

absl::StatusOr<std::vector<ExperimentArm>> ParseArms(const std::string& spec, bool shadow) {
  std::vector<ExperimentArm> arms;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    const size_t eq = part.find('='), colon = part.rfind(':');
    if (eq == absl::string_view::npos || colon == absl::string_view::npos || colon < eq) {
      return absl::InvalidArgumentError(absl::StrCat("'", part, "' is not ARM=MODEL[@VERSION]:",
                                                     shadow ? "FRACTION" : "WEIGHT"));
    }
    ExperimentArm arm;
    arm.name = std::string(part.substr(0, eq));
    std::pair<std::string, std::string> model = absl::StrSplit(part.substr(eq + 1, colon - eq - 1), '@');
    arm.model = model.first;
    arm.version = model.second;
    const std::string number(part.substr(colon + 1));
    arm.shadow = shadow;
    const bool ok = shadow ? absl::SimpleAtod(number, &arm.shadow_fraction) : absl::SimpleAtoi(number, &arm.weight);
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("'", part, "': '", number, "' is not a number"));
    arms.push_back(std::move(arm));
  }
  return arms;
}

int ExperimentCommand(Client& client, const std::vector<std::string>& args) {
  const std::string usage =
      "usage: dytserve-cli experiment list | get NAME | create NAME --arms=... [--shadows=...] | "
      "update NAME --arms=... [--shadows=...] | weights NAME ARM=W,... | delete NAME | "
      "report NAME --metrics=URL | resume NAME --arm=ARM | state NAME";
  if (args.empty()) return Fail(usage);
  const std::string& verb = args[0];
  if (verb == "list" && args.size() == 1) {
    absl::StatusOr<std::vector<Experiment>> list = client.ListExperiments();
    if (!list.ok()) return Fail(list.status().ToString());
    std::string out = "[";
    for (size_t i = 0; i < list->size(); ++i) absl::StrAppend(&out, i ? "," : "", ExperimentJson((*list)[i]));
    std::printf("%s]\n", out.c_str());
    return 0;
  }
  if (args.size() < 2) return Fail(usage);
  const std::string& name = args[1];
  if (verb == "get" && args.size() == 2) {
    absl::StatusOr<Experiment> e = client.GetExperiment(name);
    if (!e.ok()) return Fail(e.status().ToString());
    std::printf("%s\n", ExperimentJson(*e).c_str());
    return 0;
  }
  if ((verb == "create" || verb == "update") && args.size() == 2) {
    absl::StatusOr<Experiment> e = FromFlags(name);
    if (!e.ok()) return Fail(e.status().message());
    absl::StatusOr<Experiment> done = verb == "create" ? client.CreateExperiment(*e) : client.UpdateExperiment(*e);
    if (!done.ok()) return Fail(done.status().ToString());
    std::printf("%s\n", ExperimentJson(*done).c_str());
    return 0;
  }
  if (verb == "weights" && args.size() == 3) return SetWeights(client, name, args[2]);
  if (verb == "delete" && args.size() == 2) {
    absl::Status s = client.DeleteExperiment(name);
    if (!s.ok()) return Fail(s.ToString());
    std::printf("{\"deleted\":%s}\n", JsonString(name).c_str());
    return 0;
  }
  if (verb == "report" && args.size() == 2) return Report(client, name);
  if (verb == "resume" && args.size() == 2) {
    if (absl::GetFlag(FLAGS_arm).empty()) return Fail("experiment resume needs --arm=ARM");
    absl::Status s = client.ResumeArm(name, absl::GetFlag(FLAGS_arm));
    if (!s.ok()) return Fail(s.ToString());
    std::printf("{\"resumed\":%s}\n", JsonString(absl::GetFlag(FLAGS_arm)).c_str());
    return 0;
  }
  if (verb == "state" && args.size() == 2) {
    absl::StatusOr<std::vector<ArmStatus>> state = client.GetExperimentState(name);
    if (!state.ok()) return Fail(state.status().ToString());
    std::string out = "[";
    for (size_t i = 0; i < state->size(); ++i) {
      const ArmStatus& a = (*state)[i];
      absl::StrAppend(&out, i ? "," : "", "{\"arm\":", JsonString(a.arm), ",\"share\":", a.share,
                      ",\"tripped\":", JsonString(a.tripped), ",\"requests\":", a.requests,
                      ",\"errors\":", a.errors, ",\"correct\":", a.correct, ",\"labels\":", a.labels,
                      ",\"reward_successes\":", a.reward_successes, ",\"reward_trials\":", a.reward_trials, "}");
    }
    std::printf("%s]\n", out.c_str());
    return 0;
  }
  return Fail(usage);
}

}  // namespace dytserve::cli
