#include "cli/format.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace dytserve::cli {
namespace {

std::string Number(double v) {
  if (std::isnan(v) || std::isinf(v)) return JsonString(absl::StrCat(v));
  return absl::StrFormat("%.7g", v);
}

std::string ShapeJson(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ","), "]"); }

std::string TensorInfosJson(const std::vector<TensorInfo>& infos) {
  std::vector<std::string> parts;
  for (const TensorInfo& t : infos) {
    parts.push_back(absl::StrCat("{\"name\":", JsonString(t.name), ",\"datatype\":", JsonString(t.datatype),
                                 ",\"shape\":", ShapeJson(t.shape), "}"));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

bool IsFloat(const std::string& dt) { return dt == "FP32" || dt == "FP64" || dt == "FP16" || dt == "BF16"; }

}  // namespace

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string ModelMetadataJson(const ModelMetadata& m) {
  std::vector<std::string> versions;
  for (const std::string& v : m.versions) versions.push_back(JsonString(v));
  return absl::StrCat("{\"name\":", JsonString(m.name), ",\"versions\":[", absl::StrJoin(versions, ","),
                      "],\"platform\":", JsonString(m.platform), ",\"inputs\":", TensorInfosJson(m.inputs),
                      ",\"outputs\":", TensorInfosJson(m.outputs), "}");
}

std::string ServerMetadataJson(const ServerMetadata& m) {
  std::vector<std::string> ext;
  for (const std::string& e : m.extensions) ext.push_back(JsonString(e));
  return absl::StrCat("{\"name\":", JsonString(m.name), ",\"version\":", JsonString(m.version),
                      ",\"extensions\":[", absl::StrJoin(ext, ","), "]}");
}

std::string InferResultJson(const InferResult& result, int top_k, int max_values) {
  std::vector<std::string> outputs;
  for (const Tensor& t : result.outputs) {
    std::string body = absl::StrCat("{\"name\":", JsonString(t.name), ",\"datatype\":", JsonString(t.datatype),
                                    ",\"shape\":", ShapeJson(t.shape));
    absl::StatusOr<std::vector<double>> values = t.AsDoubles();
    if (!values.ok()) {
      absl::StrAppend(&body, ",\"error\":", JsonString(values.status().message()), "}");
      outputs.push_back(body);
      continue;
    }
    if (top_k > 0 && t.shape.size() == 2 && IsFloat(t.datatype) && t.shape[1] > 0) {
      const int64_t classes = t.shape[1];
      std::vector<std::string> rows;
      for (int64_t r = 0; r < t.shape[0]; ++r) {
        std::vector<int64_t> order(static_cast<size_t>(classes));
        std::iota(order.begin(), order.end(), 0);
        const double* row = values->data() + r * classes;
        const int64_t k = std::min<int64_t>(top_k, classes);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [row](int64_t a, int64_t b) { return row[a] > row[b]; });
        std::vector<std::string> picks;
        for (int64_t i = 0; i < k; ++i) {
          picks.push_back(absl::StrCat("{\"index\":", order[i], ",\"score\":", Number(row[order[i]]), "}"));
        }
        rows.push_back(absl::StrCat("[", absl::StrJoin(picks, ","), "]"));
      }
      absl::StrAppend(&body, ",\"top_k\":[", absl::StrJoin(rows, ","), "]}");
    } else {
      const size_t n = std::min(values->size(), static_cast<size_t>(std::max(max_values, 0)));
      std::vector<std::string> shown;
      for (size_t i = 0; i < n; ++i) shown.push_back(Number((*values)[i]));
      absl::StrAppend(&body, ",\"values\":[", absl::StrJoin(shown, ","), "]",
                      n < values->size() ? absl::StrCat(",\"truncated_from\":", values->size()) : "", "}");
    }
    outputs.push_back(body);
  }
  std::vector<std::string> params;
  for (const auto& [k, v] : result.parameters) params.push_back(absl::StrCat(JsonString(k), ":", JsonString(v)));
  return absl::StrCat("{\"model\":", JsonString(result.model_name), ",\"version\":", JsonString(result.model_version),
                      ",\"parameters\":{", absl::StrJoin(params, ","), "},\"outputs\":[",
                      absl::StrJoin(outputs, ","), "]}");
}

}  // namespace dytserve::cli
