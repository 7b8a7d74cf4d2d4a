#include "server/core/shadow.h"

#include <cmath>
#include <cstring>

namespace dytserve {
namespace {

// Element `i` of a raw buffer as double; false for datatypes compared here
// only by name (strings, FP16).
bool ElementReader(const std::string& datatype, double (**read)(const char*, size_t), size_t* width) {
  struct Entry {
    const char* name;
    size_t width;
    double (*read)(const char*, size_t);
  };
  static const Entry kEntries[] = {
      {"FP32", 4, [](const char* p, size_t i) { float v; std::memcpy(&v, p + 4 * i, 4); return double{v}; }},
      {"FP64", 8, [](const char* p, size_t i) { double v; std::memcpy(&v, p + 8 * i, 8); return v; }},
      {"INT32", 4, [](const char* p, size_t i) { int32_t v; std::memcpy(&v, p + 4 * i, 4); return double(v); }},
      {"INT64", 8, [](const char* p, size_t i) { int64_t v; std::memcpy(&v, p + 8 * i, 8); return double(v); }},
      {"BF16", 2,
       [](const char* p, size_t i) {
         uint16_t half;
         std::memcpy(&half, p + 2 * i, 2);
         const uint32_t bits = uint32_t{half} << 16;
         float v;
         std::memcpy(&v, &bits, 4);
         return double{v};
       }},
  };
  for (const Entry& e : kEntries) {
    if (datatype == e.name) {
      *read = e.read;
      *width = e.width;
      return true;
    }
  }
  return false;
}

OutputComparison Compare(const WireOutput& a, const WireOutput& b) {
  OutputComparison out;
  out.name = a.name;
  double (*read)(const char*, size_t) = nullptr;
  size_t width = 0;
  if (a.datatype != b.datatype || a.shape != b.shape || !ElementReader(a.datatype, &read, &width)) return out;
  const size_t n = a.bytes.size() / width;
  if (a.bytes.size() != b.bytes.size() || a.bytes.size() % width != 0) return out;
  out.comparable = true;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(read(a.bytes.data(), i) - read(b.bytes.data(), i));
    // NaN on one side only is the largest difference there is.
    out.max_abs_difference = std::isnan(d) ? INFINITY : std::max(out.max_abs_difference, d);
  }
  if (a.shape.size() >= 2 && a.shape.back() > 0) {
    const size_t classes = static_cast<size_t>(a.shape.back());
    for (size_t row = 0; row + classes <= n; row += classes) {
      size_t best_a = row, best_b = row;
      for (size_t i = row + 1; i < row + classes; ++i) {
        if (read(a.bytes.data(), i) > read(a.bytes.data(), best_a)) best_a = i;
        if (read(b.bytes.data(), i) > read(b.bytes.data(), best_b)) best_b = i;
      }
      out.top1_agreeing += best_a == best_b;
      ++out.top1_compared;
    }
  }
  return out;
}

}  // namespace

std::vector<WireOutput> CopyOutputs(const inference::ModelInferResponse& response) {
  std::vector<WireOutput> outputs;
  for (int i = 0; i < response.outputs_size(); ++i) {
    const auto& o = response.outputs(i);
    WireOutput w{o.name(), o.datatype(), {o.shape().begin(), o.shape().end()}, {}};
    if (i < response.raw_output_contents_size()) w.bytes = response.raw_output_contents(i);
    outputs.push_back(std::move(w));
  }
  return outputs;
}

std::vector<OutputComparison> CompareOutputs(const std::vector<WireOutput>& serving,
                                             const std::vector<WireOutput>& shadow) {
  std::vector<OutputComparison> result;
  for (const WireOutput& a : serving) {
    const WireOutput* b = nullptr;
    for (const WireOutput& candidate : shadow) {
      if (candidate.name == a.name) b = &candidate;
    }
    if (b == nullptr) {
      result.push_back({a.name});
      continue;
    }
    result.push_back(Compare(a, *b));
  }
  return result;
}

bool ShadowComparison::SetServing(const absl::Status& status, const inference::ModelInferResponse& response) {
  return Set(true, status, response);
}

bool ShadowComparison::SetShadow(const absl::Status& status, const inference::ModelInferResponse& response) {
  return Set(false, status, response);
}

bool ShadowComparison::Set(bool serving, const absl::Status& status, const inference::ModelInferResponse& response) {
  std::vector<WireOutput> outputs;
  if (status.ok()) outputs = CopyOutputs(response);  // outside the lock
  absl::MutexLock lock(&mu_);
  (serving ? serving_ : shadow_) = std::move(outputs);
  (serving ? serving_ok_ : shadow_ok_) = status.ok();
  return serving_.has_value() && shadow_.has_value();
}

void ShadowComparison::Finish() {
  std::vector<WireOutput> serving, shadow;
  {
    absl::MutexLock lock(&mu_);
    if (!serving_ok_ || !shadow_ok_ || !serving_.has_value() || !shadow_.has_value()) return;
    serving = std::move(*serving_);
    shadow = std::move(*shadow_);
  }
  for (const OutputComparison& c : CompareOutputs(serving, shadow)) {
    const int index = metrics_->OutputIndex(c.name);
    if (!c.comparable) {
      metrics_->RecordMismatch(index);
      continue;
    }
    metrics_->RecordDifference(index, c.max_abs_difference);
    if (c.top1_compared > 0) metrics_->RecordTop1(index, c.top1_agreeing, c.top1_compared);
  }
}

}  // namespace dytserve
