// Standard Prometheus process metrics (process_resident_memory_bytes,
// process_cpu_seconds_total, ...) read from /proc at scrape time, under the
// names every dashboard already knows.
#ifndef DYTSERVE_SERVER_METRICS_PROCESS_COLLECTOR_H_
#define DYTSERVE_SERVER_METRICS_PROCESS_COLLECTOR_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace dytserve {

class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_METRICS_PROCESS_COLLECTOR_H_
