// Strict protobuf text format for files people write (config.pbtxt,
// experiments.pbtxt): unknown fields and syntax errors fail the parse.
#ifndef DYTSERVE_SERVER_CORE_TEXT_PROTO_H_
#define DYTSERVE_SERVER_CORE_TEXT_PROTO_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace dytserve {

// INVALID_ARGUMENT naming `source`, the line and the column of the first error.
absl::Status ParseTextProto(absl::string_view text, absl::string_view source, google::protobuf::Message* out);

// The same, but fields unknown to `out`'s schema are skipped and listed in
// `unknown` as "<message type>.<field>" (syntax errors still fail).
absl::Status ParseTextProtoListingUnknown(absl::string_view text, absl::string_view source,
                                          google::protobuf::Message* out, std::vector<std::string>* unknown);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_TEXT_PROTO_H_
