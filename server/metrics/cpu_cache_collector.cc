#include "server/metrics/cpu_cache_collector.h"

namespace dytserve {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  return family;
}

void Add(prometheus::MetricFamily* family, const char* label, const char* value, int64_t figure) {
  prometheus::ClientMetric metric;
  metric.label.push_back({label, value});
  if (family->type == prometheus::MetricType::Counter) {
    metric.counter.value = static_cast<double>(figure);
  } else {
    metric.gauge.value = static_cast<double>(figure);
  }
  family->metric.push_back(metric);
}

}  // namespace

std::vector<prometheus::MetricFamily> CpuCacheCollector::Collect() const {
  const CpuCacheFigures figures = read_();
  auto bytes = Family("dytserve_cpu_block_cache_bytes",
                      "Large CPU blocks (activations, outputs) handed out (in_use) or kept for reuse (cached).",
                      prometheus::MetricType::Gauge);
  Add(&bytes, "state", "in_use", figures.in_use_bytes);
  Add(&bytes, "state", "cached", figures.cached_bytes);
  auto allocations = Family("dytserve_cpu_block_cache_allocations_total",
                            "Large CPU allocations served from the cache (reused) or by mapping fresh memory (mapped).",
                            prometheus::MetricType::Counter);
  Add(&allocations, "source", "reused", figures.reused);
  Add(&allocations, "source", "mapped", figures.mapped);
  return {bytes, allocations};
}

}  // namespace dytserve
