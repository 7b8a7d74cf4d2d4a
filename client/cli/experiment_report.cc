#include "cli/experiment_report.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/format.h"

namespace dytserve::cli {
namespace {

constexpr double kZ95 = 1.959963984540054;
const double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// One line of the Prometheus text format; false for comments and lines that
// do not parse (they are skipped, not fatal: a report of what is readable).
bool ParseSample(const std::string& line, Sample* out) {
  if (line.empty() || line[0] == '#') return false;
  size_t i = line.find_first_of("{ ");
  if (i == std::string::npos) return false;
  out->name = line.substr(0, i);
  out->labels.clear();
  if (line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const size_t eq = line.find('=', i);
      if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') return false;
      std::string key = line.substr(i, eq - i), value;
      size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) {
          ++j;
          value += line[j] == 'n' ? '\n' : line[j];
        } else {
          value += line[j];
        }
      }
      if (j >= line.size()) return false;
      out->labels[key] = value;
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;
  }
  while (i < line.size() && line[i] == ' ') ++i;
  const size_t end = line.find(' ', i);
  const std::string value = line.substr(i, end == std::string::npos ? std::string::npos : end - i);
  if (value == "+Inf") {
    out->value = INFINITY;
    return true;
  }
  return absl::SimpleAtod(value, &out->value);
}

std::string Label(const Sample& s, const std::string& key) {
  auto it = s.labels.find(key);
  return it == s.labels.end() ? "" : it->second;
}

// Adds one histogram sample (_bucket, _sum or _count of `base`) into `h`.
bool AddHistogramSample(const Sample& s, const std::string& base, double sign, Histogram* h) {
  if (s.name == base + "_bucket") {
    double le = 0;
    const std::string bound = Label(s, "le");
    if (bound == "+Inf") {
      le = INFINITY;
    } else if (!absl::SimpleAtod(bound, &le)) {
      return false;
    }
    h->cumulative[le] += sign * s.value;
    return true;
  }
  if (s.name == base + "_sum") {
    h->sum += sign * s.value;
    return true;
  }
  if (s.name == base + "_count") {
    h->count += sign * s.value;
    return true;
  }
  return false;
}

std::string ModelOf(const Sample& s) { return absl::StrCat(Label(s, "model"), ":", Label(s, "version")); }

struct Accumulator {
  std::string experiment;
  std::map<std::string, ArmFigures> arms;
  std::map<std::string, ShadowFigures> shadows;
  std::map<std::pair<std::string, std::string>, ShadowFigures::Output> outputs;

  void Add(const std::string& text, double sign) {
    std::istringstream lines(text);
    Sample s;
    for (std::string line; std::getline(lines, line);) {
      if (!absl::StartsWith(line, "dytserve_") || !ParseSample(line, &s)) continue;
      if (Label(s, "experiment") != experiment || Label(s, "arm").empty()) continue;
      const std::string arm = Label(s, "arm");
      if (absl::StartsWith(s.name, "dytserve_shadow_")) {
        AddShadow(s, arm, sign);
        continue;
      }
      if (s.name == "dytserve_requests_total") {
        ArmFigures& a = Arm(arm, s);
        a.requests += sign * s.value;
        if (Label(s, "code") != "OK") a.errors += sign * s.value;
      } else if (absl::StartsWith(s.name, "dytserve_request_duration_seconds_")) {
        AddHistogramSample(s, "dytserve_request_duration_seconds", sign, &Arm(arm, s).latency);
      } else if (s.name == "dytserve_feedback_total") {
        // Not Arm(): these series carry no version, and must not rename it.
        ArmFigures& a = arms[arm];
        a.arm = arm;
        const std::string outcome = Label(s, "outcome");
        if (outcome == "correct") a.correct += sign * s.value;
        if (outcome == "incorrect") a.incorrect += sign * s.value;
        if (outcome == "reward") a.rewards += sign * s.value;
      } else if (s.name == "dytserve_feedback_reward_sum") {
        ArmFigures& a = arms[arm];
        a.arm = arm;
        a.reward_sum += sign * s.value;
      }
    }
  }

  ArmFigures& Arm(const std::string& arm, const Sample& s) {
    ArmFigures& a = arms[arm];
    a.arm = arm;
    if (!Label(s, "model").empty()) a.model = ModelOf(s);
    return a;
  }

