#include "loadgen/report.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dytserve::loadgen {
namespace {

std::string Num(double v) { return absl::StrFormat("%.6g", v); }

// For JSON strings.
std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// For HTML text and attributes.
std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string LatencyJson(const LatencySummary& l) {
  return absl::StrCat("{\"p50\":", Num(l.p50), ",\"p90\":", Num(l.p90), ",\"p95\":", Num(l.p95), ",\"p99\":",
                      Num(l.p99), ",\"p999\":", Num(l.p999), ",\"max\":", Num(l.max), ",\"mean\":", Num(l.mean), "}");
}

std::string Verdict(const AbComparison& c) {
  const bool p99_real = c.p99.lo > 0 || c.p99.hi < 0;
  const bool p50_real = c.p50.lo > 0 || c.p50.hi < 0;
  if (c.test.p_value < 0.05 && (p50_real || p99_real)) {
    const bool faster = c.p50.diff < 0;
    return absl::StrFormat("%s is %s than %s: p50 %+.1f%%, p99 %+.1f%% (Mann-Whitney p=%.3g)", c.b,
                           faster ? "faster" : "slower", c.a, 100 * c.p50.diff / std::max(c.latency_a.p50, 1e-9),
                           100 * c.p99.diff / std::max(c.latency_a.p99, 1e-9), c.test.p_value);
  }
  return absl::StrFormat("no significant difference between %s and %s (Mann-Whitney p=%.3g)", c.a, c.b,
                         c.test.p_value);
}

// Value labels at 0, 1/4, ..., 1 of `max` for a plot area [left, right] x
// [top, bottom]: along the y axis with gridlines, or along the x axis.
std::string Ticks(double max, double left, double right, double top, double bottom, bool x_axis) {
  std::string out;
  for (int i = 0; i <= 4; ++i) {
    const double f = i / 4.0;
    const std::string value = absl::StrFormat("%.4g", max * f);
    if (x_axis) {
      absl::StrAppend(&out, "<text x=\"", Num(left + (right - left) * f), "\" y=\"", Num(bottom + 14),
                      "\" font-size=\"10\" text-anchor=\"middle\">", value, "</text>");
    } else {
      const double y = bottom - (bottom - top) * f;
      absl::StrAppend(&out, "<line x1=\"", Num(left), "\" y1=\"", Num(y), "\" x2=\"", Num(right), "\" y2=\"", Num(y),
                      "\" stroke=\"#ddd\"/><text x=\"", Num(left - 4), "\" y=\"", Num(y + 4),
                      "\" font-size=\"10\" text-anchor=\"end\">", value, "</text>");
    }
  }
  return out;
}

// A polyline chart: x, y series with axes and labels, self-contained SVG.
std::string LineChart(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<std::pair<double, double>>& points) {
  constexpr double W = 520, H = 300, L = 60, B = 40, T = 30, R = 20;
  double max_x = 1e-9, max_y = 1e-9;
  for (const auto& [x, y] : points) {
    max_x = std::max(max_x, x);
    max_y = std::max(max_y, y);
  }
  std::string path;
  for (const auto& [x, y] : points) {
    absl::StrAppend(&path, path.empty() ? "M" : " L", Num(L + (W - L - R) * x / max_x), ",",
                    Num(H - B - (H - B - T - 10) * y / max_y));
  }
  std::string dots;
  for (const auto& [x, y] : points) {
    absl::StrAppend(&dots, "<circle cx=\"", Num(L + (W - L - R) * x / max_x), "\" cy=\"",
                    Num(H - B - (H - B - T - 10) * y / max_y), "\" r=\"3\" fill=\"#1f77b4\"/>");
  }
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", W, "\" height=\"", H + 20, "\">",
                      "<text x=\"", L, "\" y=\"16\" font-size=\"14\">", Escape(title), "</text>",
                      Ticks(max_y, L, W - R, T + 10, H - B, false), Ticks(max_x, L, W - R, T + 10, H - B, true),
                      "<line x1=\"", L, "\" y1=\"", H - B, "\" x2=\"", W - R, "\" y2=\"", H - B, "\" stroke=\"#333\"/>",
                      "<line x1=\"", L, "\" y1=\"", T + 10, "\" x2=\"", L, "\" y2=\"", H - B, "\" stroke=\"#333\"/>",
                      "<text x=\"", (L + W - R) / 2, "\" y=\"", H - 6, "\" font-size=\"12\" text-anchor=\"middle\">",
                      Escape(x_label), "</text>", "<text x=\"", L, "\" y=\"", T + 4, "\" font-size=\"12\">",
                      Escape(y_label), "</text>", "<path d=\"", path,
                      "\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>", dots, "</svg>");
}

