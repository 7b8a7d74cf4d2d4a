#include <gtest/gtest.h>

#include "server/metrics/cpu_cache_collector.h"
#include "server/metrics/device_memory_collector.h"
#include "server/metrics/process_collector.h"
#include "server/metrics/server_metrics.h"

namespace dytserve {
namespace {

const prometheus::MetricFamily* Find(const std::vector<prometheus::MetricFamily>& families, const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(ProcessCollector, ReportsThisProcess) {
  const auto families = ProcessCollector().Collect();
  const auto* rss = Find(families, "process_resident_memory_bytes");
  ASSERT_NE(rss, nullptr);
  EXPECT_GT(rss->metric[0].gauge.value, 1 << 20);
  const auto* cpu = Find(families, "process_cpu_seconds_total");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->type, prometheus::MetricType::Counter);
  const auto* start = Find(families, "process_start_time_seconds");
  ASSERT_NE(start, nullptr);
  EXPECT_GT(start->metric[0].gauge.value, 1.6e9) << "seconds since the epoch";
  EXPECT_NE(Find(families, "process_open_fds"), nullptr);
}

TEST(DeviceMemoryCollector, WithoutNvmlOrCudaExportsNothingAndDoesNotFail) {
  DeviceMemoryCollector collector("libdytserve-no-such-nvml.so");
  EXPECT_FALSE(collector.nvml_available());
  const auto families = collector.Collect();
  EXPECT_EQ(Find(families, "dytserve_gpu_memory_used_bytes"), nullptr);
}

TEST(CpuCacheCollector, ExportsWhatTheCallbackReadsAtScrapeTime) {
  CpuCacheFigures figures{100, 200, 3, 4};
  CpuCacheCollector collector([&figures] { return figures; });
  figures.reused = 5;  // read at Collect, not at construction
  const auto families = collector.Collect();
  const auto* bytes = Find(families, "dytserve_cpu_block_cache_bytes");
  ASSERT_NE(bytes, nullptr);
  EXPECT_EQ(bytes->type, prometheus::MetricType::Gauge);
  ASSERT_EQ(bytes->metric.size(), 2u);
  EXPECT_EQ(bytes->metric[0].label[0].value, "in_use");
  EXPECT_EQ(bytes->metric[0].gauge.value, 100);
  EXPECT_EQ(bytes->metric[1].label[0].value, "cached");
  EXPECT_EQ(bytes->metric[1].gauge.value, 200);
  const auto* allocations = Find(families, "dytserve_cpu_block_cache_allocations_total");
  ASSERT_NE(allocations, nullptr);
  EXPECT_EQ(allocations->type, prometheus::MetricType::Counter);
  ASSERT_EQ(allocations->metric.size(), 2u);
  EXPECT_EQ(allocations->metric[0].label[0].value, "reused");
  EXPECT_EQ(allocations->metric[0].counter.value, 5);
  EXPECT_EQ(allocations->metric[1].label[0].value, "mapped");
  EXPECT_EQ(allocations->metric[1].counter.value, 4);
}

TEST(ModelMetrics, PeakBatchBytesKeepsTheLargest) {
  ServerMetrics metrics({}, {"test", "none", false});
  std::shared_ptr<ModelMetrics> m = metrics.ForModel("m", "1", {"cpu", "cpu"});
  m->RecordPeakBytes(1, 100);
  m->RecordPeakBytes(1, 50);
  m->RecordPeakBytes(7, 1e9);  // no such instance: ignored
  const auto families = metrics.registry()->Collect();
  const auto* peak = Find(families, "dytserve_model_peak_batch_bytes");
  ASSERT_NE(peak, nullptr);
  ASSERT_EQ(peak->metric.size(), 2u);
  double instance1 = -1;
  for (const auto& metric : peak->metric) {
    for (const auto& label : metric.label) {
      if (label.name == "model_instance" && label.value == "1") instance1 = metric.gauge.value;
    }
  }
  EXPECT_EQ(instance1, 100);
}

}  // namespace
}  // namespace dytserve