  void AddShadow(const Sample& s, const std::string& arm, double sign) {
    ShadowFigures& f = shadows[arm];
    f.arm = arm;
    if (!Label(s, "model").empty()) f.model = ModelOf(s);
    if (s.name == "dytserve_shadow_requests_total") {
      f.requests += sign * s.value;
      if (Label(s, "code") != "OK") f.errors += sign * s.value;
      return;
    }
    if (AddHistogramSample(s, "dytserve_shadow_request_duration_seconds", sign, &f.latency)) return;
    const std::string output = Label(s, "output");
    if (output.empty()) return;
    ShadowFigures::Output& o = outputs[{arm, output}];
    o.name = output;
    if (s.name == "dytserve_shadow_top1_agreements_total") {
      o.top1_agreeing += sign * s.value;
    } else if (s.name == "dytserve_shadow_top1_comparisons_total") {
      o.top1_compared += sign * s.value;
    } else if (s.name == "dytserve_shadow_output_mismatches_total") {
      o.mismatches += sign * s.value;
    } else {
      AddHistogramSample(s, "dytserve_shadow_max_abs_difference", sign, &o.max_abs_difference);
    }
  }
};

Interval DifferenceOfMeans(const ArmFigures& arm, const ArmFigures& base) {
  Interval out;
  out.estimate = arm.latency.Mean() - base.latency.Mean();
  if (arm.latency.count < 2 || base.latency.count < 2) {
    out.low = out.high = kNaN;
    return out;
  }
  const double se = std::sqrt(arm.latency.Variance() / arm.latency.count + base.latency.Variance() / base.latency.count);
  out.low = out.estimate - kZ95 * se;
  out.high = out.estimate + kZ95 * se;
  return out;
}

Interval DifferenceOfRatios(const ArmFigures& arm, const ArmFigures& base) {
  Interval out;
  if (arm.requests < 1 || base.requests < 1) {
    out.estimate = out.low = out.high = kNaN;
    return out;
  }
  const double p1 = arm.errors / arm.requests, p0 = base.errors / base.requests;
  out.estimate = p1 - p0;
  const double se = std::sqrt(p1 * (1 - p1) / arm.requests + p0 * (1 - p0) / base.requests);
  out.low = out.estimate - kZ95 * se;
  out.high = out.estimate + kZ95 * se;
  return out;
}

std::string Verdict(const ArmComparison& c, const ArmFigures& base) {
  std::string latency;
  if (std::isnan(c.mean_latency_s.low)) {
    latency = "latency: not enough requests";
  } else if (!c.mean_latency_s.significant()) {
    latency = "latency: no significant difference";
  } else {
    const double pct = base.latency.Mean() > 0 ? 100 * c.mean_latency_s.estimate / base.latency.Mean() : 0;
    latency = absl::StrFormat("latency: %s by %.1f%% (significant at 95%%)",
                              c.mean_latency_s.estimate < 0 ? "faster" : "slower", std::fabs(pct));
  }
  std::string errors;
  if (std::isnan(c.error_ratio.estimate)) {
    errors = "errors: not enough requests";
  } else if (!c.error_ratio.significant()) {
    errors = "errors: no significant difference";
  } else {
    errors = absl::StrFormat("errors: %s (significant at 95%%)", c.error_ratio.estimate > 0 ? "more" : "fewer");
  }
  return absl::StrCat(latency, "; ", errors);
}

// Accuracy when labels came for both arms, else mean reward when rewards did.
void CompareQuality(const ArmFigures& arm, const ArmFigures& base, double margin, ArmComparison* c) {
  double p1 = 0, p0 = 0, n = 0;
  if (arm.labels() > 0 && base.labels() > 0) {
    c->quality = "accuracy";
    c->quality_difference = stats::Newcombe(arm.correct, arm.labels(), base.correct, base.labels());
    p1 = arm.accuracy.estimate;
    p0 = base.accuracy.estimate;
    n = std::min(arm.labels(), base.labels());
  } else if (arm.rewards > 0 && base.rewards > 0) {
    c->quality = "mean reward";
    c->quality_difference = stats::BoundedMeanDifference(arm.reward_sum, arm.rewards, base.reward_sum, base.rewards);
    p1 = arm.mean_reward.estimate;
    p0 = base.mean_reward.estimate;
    n = std::min(arm.rewards, base.rewards);
  } else {
    c->quality_verdict = "quality: no outcomes yet for both arms";
    return;
  }
  c->inferiority = stats::NonInferiority(c->quality_difference, margin);
  const bool decided = c->inferiority == stats::Inferiority::kNonInferior ||
                       c->inferiority == stats::Inferiority::kInferior;
  c->outcomes_still_needed = decided ? 0 : std::max(0.0, stats::SamplesPerArmNeeded(p1, p0, margin) - n);
  c->quality_verdict = absl::StrFormat("%s: %s at a margin of %.2f points", c->quality,
                                       stats::InferiorityName(c->inferiority), 100 * margin);
  if (!decided) {
    absl::StrAppend(&c->quality_verdict,
                    std::isinf(c->outcomes_still_needed)
                        ? " (the difference sits at the margin: no sample size decides)"
                        : absl::StrFormat(" (about %.0f more outcomes per arm to decide)", c->outcomes_still_needed));
  }
}

