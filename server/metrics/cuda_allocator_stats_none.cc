// CPU-only builds: there is no CUDA caching allocator to report.
#include "server/metrics/device_memory_collector.h"

namespace dytserve {

std::vector<prometheus::MetricFamily> CollectCudaAllocatorStats() { return {}; }

}  // namespace dytserve
