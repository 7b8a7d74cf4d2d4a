// dytserve-loadgen: closed- and open-loop load against dytserve (or any Open
// Inference Protocol server), sweeps, server-side breakdown from /metrics,
// A/B comparison, and reports (text, JSON, CSV, HTML).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <thread>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "dytserve/client.h"
#include "dytserve/inputs.h"
#include "loadgen/feedback.h"
#include "loadgen/load.h"
#include "loadgen/metrics_scrape.h"
#include "loadgen/report.h"

ABSL_FLAG(std::string, target, "127.0.0.1:8001", "Server host:port; several, comma-separated, share the load");
ABSL_FLAG(std::string, model, "", "Model to load");
ABSL_FLAG(std::string, models, "", "A/B mode: two models A,B get identical, interleaved load");
ABSL_FLAG(int, concurrency, 0, "Closed loop: clients, each with one request in flight");
ABSL_FLAG(std::string, concurrency_range, "", "Closed-loop sweep a:b:step");
ABSL_FLAG(double, rate, 0, "Open loop: requests per second");
ABSL_FLAG(std::string, rate_range, "", "Open-loop sweep a:b:step (requests per second)");
ABSL_FLAG(std::string, arrival, "constant", "Open-loop arrivals: constant or poisson");
ABSL_FLAG(double, duration, 10, "Seconds of measurement per step at most (with --window: max windows)");
ABSL_FLAG(double, window, 2, "Measurement window in seconds; a step ends when the last 3 agree");
ABSL_FLAG(double, stability, 0.10, "Windows agree when throughput and p99 are within +-this fraction");
ABSL_FLAG(int64_t, requests, 0, "Measured requests per step at most; 0: no bound but --duration");
ABSL_FLAG(double, warmup, 1, "Seconds of load before measuring, per step");
ABSL_FLAG(std::string, input_json, "", "Inputs from a JSON file ({\"inputs\":[{name,datatype,shape,data}]})");
ABSL_FLAG(std::string, seq_len, "8", "Length of variable dims: N, or a:b for uniform lengths in [a, b]");
ABSL_FLAG(int64_t, rows, 1, "Batch rows per request");
ABSL_FLAG(int64_t, int_high, 100, "Generated integers are drawn from [0, int_high)");
ABSL_FLAG(int, distinct_inputs, 16, "Distinct generated requests cycled through");
ABSL_FLAG(std::string, metrics_url, "", "Server /metrics (host:port) for the queue/compute/batch breakdown");
ABSL_FLAG(std::string, json, "", "Write per-step results as JSON to this file");
ABSL_FLAG(std::string, csv, "", "Write per-step results as CSV to this file");
ABSL_FLAG(std::string, html, "", "Write a self-contained HTML report with SVG charts to this file");
ABSL_FLAG(bool, progress, true, "A live progress line on stderr");
ABSL_FLAG(int, timeout_ms, 30000, "Deadline of each request");
ABSL_FLAG(std::string, dataset, "",
          "Send held-out labelled examples and feed their true labels back: digits (DIR/digits_test.json of "
          "the repository in $DYTSERVE_REPO, else build/repository) or a file in that layout");
ABSL_FLAG(std::string, feedback, "",
          "Synthetic outcomes: synthetic:ARM=RATE,... makes each arm right with that probability");
ABSL_FLAG(double, feedback_fraction, 1, "Share of the answers whose outcome is fed back");
ABSL_FLAG(double, feedback_delay, 0, "Seconds between an answer and its outcome's feedback");
ABSL_FLAG(std::string, token_file, "",
          "File holding the server's inference token (--inference_token_file), sent on every protocol");
ABSL_FLAG(std::string, feedback_token_file, "", "File holding the server's feedback token (--feedback_token_file)");
ABSL_FLAG(std::string, protocol, "grpc", "grpc, or http (the v2 REST endpoint; --target is then its host:port)");
ABSL_FLAG(bool, streaming, false, "gRPC: send over ModelStreamInfer streams instead of unary calls");
ABSL_FLAG(int, streams, 4, "With --streaming: how many streams share the load");
ABSL_FLAG(bool, http_binary, false, "HTTP: Triton's binary tensors both ways instead of JSON");
ABSL_FLAG(int, http_connections, 32, "HTTP: keep-alive connections (at least the largest concurrency)");