std::string Pct(const stats::Interval& v) {
  if (!v.valid()) return "-";
  return absl::StrFormat("%.2f%% [%.2f, %.2f]", 100 * v.estimate, 100 * v.low, 100 * v.high);
}

std::string Num(double v) {
  if (std::isnan(v)) return "null";
  if (std::isinf(v)) return v > 0 ? "\"+Inf\"" : "\"-Inf\"";
  return absl::StrFormat("%.9g", v);
}

std::string IntervalJson(const stats::Interval& v) {
  return absl::StrCat("{\"estimate\":", Num(v.estimate), ",\"low\":", Num(v.low), ",\"high\":", Num(v.high), "}");
}

std::string Ms(double seconds) { return std::isnan(seconds) ? "-" : absl::StrFormat("%.3f", seconds * 1e3); }

}  // namespace

double Histogram::Quantile(double q) const {
  if (count <= 0 || cumulative.empty()) return kNaN;
  const double rank = q * count;
  double lower = 0, below = 0;
  for (const auto& [le, cum] : cumulative) {
    if (cum >= rank) {
      if (std::isinf(le)) return lower;  // Prometheus: the highest finite bound
      if (cum == below) return le;
      return lower + (le - lower) * (rank - below) / (cum - below);
    }
    lower = le;
    below = cum;
  }
  return lower;
}

void Histogram::Add(const Histogram& other) {
  for (const auto& [le, cum] : other.cumulative) cumulative[le] += cum;
  sum += other.sum;
  count += other.count;
}

Histogram HistogramDelta(const std::string& before, const std::string& after, const std::string& family,
                         const std::map<std::string, std::string>& labels) {
  Histogram h;
  for (const auto& [text, sign] : {std::pair<const std::string&, double>{before, -1.0}, {after, 1.0}}) {
    std::istringstream lines(text);
    Sample s;
    for (std::string line; std::getline(lines, line);) {
      if (!absl::StartsWith(line, family) || !ParseSample(line, &s)) continue;
      bool match = true;
      for (const auto& [key, value] : labels) match = match && Label(s, key) == value;
      if (match) AddHistogramSample(s, family, sign, &h);
    }
  }
  return h;
}

double Histogram::Variance() const {
  if (count < 2) return 0;
  double lower = 0, below = 0, second_moment = 0;
  for (const auto& [le, cum] : cumulative) {
    const double mid = std::isinf(le) ? lower : (lower + le) / 2;
    second_moment += (cum - below) * mid * mid;
    if (!std::isinf(le)) lower = le;
    below = cum;
  }
  const double mean = Mean();
  return std::max(0.0, second_moment / count - mean * mean);
}