// Grouped bars: one group per label, one bar per series.
std::string BarChart(const std::string& title, const std::vector<std::string>& groups,
                     const std::vector<std::string>& series, const std::vector<std::vector<double>>& values) {
  constexpr double W = 640, H = 300, L = 60, B = 50, T = 30, R = 20;
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
  double max_v = 1e-9;
  for (const auto& g : values) {
    for (double v : g) max_v = std::max(max_v, v);
  }
  const double group_w = (W - L - R) / std::max<size_t>(groups.size(), 1);
  const double bar_w = group_w * 0.8 / std::max<size_t>(series.size(), 1);
  std::string bars;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t s = 0; s < series.size() && s < values[g].size(); ++s) {
      const double h = (H - B - T) * values[g][s] / max_v;
      absl::StrAppend(&bars, "<rect x=\"", Num(L + g * group_w + group_w * 0.1 + s * bar_w), "\" y=\"",
                      Num(H - B - h), "\" width=\"", Num(bar_w), "\" height=\"", Num(h), "\" fill=\"",
                      colors[s % 6], "\"><title>", Escape(series[s]), " ", Num(values[g][s]), "</title></rect>");
    }
    absl::StrAppend(&bars, "<text x=\"", Num(L + g * group_w + 4), "\" y=\"", H - B + 16, "\" font-size=\"11\">",
                    Escape(groups[g]), "</text>");
  }
  std::string legend;
  for (size_t s = 0; s < series.size(); ++s) {
    absl::StrAppend(&legend, "<rect x=\"", Num(L + s * 90), "\" y=\"", H - 18, "\" width=\"10\" height=\"10\" fill=\"",
                    colors[s % 6], "\"/><text x=\"", Num(L + s * 90 + 14), "\" y=\"", H - 9,
                    "\" font-size=\"11\">", Escape(series[s]), "</text>");
  }
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", W, "\" height=\"", H, "\">",
                      "<text x=\"", L, "\" y=\"18\" font-size=\"14\">", Escape(title), "</text>",
                      Ticks(max_v, L, W - R, T, H - B, false), "<line x1=\"", L, "\" y1=\"", H - B, "\" x2=\"", W - R,
                      "\" y2=\"", H - B, "\" stroke=\"#333\"/>", bars, legend, "</svg>");
}

}  // namespace

void Analyze(const std::vector<std::string>& models, StepReport* step) {
  std::vector<double> latency, service;
  std::vector<double> by_model[2];
  for (const Sample& s : step->result.samples) {
    latency.push_back(s.latency_us);
    service.push_back(s.service_us);
    if (s.model >= 0 && s.model < 2) by_model[s.model].push_back(s.latency_us);
  }
  step->latency = Summarize(latency);
  step->service = Summarize(service);
  if (models.size() == 2) {
    AbComparison c;
    c.a = models[0];
    c.b = models[1];
    c.latency_a = Summarize(by_model[0]);
    c.latency_b = Summarize(by_model[1]);
    std::mt19937_64 rng(7);
    c.p50 = BootstrapQuantileDiff(by_model[0], by_model[1], 0.50, 1000, &rng);
    c.p99 = BootstrapQuantileDiff(by_model[0], by_model[1], 0.99, 1000, &rng);
    c.test = MannWhitneyU(by_model[0], by_model[1]);
    c.verdict = Verdict(c);
    step->ab = c;
  }
}

std::string SummaryText(const std::vector<StepReport>& steps) {
  std::string out = absl::StrFormat("%-16s %10s %9s %9s %9s %9s %9s %9s %8s %9s %9s %7s %7s\n", "step", "rps", "p50 ms",
                                    "p90 ms", "p99 ms", "p99.9 ms", "max ms", "svc p99", "errors", "queue ms",
                                    "compute", "batch", "cpu us");
  for (const StepReport& s : steps) {
    int64_t errors = 0;
    for (const auto& [code, n] : s.result.errors) errors += n;
    absl::StrAppend(
        &out, absl::StrFormat("%-16s %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %8d %9s %9s %7s %7.1f%s\n", s.label,
                              s.result.throughput_rps(), s.latency.p50 / 1e3, s.latency.p90 / 1e3,
                              s.latency.p99 / 1e3, s.latency.p999 / 1e3, s.latency.max / 1e3, s.service.p99 / 1e3,
                              errors, s.server.available ? absl::StrFormat("%.3f", s.server.queue_us / 1e3) : "-",
                              s.server.available ? absl::StrFormat("%.3f", s.server.compute_us / 1e3) : "-",
                              s.server.available ? absl::StrFormat("%.1f", s.server.avg_batch) : "-",
                              s.result.cpu_us_per_request, s.result.stable ? "" : "  (not stable)"));
    for (const auto& [code, n] : s.result.errors) absl::StrAppend(&out, "    errors ", code, ": ", n, "\n");
    if (s.ab) {
      const AbComparison& c = *s.ab;
      absl::StrAppend(&out, absl::StrFormat("    A/B %s vs %s: p50 %+.3f ms [%+.3f, %+.3f], p99 %+.3f ms [%+.3f, %+.3f] "
                                            "(95%% bootstrap CI), Mann-Whitney p=%.3g\n    verdict: %s\n",
                                            c.b, c.a, c.p50.diff / 1e3, c.p50.lo / 1e3, c.p50.hi / 1e3,
                                            c.p99.diff / 1e3, c.p99.lo / 1e3, c.p99.hi / 1e3, c.test.p_value,
                                            c.verdict));
    }
  }
  return out;
}

