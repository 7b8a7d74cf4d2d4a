#include "server/core/text_proto.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace dytserve {
namespace {

class CollectFirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
  }
  // Unknown fields, when the parser skips them, come as warnings:
  // Message type "T" has no field named "f".
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string& message) override {
    const size_t t0 = message.find('"');
    const size_t t1 = t0 == std::string::npos ? t0 : message.find('"', t0 + 1);
    const size_t f0 = t1 == std::string::npos ? t1 : message.find('"', t1 + 1);
    const size_t f1 = f0 == std::string::npos ? f0 : message.find('"', f0 + 1);
    if (f1 == std::string::npos) {
      warnings_.push_back(message);
      return;
    }
    warnings_.push_back(absl::StrCat(message.substr(t0 + 1, t1 - t0 - 1), ".", message.substr(f0 + 1, f1 - f0 - 1)));
  }
  const std::string& first() const { return first_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::string first_;
  std::vector<std::string> warnings_;
};

// Parses with unknown fields allowed or not; `unknown` (may be null) gets
// the ones skipped.
absl::Status Parse(absl::string_view text, absl::string_view source, google::protobuf::Message* out,
                   std::vector<std::string>* unknown) {
  google::protobuf::TextFormat::Parser parser;
  parser.AllowUnknownField(unknown != nullptr);
  CollectFirstError errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), out)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", errors.first()));
  }
  if (unknown != nullptr) *unknown = errors.warnings();
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseTextProto(absl::string_view text, absl::string_view source, google::protobuf::Message* out) {
  return Parse(text, source, out, nullptr);
}

absl::Status ParseTextProtoListingUnknown(absl::string_view text, absl::string_view source,
                                          google::protobuf::Message* out, std::vector<std::string>* unknown) {
  return Parse(text, source, out, unknown);
}

}  // namespace dytserve
