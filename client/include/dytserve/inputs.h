// Building request inputs without writing them by hand: from a model's
// metadata (random or zeros) or from a JSON file. Shared by dytserve-cli and
// dytserve-loadgen.
#ifndef DYTSERVE_CLIENT_INPUTS_H_
#define DYTSERVE_CLIENT_INPUTS_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dytserve/client.h"
#include "dytserve/tensor.h"

namespace dytserve {

struct GenerateOptions {
  enum class Fill { kRandom, kZeros };
  Fill fill = Fill::kRandom;
  int64_t rows = 1;     // size of the batch dimension (the first -1 of a batched model)
  int64_t seq_len = 8;  // size of every other -1 dimension
  // Random integers are drawn from [0, int_high); floats from [0, 1).
  int64_t int_high = 100;
};

// One tensor per metadata input. The first dim of a -1-led shape is the batch.
absl::StatusOr<std::vector<Tensor>> GenerateInputs(const ModelMetadata& metadata, const GenerateOptions& options,
                                                   std::mt19937_64* rng);

// Reads {"inputs": [{"name": ..., "datatype": "FP32", "shape": [...],
// "data": [...]}, ...]} (the KServe v2 REST layout). Errors name the file and
// the offending input.
absl::StatusOr<std::vector<Tensor>> ParseInputsJson(const std::string& json, const std::string& source);

}  // namespace dytserve

#endif  // DYTSERVE_CLIENT_INPUTS_H_