std::string Json(const std::vector<StepReport>& steps) {
  std::vector<std::string> items;
  for (const StepReport& s : steps) {
    std::vector<std::string> errors;
    for (const auto& [code, n] : s.result.errors) errors.push_back(absl::StrCat("\"", code, "\":", n));
    std::string item = absl::StrCat(
        "{\"label\":\"", JsonEscape(s.label), "\",\"mode\":\"", s.open_loop ? "open" : "closed", "\",\"",
        s.open_loop ? "rate" : "concurrency", "\":", Num(s.load), ",\"throughput_rps\":", Num(s.result.throughput_rps()),
        ",\"sent_rps\":", Num(s.result.sent_rps),
        ",\"requests\":", s.result.samples.size(), ",\"latency_us\":", LatencyJson(s.latency),
        ",\"service_us\":", LatencyJson(s.service), ",\"errors\":{", absl::StrJoin(errors, ","), "}");
    if (s.server.available) {
      absl::StrAppend(&item, ",\"server\":{\"queue_us\":", Num(s.server.queue_us), ",\"compute_us\":",
                      Num(s.server.compute_us), ",\"avg_batch\":", Num(s.server.avg_batch), "}");
    } else {
      absl::StrAppend(&item, ",\"server\":null");
    }
    absl::StrAppend(&item, ",\"windows\":", s.result.windows, ",\"stable\":", s.result.stable ? "true" : "false",
                    ",\"client_cpu_us_per_request\":", Num(s.result.cpu_us_per_request));
    if (s.ab) {
      const AbComparison& c = *s.ab;
      absl::StrAppend(&item, ",\"ab\":{\"a\":\"", JsonEscape(c.a), "\",\"b\":\"", JsonEscape(c.b),
                      "\",\"latency_us_a\":", LatencyJson(c.latency_a), ",\"latency_us_b\":", LatencyJson(c.latency_b),
                      ",\"p50_diff_us\":{\"diff\":", Num(c.p50.diff), ",\"ci95\":[", Num(c.p50.lo), ",", Num(c.p50.hi),
                      "]},\"p99_diff_us\":{\"diff\":", Num(c.p99.diff), ",\"ci95\":[", Num(c.p99.lo), ",",
                      Num(c.p99.hi), "]},\"mann_whitney_p\":", Num(c.test.p_value), ",\"verdict\":\"",
                      JsonEscape(c.verdict), "\"}");
    }
    items.push_back(item + "}");
  }
  return absl::StrCat("{\"steps\":[", absl::StrJoin(items, ","), "]}\n");
}

std::string Csv(const std::vector<StepReport>& steps) {
  std::string out =
      "label,mode,load,throughput_rps,p50_us,p90_us,p95_us,p99_us,p999_us,max_us,service_p99_us,errors,queue_us,"
      "compute_us,avg_batch,client_cpu_us_per_request,stable,sent_rps\n";
  for (const StepReport& s : steps) {
    int64_t errors = 0;
    for (const auto& [code, n] : s.result.errors) errors += n;
    absl::StrAppend(&out, s.label, ",", s.open_loop ? "open" : "closed", ",", Num(s.load), ",",
                    Num(s.result.throughput_rps()), ",", Num(s.latency.p50), ",", Num(s.latency.p90), ",",
                    Num(s.latency.p95), ",", Num(s.latency.p99), ",", Num(s.latency.p999), ",", Num(s.latency.max),
                    ",", Num(s.service.p99), ",", errors, ",", s.server.available ? Num(s.server.queue_us) : "", ",",
                    s.server.available ? Num(s.server.compute_us) : "", ",",
                    s.server.available ? Num(s.server.avg_batch) : "", ",", Num(s.result.cpu_us_per_request), ",",
                    s.result.stable ? "true" : "false", ",", Num(s.result.sent_rps), "\n");
  }
  return out;
}

