#include "loadgen/feedback.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace dytserve::loadgen {

using nlohmann::json;

absl::StatusOr<Dataset> LoadDataset(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--dataset: cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  const json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  auto bad = [&path](const std::string& why) { return absl::InvalidArgumentError(absl::StrCat(path, ": ", why)); };
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  for (const char* key : {"input", "datatype", "shape", "examples"}) {
    if (!doc.contains(key)) return bad(absl::StrCat("no \"", key, "\""));
  }
  if (!doc["input"].is_string() || doc["datatype"] != "FP32" || !doc["shape"].is_array() ||
      !doc["examples"].is_array()) {
    return bad("\"input\" must be a name, \"datatype\" FP32, \"shape\" and \"examples\" arrays");
  }
  Dataset d;
  d.name = doc.value("name", path);
  std::vector<int64_t> shape = {1};
  int64_t size = 1;
  for (const json& dim : doc["shape"]) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 1) return bad("\"shape\" must hold positive integers");
    shape.push_back(dim.get<int64_t>());
    size *= dim.get<int64_t>();
  }
  for (size_t i = 0; i < doc["examples"].size(); ++i) {
    const json& e = doc["examples"][i];
    if (!e.is_object() || !e.contains("data") || !e["data"].is_array() || !e.contains("label") ||
        !e["label"].is_number_integer()) {
      return bad(absl::StrCat("examples[", i, "] needs \"data\" (numbers) and \"label\" (an integer)"));
    }
    if (static_cast<int64_t>(e["data"].size()) != size) {
      return bad(absl::StrCat("examples[", i, "].data has ", e["data"].size(), " values; the shape holds ", size));
    }
    std::vector<float> values;
    values.reserve(static_cast<size_t>(size));
    for (const json& v : e["data"]) {
      if (!v.is_number()) return bad(absl::StrCat("examples[", i, "].data holds a value that is not a number"));
      values.push_back(v.get<float>());
    }
    d.inputs.push_back({Tensor::From<float>(doc["input"].get<std::string>(), shape, values)});
    d.labels.push_back(e["label"].get<int64_t>());
  }
  if (d.inputs.empty()) return bad("no examples");
  return d;
}

absl::StatusOr<std::map<std::string, double>> ParseSyntheticFeedback(const std::string& flag) {
  absl::string_view rest = flag;
  if (!absl::ConsumePrefix(&rest, "synthetic:")) {
    return absl::InvalidArgumentError(absl::StrCat("--feedback='", flag, "': synthetic:ARM=RATE,... (e.g. "
                                                   "synthetic:ln=0.95,dyt=0.93)"));
  }
  std::map<std::string, double> rates;
  for (absl::string_view part : absl::StrSplit(rest, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    double rate = 0;
    if (kv.first.empty() || !absl::SimpleAtod(kv.second, &rate) || !(rate >= 0 && rate <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--feedback: '", part, "' is not ARM=RATE with RATE in [0, 1]"));
    }
    rates[kv.first] = rate;
  }
  if (rates.empty()) return absl::InvalidArgumentError("--feedback=synthetic: name at least one ARM=RATE");
  return rates;
}

int64_t TopOne(const InferResult& result, int64_t* classes) {
  if (result.outputs.empty() || result.outputs[0].datatype != "FP32" || result.outputs[0].shape.size() < 2) return -1;
  const Tensor& t = result.outputs[0];
  absl::StatusOr<std::vector<float>> values = t.As<float>();
  const int64_t width = t.shape.back();
  if (!values.ok() || width < 1 || static_cast<int64_t>(values->size()) < width) return -1;
  int64_t best = 0;
  for (int64_t i = 1; i < width; ++i) {
    if ((*values)[i] > (*values)[best]) best = i;
  }
  *classes = width;
  return best;
}

FeedbackSender::FeedbackSender(Client* client, std::unique_ptr<Client> feedback, FeedbackPlan plan)
    : client_(client), feedback_(std::move(feedback)), plan_(std::move(plan)), rng_(plan_.seed) {
  thread_ = std::thread([this] { Loop(); });
}

FeedbackSender::~FeedbackSender() { Finish(); }

void FeedbackSender::Finish() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void FeedbackSender::InferAsync(const std::string& model, const std::vector<Tensor>& inputs, Done done) {
  auto label = plan_.labels.find(&inputs);
  const int64_t known = label == plan_.labels.end() ? -1 : label->second;
  client_->InferAsync(model, inputs, {}, [this, known, done = std::move(done)](absl::StatusOr<InferResult> r) {
    if (r.ok()) {
      int64_t classes = 0;
      const int64_t top1 = TopOne(*r, &classes);
      const std::string arm = r->parameters.count("arm") > 0 ? r->parameters.at("arm") : r->model_name;
      absl::MutexLock lock(&mu_);
      std::uniform_real_distribution<double> uniform(0, 1);
      int64_t truth = known;
      if (truth < 0 && top1 >= 0) {
        auto rate = plan_.arm_rates.find(arm);
        if (rate != plan_.arm_rates.end()) {
          truth = uniform(rng_) < rate->second ? top1 : (top1 + 1 + static_cast<int64_t>(uniform(rng_) * (classes - 1))) % classes;
        }
      }
      if (truth >= 0 && uniform(rng_) < plan_.fraction) {
        Client::FeedbackOutcome outcome;
        outcome.label = truth;
        queue_.push_back({absl::Now() + plan_.delay, r->id, outcome});
        ++tally_.labels_by_arm[arm];
        tally_.correct_by_arm[arm] += truth == top1;
      }
    }
    done(r.status());
  });
}

void FeedbackSender::Loop() {
  for (;;) {
    Pending next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](FeedbackSender* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->stopping_ || !s->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      next = queue_.front();
      if (next.due > absl::Now() && !stopping_) {
        // Wait for it to be due (or for the stop, which sends the rest at once).
        mu_.AwaitWithDeadline(
            absl::Condition(+[](FeedbackSender* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) { return s->stopping_; }, this),
            next.due);
        continue;
      }
      queue_.pop_front();
    }
    absl::StatusOr<bool> recorded = feedback_->Feedback(next.id, next.outcome);
    absl::MutexLock lock(&mu_);
    ++tally_.sent;
    if (!recorded.ok()) {
      if (tally_.failed++ == 0) std::fprintf(stderr, "dytserve-loadgen: feedback: %s\n", recorded.status().ToString().c_str());
    } else if (*recorded) {
      ++tally_.recorded;
    }
  }
}

FeedbackTally FeedbackSender::tally() const {
  absl::MutexLock lock(&mu_);
  return tally_;
}

}  // namespace dytserve::loadgen