namespace dytserve::loadgen {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dytserve-loadgen: %s\n", message.c_str());
  return 2;
}

// "a:b:step" -> a, a+step, ..., <= b.
absl::StatusOr<std::vector<double>> ParseRange(const std::string& flag, const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  double a = 0, b = 0, step = 0;
  if (parts.size() != 3 || !absl::SimpleAtod(parts[0], &a) || !absl::SimpleAtod(parts[1], &b) ||
      !absl::SimpleAtod(parts[2], &step) || a <= 0 || b < a || step <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, "='", text, "' is not a:b:step with 0 < a <= b, step > 0"));
  }
  std::vector<double> out;
  for (double v = a; v <= b + 1e-9 && out.size() < 1000; v += step) out.push_back(v);
  return out;
}

// The token in the file `path` names (first word); nothing when `path` is empty.
absl::Status ReadToken(const std::string& flag, const std::string& path, std::string* token) {
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path);
  if (!(in >> *token)) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read a token from ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::pair<int64_t, int64_t>> ParseSeqLen(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  int64_t lo = 0, hi = 0;
  if (parts.size() == 1 && absl::SimpleAtoi(parts[0], &lo) && lo > 0) return std::make_pair(lo, lo);
  if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &lo) && absl::SimpleAtoi(parts[1], &hi) && lo > 0 && hi >= lo) {
    return std::make_pair(lo, hi);
  }
  return absl::InvalidArgumentError(absl::StrCat("--seq_len='", text, "' is not N or a:b with 0 < a <= b"));
}

