#include "server/core/model_version.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/core/infer_task.h"
#include "server/core/log.h"
#include "server/core/model.h"

namespace dytserve {

ModelVersion::ModelVersion(ModelSpec spec, int64_t version, std::shared_ptr<ModelMetrics> metrics)
    : spec_(std::move(spec)),
      version_(version),
      version_string_(std::to_string(version)),
      metrics_(std::move(metrics)) {}

ModelVersion::~ModelVersion() { Shutdown(); }

absl::StatusOr<std::shared_ptr<ModelVersion>> ModelVersion::Load(const ModelSpec& spec, int64_t version,
                                                                 const std::filesystem::path& file,
                                                                 ModelFormat format, ServerMetrics* metrics) {
  const absl::Time start = absl::Now();
  const std::string version_string = std::to_string(version);
  std::vector<std::unique_ptr<Model>> models;
  std::vector<std::string> devices;
  for (int i = 0; i < spec.instance_count; ++i) {
    absl::StatusOr<std::unique_ptr<Model>> model = Model::Load(file, format, spec, metrics->recording());
    if (!model.ok()) return model.status();
    devices.push_back((*model)->device());
    models.push_back(*std::move(model));
  }
  std::shared_ptr<ModelVersion> served(
      new ModelVersion(spec, version, metrics->ForModel(spec.name, version_string, devices)));

  const v1::DynamicBatching& db = spec.config.dynamic_batching();
  Batcher::Options options;
  options.max_batch_size = spec.batched() ? spec.max_batch_size : 1;
  options.preferred_batch_sizes.assign(db.preferred_batch_sizes().begin(), db.preferred_batch_sizes().end());
  // Without a dynamic_batching section a model still batches what is already
  // queued, but never waits for more.
  options.max_queue_delay = absl::Microseconds(db.max_queue_delay_us());
  options.max_queue_size = db.max_queue_size();
  options.idle_flush = absl::Microseconds(db.idle_flush_us());
  options.delay_from_free = db.delay_from_free();
  ModelMetrics* model_metrics = served->metrics_.get();
  options.on_queue_change = [model_metrics](int64_t delta) { model_metrics->AddQueueDepth(static_cast<double>(delta)); };

  for (int i = 0; i < spec.instance_count; ++i) {
    Instance instance;
    instance.model = std::move(models[i]);
    Model* raw = instance.model.get();
    ModelMetrics* m = served->metrics_.get();
    instance.batcher = std::make_unique<Batcher>(
        options, [raw, i, m](Batcher::Batch batch) { RunInferBatch(*raw, i, *m, std::move(batch)); });
    metrics->SetWeightBytes(spec.name, version_string, i, raw->device(), static_cast<double>(raw->weight_bytes()));
    served->instances_.push_back(std::move(instance));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  metrics->SetLoadSeconds(spec.name, version_string, seconds);
  const Model& first = *served->instances_[0].model;
  metrics->SetDytRewrite(spec.name, version_string, first.fused_dyt(), first.folded_dyt());
  LogInfo(absl::StrCat("loaded model '", spec.name, "' version ", version, " (", FormatName(format), ") on ",
                       served->device(), " (",
                       spec.instance_count, " instance(s), ", served->instances_[0].model->weight_bytes(),
                       " weight bytes each) in ", absl::FormatDuration(absl::Now() - start)));
  return served;
}

const std::string& ModelVersion::device() const { return instances_.front().model->device(); }

ModelFormat ModelVersion::format() const { return instances_.front().model->format(); }

absl::Status ModelVersion::Schedule(std::unique_ptr<BatchTask>* task, bool may_run_inline) {
  Batcher* best = nullptr;
  int64_t best_load = 0;
  for (const Instance& instance : instances_) {
    const int64_t load = instance.batcher->load();
    if (best == nullptr || load < best_load) {
      best = instance.batcher.get();
      best_load = load;
    }
  }
  return best->Schedule(task, may_run_inline);
}

bool ModelVersion::full() const {
  for (const Instance& instance : instances_) {
    if (!instance.batcher->full()) return false;
  }
  return true;
}

int64_t ModelVersion::load() const {
  int64_t total = 0;
  for (const Instance& instance : instances_) total += instance.batcher->load();
  return total;
}

void ModelVersion::Shutdown() {
  for (Instance& instance : instances_) instance.batcher->Shutdown();
}

}  // namespace dytserve
