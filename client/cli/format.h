// JSON rendering of what dytserve-cli prints.
#ifndef DYTSERVE_CLIENT_CLI_FORMAT_H_
#define DYTSERVE_CLIENT_CLI_FORMAT_H_

#include <string>

#include "dytserve/client.h"

namespace dytserve::cli {

std::string JsonString(absl::string_view s);
std::string ModelMetadataJson(const ModelMetadata& m);
std::string ServerMetadataJson(const ServerMetadata& m);
// Rank-2 float outputs are treated as classifier scores and shown as the
// top_k (index, score) pairs per row when top_k > 0; everything else prints
// its first `max_values` values.
std::string InferResultJson(const InferResult& result, int top_k, int max_values);

}  // namespace dytserve::cli

#endif  // DYTSERVE_CLIENT_CLI_FORMAT_H_
