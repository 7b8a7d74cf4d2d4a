// The CPU block cache's figures (server/core/cpu_block_cache.h) for /metrics,
// read at scrape time through a callback, so that metrics need not know the
// allocator.
#ifndef DYTSERVE_SERVER_METRICS_CPU_CACHE_COLLECTOR_H_
#define DYTSERVE_SERVER_METRICS_CPU_CACHE_COLLECTOR_H_

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace dytserve {

struct CpuCacheFigures {
  int64_t in_use_bytes = 0;
  int64_t cached_bytes = 0;
  int64_t reused = 0;
  int64_t mapped = 0;
};

class CpuCacheCollector : public prometheus::Collectable {
 public:
  explicit CpuCacheCollector(std::function<CpuCacheFigures()> read) : read_(std::move(read)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<CpuCacheFigures()> read_;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_CPU_CACHE_COLLECTOR_H_
