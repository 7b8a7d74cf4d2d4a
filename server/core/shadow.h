// A shadow arm's answer compared with the serving arm's answer to the same
// request. The two finish on different batch threads in either order; the
// second to arrive completes the pair, and its caller runs the comparison
// after it has answered its own call, so comparing never delays a client.
#ifndef DYTSERVE_SERVER_CORE_SHADOW_H_
#define DYTSERVE_SERVER_CORE_SHADOW_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "inference/grpc_service.pb.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {

// One output as it goes on the wire: raw little-endian bytes.
struct WireOutput {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Copies the raw outputs of `response`.
std::vector<WireOutput> CopyOutputs(const inference::ModelInferResponse& response);

struct OutputComparison {
  std::string name;
  // False when the shadow lacks the output or it differs in datatype or
  // shape, or the datatype has no numeric comparison here.
  bool comparable = false;
  double max_abs_difference = 0;
  // Arg-max over the last dim, per row (and position), for outputs of rank
  // >= 2: classifier logits, language-model logits.
  int64_t top1_agreeing = 0;
  int64_t top1_compared = 0;
};

// One entry per serving output, in the serving response's order.
std::vector<OutputComparison> CompareOutputs(const std::vector<WireOutput>& serving,
                                             const std::vector<WireOutput>& shadow);

class ShadowComparison {
 public:
  explicit ShadowComparison(std::shared_ptr<ShadowMetrics> metrics) : metrics_(std::move(metrics)) {}

  // Each records its side (outputs are copied only when `status` is OK) and
  // returns true when it completed the pair; that caller then calls Finish.
  bool SetServing(const absl::Status& status, const inference::ModelInferResponse& response);
  bool SetShadow(const absl::Status& status, const inference::ModelInferResponse& response);
  // Compares when both sides succeeded and records the result.
  void Finish();

 private:
  bool Set(bool serving, const absl::Status& status, const inference::ModelInferResponse& response);

  const std::shared_ptr<ShadowMetrics> metrics_;
  absl::Mutex mu_;
  // nullopt: not arrived; an empty vector inside: arrived, failed.
  std::optional<std::vector<WireOutput>> serving_ ABSL_GUARDED_BY(mu_);
  std::optional<std::vector<WireOutput>> shadow_ ABSL_GUARDED_BY(mu_);
  bool serving_ok_ ABSL_GUARDED_BY(mu_) = false;
  bool shadow_ok_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_SHADOW_H_