absl::StatusOr<ExperimentReport> BuildExperimentReport(const std::string& scrape, const std::string& before,
                                                       const std::string& experiment, const std::string& baseline,
                                                       const std::vector<std::string>& arm_order, double margin) {
  if (!(margin > 0 && margin < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("margin: ", margin, " is not in (0, 1)"));
  }
  Accumulator acc;
  acc.experiment = experiment;
  acc.Add(scrape, 1);
  if (!before.empty()) acc.Add(before, -1);
  if (acc.arms.empty()) {
    return absl::NotFoundError(absl::StrCat("no dytserve_requests_total series with experiment=\"", experiment,
                                            "\" in the scrape: no such experiment, or no request yet"));
  }
  for (auto& [name, arm] : acc.arms) {
    arm.accuracy = stats::Wilson(arm.correct, arm.labels());
    arm.mean_reward = stats::BoundedMean(arm.reward_sum, arm.rewards);
  }
  ExperimentReport report;
  report.experiment = experiment;
  report.baseline = baseline;
  report.margin = margin;
  if (report.baseline.empty()) {
    for (const std::string& arm : arm_order) {
      if (acc.arms.count(arm) > 0) {
        report.baseline = arm;
        break;
      }
    }
  }
  if (report.baseline.empty()) report.baseline = acc.arms.begin()->first;
  auto base = acc.arms.find(report.baseline);
  if (base == acc.arms.end()) {
    return absl::NotFoundError(absl::StrCat("baseline arm '", report.baseline, "' has no requests in experiment '",
                                            experiment, "'"));
  }
  report.arms.push_back(base->second);
  for (const auto& [name, arm] : acc.arms) {
    if (name == report.baseline) continue;
    report.arms.push_back(arm);
    ArmComparison c;
    c.arm = name;
    c.mean_latency_s = DifferenceOfMeans(arm, base->second);
    c.error_ratio = DifferenceOfRatios(arm, base->second);
    c.verdict = Verdict(c, base->second);
    CompareQuality(arm, base->second, margin, &c);
    report.comparisons.push_back(std::move(c));
  }
  for (auto& [name, shadow] : acc.shadows) {
    for (const auto& [key, output] : acc.outputs) {
      if (key.first == name) shadow.outputs.push_back(output);
    }
    report.shadows.push_back(shadow);
  }
  return report;
}

std::string ReportText(const ExperimentReport& r) {
  std::string out = absl::StrFormat("experiment %s (baseline arm: %s)\n\n", r.experiment, r.baseline);
  absl::StrAppendFormat(&out, "%-16s %-20s %10s %11s %10s %10s %10s\n", "arm", "model", "requests", "error_ratio",
                        "mean_ms", "p50_ms", "p99_ms");
  for (const ArmFigures& a : r.arms) {
    absl::StrAppendFormat(&out, "%-16s %-20s %10.0f %11.4f %10s %10s %10s\n", a.arm, a.model, a.requests,
                          a.requests > 0 ? a.errors / a.requests : 0.0, Ms(a.latency.Mean()),
                          Ms(a.latency.Quantile(0.5)), Ms(a.latency.Quantile(0.99)));
  }
  bool any_outcomes = false;
  for (const ArmFigures& a : r.arms) any_outcomes = any_outcomes || a.labels() > 0 || a.rewards > 0;
  if (any_outcomes) {
    absl::StrAppendFormat(&out, "\n%-16s %8s %-28s %8s %-28s\n", "arm", "labels", "accuracy, 95% CI (Wilson)",
                          "rewards", "mean reward, 95% CI");
    for (const ArmFigures& a : r.arms) {
      absl::StrAppendFormat(&out, "%-16s %8.0f %-28s %8.0f %-28s\n", a.arm, a.labels(), Pct(a.accuracy), a.rewards,
                            Pct(a.mean_reward));
    }
  }
  for (const ArmComparison& c : r.comparisons) {
    absl::StrAppendFormat(&out, "\n%s vs %s:\n  mean latency difference %s ms, 95%% CI [%s, %s]\n", c.arm, r.baseline,
                          Ms(c.mean_latency_s.estimate), Ms(c.mean_latency_s.low), Ms(c.mean_latency_s.high));
    absl::StrAppendFormat(&out, "  error ratio difference %.5f, 95%% CI [%.5f, %.5f]\n  verdict: %s\n",
                          c.error_ratio.estimate, c.error_ratio.low, c.error_ratio.high, c.verdict);
    if (!c.quality.empty()) {
      absl::StrAppendFormat(&out, "  %s difference %.2f points, 95%% CI [%.2f, %.2f] (%s)\n", c.quality,
                            100 * c.quality_difference.estimate, 100 * c.quality_difference.low,
                            100 * c.quality_difference.high,
                            c.quality == "accuracy" ? "Newcombe" : "bounded-variance normal");
    }
    absl::StrAppendFormat(&out, "  %s\n", c.quality_verdict);
  }
  for (const ShadowFigures& s : r.shadows) {
    absl::StrAppendFormat(&out, "\nshadow %s (%s): %.0f requests, error ratio %.4f, p50 %s ms, p99 %s ms\n", s.arm,
                          s.model, s.requests, s.requests > 0 ? s.errors / s.requests : 0.0,
                          Ms(s.latency.Quantile(0.5)), Ms(s.latency.Quantile(0.99)));
    for (const ShadowFigures::Output& o : s.outputs) {
      absl::StrAppendFormat(&out, "  output %s: %.0f compared, top-1 agreement %s, max-abs-diff p50 %.3g p99 %.3g",
                            o.name, o.max_abs_difference.count,
                            o.top1_compared > 0 ? absl::StrFormat("%.4f", o.top1_agreeing / o.top1_compared) : "-",
                            o.max_abs_difference.Quantile(0.5), o.max_abs_difference.Quantile(0.99));
      absl::StrAppendFormat(&out, ", %.0f not comparable\n", o.mismatches);
    }
  }
  return out;
}