int Run() {
  std::vector<std::string> models;
  if (!absl::GetFlag(FLAGS_models).empty()) {
    models = absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty());
    if (models.size() != 2) return Fail("--models takes exactly two models: A,B");
  } else if (!absl::GetFlag(FLAGS_model).empty()) {
    models = {absl::GetFlag(FLAGS_model)};
  } else {
    return Fail("--model (or --models A,B) is required");
  }

  // Steps: a sweep or a single point, closed or open loop.
  std::vector<double> loads;
  bool open_loop = false;
  const bool closed_given = absl::GetFlag(FLAGS_concurrency) > 0 || !absl::GetFlag(FLAGS_concurrency_range).empty();
  const bool open_given = absl::GetFlag(FLAGS_rate) > 0 || !absl::GetFlag(FLAGS_rate_range).empty();
  if (closed_given == open_given) return Fail("give exactly one of --concurrency[_range] or --rate[_range]");
  if (open_given) {
    open_loop = true;
    if (!absl::GetFlag(FLAGS_rate_range).empty()) {
      absl::StatusOr<std::vector<double>> r = ParseRange("--rate_range", absl::GetFlag(FLAGS_rate_range));
      if (!r.ok()) return Fail(std::string(r.status().message()));
      loads = *r;
    } else {
      loads = {absl::GetFlag(FLAGS_rate)};
    }
  } else if (!absl::GetFlag(FLAGS_concurrency_range).empty()) {
    absl::StatusOr<std::vector<double>> r = ParseRange("--concurrency_range", absl::GetFlag(FLAGS_concurrency_range));
    if (!r.ok()) return Fail(std::string(r.status().message()));
    loads = *r;
  } else {
    loads = {static_cast<double>(absl::GetFlag(FLAGS_concurrency))};
  }
  const std::string arrival = absl::GetFlag(FLAGS_arrival);
  if (arrival != "constant" && arrival != "poisson") return Fail("--arrival must be constant or poisson");
  if (absl::GetFlag(FLAGS_window) <= 0 || absl::GetFlag(FLAGS_duration) <= 0 || absl::GetFlag(FLAGS_warmup) < 0) {
    return Fail("--window and --duration must be positive, --warmup not negative");
  }
  absl::StatusOr<std::pair<int64_t, int64_t>> seq = ParseSeqLen(absl::GetFlag(FLAGS_seq_len));
  if (!seq.ok()) return Fail(std::string(seq.status().message()));

  ClientOptions options;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_target), ',', absl::SkipEmpty())) {
    options.endpoints.emplace_back(t);
  }
  options.default_deadline = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  if (absl::Status s = ReadToken("--token_file", absl::GetFlag(FLAGS_token_file), &options.bearer_token); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  const std::string protocol = absl::GetFlag(FLAGS_protocol);
  if (protocol != "grpc" && protocol != "http") return Fail(absl::StrCat("--protocol=", protocol, ": grpc or http"));
  if (protocol == "http" && absl::GetFlag(FLAGS_streaming)) return Fail("--streaming is a gRPC call; not with --protocol=http");
  if (options.endpoints.size() != 1 && (protocol == "http" || absl::GetFlag(FLAGS_streaming))) {
    return Fail("--protocol=http and --streaming take one --target");
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  if (!client.ok()) return Fail(std::string(client.status().message()));
  int most_in_flight = 1;
  for (double load : loads) most_in_flight = std::max(most_in_flight, static_cast<int>(load));
  std::unique_ptr<Sender> sender;
  if (protocol == "http") {
    absl::StatusOr<std::unique_ptr<Sender>> http =
        HttpSender(options.endpoints[0], absl::GetFlag(FLAGS_http_binary),
                   open_loop ? absl::GetFlag(FLAGS_http_connections)
                             : std::max(absl::GetFlag(FLAGS_http_connections), most_in_flight),
                   options.default_deadline, options.bearer_token);
    if (!http.ok()) return Fail(absl::StrCat("--target: ", http.status().message()));
    sender = *std::move(http);
  } else if (absl::GetFlag(FLAGS_streaming)) {
    absl::StatusOr<std::unique_ptr<Sender>> stream = GrpcStreamSender(options.endpoints[0], absl::GetFlag(FLAGS_streams), options.bearer_token);
    if (!stream.ok()) return Fail(absl::StrCat("--streams: ", stream.status().message()));
    sender = *std::move(stream);
  } else {
    sender = GrpcUnarySender(client->get());
  }

  // Outcome feedback: a dataset's labels, or synthetic per-arm rates.
  const std::string dataset_flag = absl::GetFlag(FLAGS_dataset);
  const bool with_feedback = !dataset_flag.empty() || !absl::GetFlag(FLAGS_feedback).empty();
  std::optional<Dataset> dataset;
  FeedbackPlan plan;
  std::unique_ptr<Client> feedback_client;
  if (with_feedback) {
    if (protocol != "grpc" || absl::GetFlag(FLAGS_streaming)) {
      return Fail("--dataset and --feedback send through the client library: unary gRPC only");
    }
    if (!dataset_flag.empty() && !absl::GetFlag(FLAGS_feedback).empty()) return Fail("give --dataset or --feedback, not both");
    if (!absl::GetFlag(FLAGS_input_json).empty()) return Fail("--dataset/--feedback bring their own inputs; drop --input_json");
    const double fraction = absl::GetFlag(FLAGS_feedback_fraction);
    if (!(fraction >= 0 && fraction <= 1)) return Fail("--feedback_fraction must be in [0, 1]");
    if (!(absl::GetFlag(FLAGS_feedback_delay) >= 0)) return Fail("--feedback_delay must be >= 0");
    plan.fraction = fraction;
    plan.delay = absl::Seconds(absl::GetFlag(FLAGS_feedback_delay));
    if (!dataset_flag.empty()) {
      std::string path = dataset_flag;
      if (dataset_flag == "digits") {
        const char* repo = std::getenv("DYTSERVE_REPO");
        path = absl::StrCat(repo != nullptr ? repo : "build/repository", "/digits_test.json");
      }
      absl::StatusOr<Dataset> loaded = LoadDataset(path);
      if (!loaded.ok()) {
        return Fail(absl::StrCat(loaded.status().message(),
                                 dataset_flag == "digits" ? " (models/export_repository.py writes it; set "
                                                            "DYTSERVE_REPO to the repository)"
                                                          : ""));
      }
      dataset = *std::move(loaded);
    } else {
      absl::StatusOr<std::map<std::string, double>> rates = ParseSyntheticFeedback(absl::GetFlag(FLAGS_feedback));
      if (!rates.ok()) return Fail(std::string(rates.status().message()));
      plan.arm_rates = *std::move(rates);
    }
    ClientOptions feedback_options = options;
    feedback_options.bearer_token.clear();  // the inference token does not open feedback
    if (absl::Status s = ReadToken("--feedback_token_file", absl::GetFlag(FLAGS_feedback_token_file),
                                   &feedback_options.bearer_token);
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
    absl::StatusOr<std::unique_ptr<Client>> created = Client::Create(feedback_options);
    if (!created.ok()) return Fail(std::string(created.status().message()));
    feedback_client = *std::move(created);
  }

  // Requests: the same inputs for every model (A/B compares like with like).
  RequestSource source;
  source.models = models;
  std::vector<std::vector<Tensor>> inputs;
  if (dataset) {
    inputs = dataset->inputs;
  } else if (!absl::GetFlag(FLAGS_input_json).empty()) {
    std::ifstream in(absl::GetFlag(FLAGS_input_json));
    if (!in) return Fail(absl::StrCat("cannot read --input_json ", absl::GetFlag(FLAGS_input_json)));
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<std::vector<Tensor>> parsed = ParseInputsJson(text.str(), absl::GetFlag(FLAGS_input_json));
    if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
    inputs.push_back(*parsed);
  } else {
    absl::StatusOr<ModelMetadata> metadata = protocol == "http" ? HttpModelMetadata(options.endpoints[0], models[0], options.bearer_token)
                                                                : (*client)->GetModelMetadata(models[0]);
    if (!metadata.ok()) return Fail(absl::StrCat("metadata of ", models[0], ": ", metadata.status().ToString()));
    std::mt19937_64 rng(1);
    std::uniform_int_distribution<int64_t> length(seq->first, seq->second);
    for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_distinct_inputs)); ++i) {
      GenerateOptions g;
      g.rows = absl::GetFlag(FLAGS_rows);
      g.seq_len = length(rng);
      g.int_high = absl::GetFlag(FLAGS_int_high);
      absl::StatusOr<std::vector<Tensor>> generated = GenerateInputs(*metadata, g, &rng);
      if (!generated.ok()) return Fail(std::string(generated.status().message()));
      inputs.push_back(*generated);
    }
  }
  for (const auto& in : inputs) {
    for (size_t m = 0; m < models.size(); ++m) source.requests.push_back({static_cast<int>(m), in});
  }
  // With feedback, requests go through a sender that reports outcomes; a
  // dataset's labels are keyed by where each request's inputs live.
  FeedbackSender* feedback_sender = nullptr;
  if (with_feedback) {
    if (dataset) {
      for (size_t i = 0; i < source.requests.size(); ++i) {
        plan.labels[&source.requests[i].second] = dataset->labels[i / models.size()];
      }
    }
    auto owned = std::make_unique<FeedbackSender>(client->get(), std::move(feedback_client), std::move(plan));
    feedback_sender = owned.get();
    sender = std::move(owned);
  }

  // Per-arm accuracy and share over the run, for the HTML report.
  std::map<std::string, ArmTimeline> timeline;
  absl::Notification timeline_done;
  std::thread timeline_thread;
  if (with_feedback && !absl::GetFlag(FLAGS_metrics_url).empty()) {
    timeline_thread = std::thread([&] {
      const absl::Time start = absl::Now();
      std::map<std::string, ExperimentArmFigures> first;
      bool have_first = false;
      do {
        absl::StatusOr<std::string> body = Scrape(absl::GetFlag(FLAGS_metrics_url));
        if (!body.ok()) continue;
        const double t = absl::ToDoubleSeconds(absl::Now() - start);
        std::map<std::string, ExperimentArmFigures> arms = ExperimentArms(*body, models[0]);
        if (!have_first) {
          first = arms;
          have_first = true;
        }
        for (const auto& [arm, f] : arms) {
          ArmTimeline& line = timeline[arm];
          line.arm = arm;
          const double labels = f.labels - first[arm].labels;
          if (labels > 0) line.accuracy.push_back({t, (f.correct - first[arm].correct) / labels});
          if (f.share >= 0) line.share.push_back({t, f.share});
        }
      } while (!timeline_done.WaitForNotificationWithTimeout(absl::Seconds(1)));
    });
  }

  const std::string metrics_url = absl::GetFlag(FLAGS_metrics_url);
  std::vector<StepReport> steps;
  for (double load : loads) {
    LoadSpec spec;
    spec.open_loop = open_loop;
    spec.concurrency = static_cast<int>(load);
    spec.rate = load;
    spec.poisson = arrival == "poisson";
    spec.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
    spec.window = absl::Seconds(absl::GetFlag(FLAGS_window));
    spec.max_windows = std::max(1, static_cast<int>(absl::GetFlag(FLAGS_duration) / absl::GetFlag(FLAGS_window)));
    spec.stable_windows = std::min(3, spec.max_windows);
    spec.stability = absl::GetFlag(FLAGS_stability);
    spec.max_requests = absl::GetFlag(FLAGS_requests);
    StepReport step;
    step.open_loop = open_loop;
    step.load = load;
    step.label = open_loop ? absl::StrCat("rate ", load, "/s") : absl::StrCat("concurrency ", spec.concurrency);
    std::string before, after;
    auto scrape = [&metrics_url](std::string* into) {
      if (metrics_url.empty()) return;
      absl::StatusOr<std::string> body = Scrape(metrics_url);
      if (body.ok()) {
        *into = *body;
      } else {
        std::fprintf(stderr, "dytserve-loadgen: %s\n", std::string(body.status().message()).c_str());
      }
    };
    const bool show = absl::GetFlag(FLAGS_progress);
    step.result = RunStep(
        *sender, source, spec, [&] { scrape(&before); }, [&] { scrape(&after); },
        [&](const Progress& p) {
          if (show) {
            std::fprintf(stderr, "\r[%s] %6.1fs  %8.1f req/s  p99 %8.3f ms  errors %lld   ", step.label.c_str(),
                         p.elapsed_s, p.rps, p.p99_us / 1e3, static_cast<long long>(p.errors));
          }
        });
    if (show) std::fprintf(stderr, "\n");
    if (!before.empty() && !after.empty()) step.server = Breakdown(before, after, models);
    Analyze(models, &step);
    steps.push_back(std::move(step));
  }

  if (timeline_thread.joinable()) {
    timeline_done.Notify();
    timeline_thread.join();
  }
  if (feedback_sender != nullptr) {
    feedback_sender->Finish();
    const FeedbackTally tally = feedback_sender->tally();
    std::string arms;
    for (const auto& [arm, labels] : tally.labels_by_arm) {
      const auto correct = tally.correct_by_arm.find(arm);
      absl::StrAppend(&arms, " ", arm, " ", correct == tally.correct_by_arm.end() ? 0 : correct->second, "/", labels);
    }
    std::printf("feedback: %lld sent, %lld recorded by the server, %lld failed; correct per arm:%s\n",
                static_cast<long long>(tally.sent), static_cast<long long>(tally.recorded),
                static_cast<long long>(tally.failed), arms.c_str());
  }
  std::printf("%s", SummaryText(steps).c_str());
  const auto write = [](const std::string& path, const std::string& text) {
    if (path.empty()) return true;
    std::ofstream out(path);
    out << text;
    if (!out) std::fprintf(stderr, "dytserve-loadgen: cannot write %s\n", path.c_str());
    return static_cast<bool>(out);
  };
  bool ok = write(absl::GetFlag(FLAGS_json), Json(steps));
  ok &= write(absl::GetFlag(FLAGS_csv), Csv(steps));
  std::vector<ArmTimeline> arm_lines;
  for (auto& [arm, line] : timeline) arm_lines.push_back(std::move(line));
  ok &= write(absl::GetFlag(FLAGS_html),
              Html(steps, absl::StrCat("dytserve-loadgen: ", absl::StrJoin(models, " vs ")), arm_lines));
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace dytserve::loadgen

int main(int argc, char** argv) {
  // --help lists this program's flags (absl's default looks for a file named
  // after the binary).
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_help_flags = [](absl::string_view path) { return absl::StrContains(path, "loadgen/"); };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(
      "Load for Open Inference Protocol servers.\n"
      "  dytserve-loadgen --target=HOST:PORT --model=NAME (--concurrency=N | --rate=R) [flags]\n"
      "  dytserve-loadgen --target=HOST:PORT --models=A,B --concurrency_range=1:32:8 --json=out.json");
  // Accept --concurrency-range as well as --concurrency_range: dashes in a
  // flag's name (not in its value) become underscores, absl's spelling.
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& a = args[i];
    if (a.rfind("--", 0) != 0) continue;
    const size_t end = std::min(a.find('='), a.size());
    for (size_t j = 2; j < end; ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> normalized;
  for (std::string& a : args) normalized.push_back(a.data());
  absl::ParseCommandLine(static_cast<int>(normalized.size()), normalized.data());
  return dytserve::loadgen::Run();
}