// One line per series, on a shared time axis; y from 0 to `max_y`.
static std::string TimeChart(const std::string& title, const std::string& y_label, double max_y,
                      const std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>>& series) {
  constexpr double W = 640, H = 300, L = 60, B = 50, T = 30, R = 20;
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
  double max_x = 1e-9;
  for (const auto& [name, points] : series) {
    for (const auto& [x, y] : points) max_x = std::max(max_x, x);
  }
  std::string lines, legend;
  for (size_t s = 0; s < series.size(); ++s) {
    std::string path;
    for (const auto& [x, y] : series[s].second) {
      absl::StrAppend(&path, path.empty() ? "M" : " L", Num(L + (W - L - R) * x / max_x), ",",
                      Num(H - B - (H - B - T - 10) * std::min(y, max_y) / max_y));
    }
    absl::StrAppend(&lines, "<path d=\"", path, "\" fill=\"none\" stroke=\"", colors[s % 6],
                    "\" stroke-width=\"2\"><title>", Escape(series[s].first), "</title></path>");
    absl::StrAppend(&legend, "<rect x=\"", Num(L + s * 90), "\" y=\"", H - 18, "\" width=\"10\" height=\"10\" fill=\"",
                    colors[s % 6], "\"/><text x=\"", Num(L + s * 90 + 14), "\" y=\"", H - 9,
                    "\" font-size=\"11\">", Escape(series[s].first), "</text>");
  }
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", W, "\" height=\"", H, "\">",
                      "<text x=\"", L, "\" y=\"18\" font-size=\"14\">", Escape(title), "</text>",
                      Ticks(max_y, L, W - R, T + 10, H - B, false), Ticks(max_x, L, W - R, T + 10, H - B, true),
                      "<line x1=\"", L, "\" y1=\"", H - B, "\" x2=\"", W - R, "\" y2=\"", H - B, "\" stroke=\"#333\"/>",
                      "<text x=\"", L, "\" y=\"", T + 4, "\" font-size=\"12\">", Escape(y_label), "</text>",
                      "<text x=\"", (L + W - R) / 2, "\" y=\"", H - 28, "\" font-size=\"12\" text-anchor=\"middle\">",
                      "seconds</text>", lines, legend, "</svg>");
}

static std::string ArmCharts(const std::vector<ArmTimeline>& arms) {
  if (arms.empty()) return "";
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> accuracy, share;
  for (const ArmTimeline& a : arms) {
    if (!a.accuracy.empty()) accuracy.push_back({a.arm, a.accuracy});
    if (!a.share.empty()) share.push_back({a.arm, a.share});
  }
  std::string out = "<h2>Experiment arms over the run</h2>";
  if (!accuracy.empty()) absl::StrAppend(&out, TimeChart("accuracy of the labels fed back", "accuracy", 1, accuracy));
  if (!share.empty()) absl::StrAppend(&out, TimeChart("share of traffic (policy)", "share", 1, share));
  return out;
}

std::string Html(const std::vector<StepReport>& steps, const std::string& title,
                 const std::vector<ArmTimeline>& arms) {
  std::vector<std::pair<double, double>> curve;
  std::vector<std::string> labels;
  std::vector<std::vector<double>> percentiles;
  for (const StepReport& s : steps) {
    curve.push_back({s.result.throughput_rps(), s.latency.p99 / 1e3});
    labels.push_back(s.label);
    percentiles.push_back({s.latency.p50 / 1e3, s.latency.p90 / 1e3, s.latency.p99 / 1e3, s.latency.p999 / 1e3});
  }
  std::string ab;
  std::vector<std::vector<double>> ab_values;
  std::vector<std::string> ab_series;
  std::string verdicts;
  for (const StepReport& s : steps) {
    if (!s.ab) continue;
    ab_series = {s.ab->a + " p50", s.ab->b + " p50", s.ab->a + " p99", s.ab->b + " p99"};
    ab_values.push_back({s.ab->latency_a.p50 / 1e3, s.ab->latency_b.p50 / 1e3, s.ab->latency_a.p99 / 1e3,
                         s.ab->latency_b.p99 / 1e3});
    absl::StrAppend(&verdicts, "<li>", Escape(s.label), ": ", Escape(s.ab->verdict), "</li>");
  }
  if (!ab_values.empty()) {
    ab = absl::StrCat("<h2>A/B comparison</h2>", BarChart("latency ms by arm", labels, ab_series, ab_values),
                      "<ul>", verdicts, "</ul>");
  }
  return absl::StrCat(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>", Escape(title),
      "</title><style>body{font-family:sans-serif;margin:2em}pre{background:#f6f6f6;padding:1em}</style></head><body>",
      "<h1>", Escape(title), "</h1><h2>Throughput vs p99</h2>",
      LineChart("p99 latency vs throughput", "throughput (requests/s)", "p99 (ms)", curve),
      "<h2>Latency percentiles per step</h2>",
      BarChart("latency ms", labels, {"p50", "p90", "p99", "p99.9"}, percentiles), ab, ArmCharts(arms),
      "<h2>Summary</h2><pre>",
      Escape(SummaryText(steps)), "</pre></body></html>\n");
}

}  // namespace dytserve::loadgen