std::string ReportJson(const ExperimentReport& r) {
  std::string out = absl::StrCat("{\"experiment\":", JsonString(r.experiment), ",\"baseline\":", JsonString(r.baseline),
                                 ",\"arms\":[");
  for (size_t i = 0; i < r.arms.size(); ++i) {
    const ArmFigures& a = r.arms[i];
    absl::StrAppend(&out, i ? "," : "", "{\"arm\":", JsonString(a.arm), ",\"model\":", JsonString(a.model),
                    ",\"requests\":", Num(a.requests), ",\"errors\":", Num(a.errors),
                    ",\"mean_s\":", Num(a.latency.Mean()), ",\"p50_s\":", Num(a.latency.Quantile(0.5)),
                    ",\"p99_s\":", Num(a.latency.Quantile(0.99)), ",\"labels\":", Num(a.labels()),
                    ",\"correct\":", Num(a.correct), ",\"accuracy\":", IntervalJson(a.accuracy),
                    ",\"rewards\":", Num(a.rewards), ",\"mean_reward\":", IntervalJson(a.mean_reward), "}");
  }
  absl::StrAppend(&out, "],\"margin\":", Num(r.margin), ",\"comparisons\":[");
  auto interval = [](const Interval& v) {
    return absl::StrCat("{\"estimate\":", Num(v.estimate), ",\"low\":", Num(v.low), ",\"high\":", Num(v.high), "}");
  };
  for (size_t i = 0; i < r.comparisons.size(); ++i) {
    const ArmComparison& c = r.comparisons[i];
    absl::StrAppend(&out, i ? "," : "", "{\"arm\":", JsonString(c.arm), ",\"mean_latency_difference_s\":",
                    interval(c.mean_latency_s), ",\"error_ratio_difference\":", interval(c.error_ratio),
                    ",\"verdict\":", JsonString(c.verdict), ",\"quality\":", JsonString(c.quality),
                    ",\"quality_difference\":", IntervalJson(c.quality_difference),
                    ",\"non_inferiority\":", JsonString(stats::InferiorityName(c.inferiority)),
                    ",\"outcomes_still_needed_per_arm\":", Num(c.outcomes_still_needed),
                    ",\"quality_verdict\":", JsonString(c.quality_verdict), "}");
  }
  absl::StrAppend(&out, "],\"shadows\":[");
  for (size_t i = 0; i < r.shadows.size(); ++i) {
    const ShadowFigures& s = r.shadows[i];
    absl::StrAppend(&out, i ? "," : "", "{\"arm\":", JsonString(s.arm), ",\"model\":", JsonString(s.model),
                    ",\"requests\":", Num(s.requests), ",\"errors\":", Num(s.errors),
                    ",\"p50_s\":", Num(s.latency.Quantile(0.5)), ",\"p99_s\":", Num(s.latency.Quantile(0.99)),
                    ",\"outputs\":[");
    for (size_t j = 0; j < s.outputs.size(); ++j) {
      const ShadowFigures::Output& o = s.outputs[j];
      absl::StrAppend(&out, j ? "," : "", "{\"output\":", JsonString(o.name),
                      ",\"compared\":", Num(o.max_abs_difference.count), ",\"top1_agreeing\":", Num(o.top1_agreeing),
                      ",\"top1_compared\":", Num(o.top1_compared), ",\"mismatches\":", Num(o.mismatches),
                      ",\"max_abs_difference_p50\":", Num(o.max_abs_difference.Quantile(0.5)),
                      ",\"max_abs_difference_p99\":", Num(o.max_abs_difference.Quantile(0.99)), "}");
    }
    absl::StrAppend(&out, "]}");
  }
  absl::StrAppend(&out, "]}");
  return out;
}

}  // namespace dytserve::cli
