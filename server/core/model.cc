#include "server/core/model.h"

#include <ATen/Parallel.h>
#include <cmath>
#include <limits>
#include <optional>

#include <torch/cuda.h>
#include <torch/script.h>

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#ifdef DYTSERVE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_join.h"
#include "server/core/log.h"
#include "server/core/tensor_codec.h"
#include "server/ops/dyt_fusion.h"

namespace dytserve {
namespace {

// Variable dims in the load-time sample take this size: small, but above 1 so
// that a module which silently squeezes a dimension still fails the check.
constexpr int64_t kSampleVariableDim = 2;

absl::Status ModelError(const ModelSpec& spec, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "': ", field, ": ", what));
}

absl::StatusOr<torch::Device> ResolveDevice(const ModelSpec& spec) {
  const std::string& wanted = spec.device;
  if (wanted == "cpu") return torch::Device(torch::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (wanted == "auto") {
    if (cuda) return torch::Device(torch::kCUDA, 0);
    LogInfo(absl::StrCat("model '", spec.name, "': device auto: CUDA is not available, serving on CPU"));
    return torch::Device(torch::kCPU);
  }
  if (!cuda) {
    return ModelError(spec, "instance_group.device",
                      absl::StrCat("'", wanted, "' requested but CUDA is not available on this server"));
  }
  const int index = wanted == "cuda" ? 0 : std::stoi(wanted.substr(5));
  if (index >= static_cast<int>(torch::cuda::device_count())) {
    return ModelError(spec, "instance_group.device",
                      absl::StrCat("'", wanted, "' but only ", torch::cuda::device_count(), " CUDA devices exist"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

// Follows the bytes allocated and freed on this thread while installed; see
// Model::last_peak_bytes().
class PeakMemoryTracker final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t alloc_size, int64_t, int64_t, c10::Device) override {
    current_ += alloc_size;
    peak_ = std::max(peak_, current_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t peak() const { return peak_; }

 private:
  int64_t current_ = 0;
  int64_t peak_ = 0;
};

// Inputs that exercise the model: random floats, zero ids, masks of ones;
// `rows` rows and variable dims of `length`.
std::vector<at::Tensor> WarmupInputs(const ModelSpec& spec, int64_t rows, int64_t length, bool random) {
  std::vector<at::Tensor> inputs;
  for (const TensorSpec& in : spec.inputs) {
    std::vector<int64_t> shape = spec.WireShape(in);
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) shape[i] = (spec.batched() && i == 0) ? rows : length;
    }
    const auto options = at::TensorOptions().dtype(ScalarTypeOf(in.type));
    if (in.generated()) {
      inputs.push_back(at::ones(shape, options));  // every position real
    } else if (random && at::isFloatingType(ScalarTypeOf(in.type))) {
      inputs.push_back(at::randn(shape, at::TensorOptions().dtype(at::kFloat)).to(ScalarTypeOf(in.type)));
    } else {
      inputs.push_back(at::zeros(shape, options));
    }
  }
  return inputs;
}

std::vector<at::Tensor> RunModule(torch::jit::Module& module, const std::vector<at::Tensor>& inputs) {
  c10::InferenceMode guard;
  std::vector<torch::jit::IValue> args(inputs.begin(), inputs.end());
  torch::jit::IValue result = module.forward(args);
  std::vector<at::Tensor> out;
  if (result.isTensor()) {
    out.push_back(result.toTensor());
  } else if (result.isTuple()) {
    for (const auto& v : result.toTupleRef().elements()) {
      if (v.isTensor()) out.push_back(v.toTensor());
    }
  }
  return out;
}

// Largest difference between two output lists, relative to the first's
// largest magnitude; infinity when the lists do not line up.
double MaxRelativeDifference(const std::vector<at::Tensor>& want, const std::vector<at::Tensor>& got) {
  if (want.size() != got.size() || want.empty()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i].sizes() != got[i].sizes()) return std::numeric_limits<double>::infinity();
    const at::Tensor a = want[i].to(at::kDouble), b = got[i].to(at::kDouble);
    const double scale = std::max(a.abs().max().item<double>(), 1e-6);
    worst = std::max(worst, (a - b).abs().max().item<double>() / scale);
  }
  return std::isnan(worst) ? std::numeric_limits<double>::infinity() : worst;
}

struct DytRewrite {
  int fused = 0;
  int folded = 0;
};

// Freezes a copy of `module`, fuses its DyT subgraphs and (if `fold`) folds
// their affine parts into the Linear layers they feed. Each step is kept only
// if the result reproduces the original's outputs on a random warm-up input
// (relative error <= 1e-4); otherwise the previous stage stays, and the log
// says why.
DytRewrite TryRewriteDyt(const ModelSpec& spec, bool fold, torch::jit::Module* module) {
  constexpr double kTolerance = 1e-4;
  DytRewrite done;
  try {
    torch::jit::Module candidate = torch::jit::freeze(*module);
    const int fused = ops::FuseDyt(candidate);
    if (fused == 0) return done;
    at::manual_seed(0);
    const std::vector<at::Tensor> warmup = WarmupInputs(spec, spec.batched() ? 2 : 0, 8, /*random=*/true);
    const std::vector<at::Tensor> want = RunModule(*module, warmup);
    const double fused_diff = MaxRelativeDifference(want, RunModule(candidate, warmup));
    if (!(fused_diff <= kTolerance)) {
      LogWarning(absl::StrCat("model '", spec.name, "': fused DyT differs from the original by ", fused_diff,
                              " (relative) on the warm-up input, above ", kTolerance, "; serving the original"));
      return done;
    }
    *module = candidate;
    done.fused = fused;
    double folded_diff = 0;
    if (fold) {
      torch::jit::Module folded = candidate.clone();
      const int count = ops::FoldDytAffine(folded);
      if (count > 0) {
        folded_diff = MaxRelativeDifference(want, RunModule(folded, warmup));
        if (folded_diff <= kTolerance) {
          *module = folded;
          done.folded = count;
        } else {
          LogWarning(absl::StrCat("model '", spec.name, "': folding DyT affines into Linear layers changes outputs by ",
                                  folded_diff, " (relative), above ", kTolerance, "; serving fused, unfolded"));
        }
      }
    }
    LogInfo(absl::StrCat("model '", spec.name, "': fused ", done.fused, " DyT subgraph(s) into dytserve::dyt, folded ",
                         done.folded, " affine(s) into Linear layers (", std::max(fused_diff, folded_diff),
                         " relative difference on the warm-up input)"));
  } catch (const c10::Error& e) {
    LogWarning(absl::StrCat("model '", spec.name, "': DyT rewrite failed, serving what passed: ",
                            e.what_without_backtrace()));
  } catch (const std::exception& e) {
    LogWarning(absl::StrCat("model '", spec.name, "': DyT rewrite failed, serving what passed: ", e.what()));
  }
  return done;
}

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

struct Model::Impl {
  torch::jit::Module module;
  torch::Device device{torch::kCPU};
  ModelSpec spec;
  int threads = 0;
  bool track_memory = true;
  int fused_dyt = 0;
  int folded_dyt = 0;
  int64_t weight_bytes = 0;  // counted before freezing turns parameters into constants
};

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  device_name_ = impl_->device.str();
  fused_dyt_ = impl_->fused_dyt;
  folded_dyt_ = impl_->folded_dyt;
  weight_bytes_ = impl_->weight_bytes;
}

Model::~Model() = default;

const ModelSpec& Model::spec() const { return impl_->spec; }

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::filesystem::path& file, const ModelSpec& spec,
                                                   bool track_memory) {
  absl::StatusOr<torch::Device> device = ResolveDevice(spec);
  if (!device.ok()) return device.status();

  auto impl = std::make_unique<Impl>();
  impl->device = *device;
  impl->spec = spec;
  impl->threads = static_cast<int>(spec.config.optimization().intra_op_threads());
  impl->track_memory = track_memory;
  try {
    impl->module = torch::jit::load(file.string(), *device);
    impl->module.eval();
    for (const at::Tensor& p : impl->module.parameters()) impl->weight_bytes += p.numel() * p.element_size();
    for (const at::Tensor& b : impl->module.buffers()) impl->weight_bytes += b.numel() * b.element_size();
    if (spec.config.optimization().freeze()) impl->module = torch::jit::freeze(impl->module);
    const v1::Optimization& opt = spec.config.optimization();
    if (!opt.has_fuse_dyt() || opt.fuse_dyt()) {
      const DytRewrite rewrite =
          TryRewriteDyt(spec, !opt.has_fold_dyt_affine() || opt.fold_dyt_affine(), &impl->module);
      impl->fused_dyt = rewrite.fused;
      impl->folded_dyt = rewrite.folded;
    }
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "': cannot load ", file.string(), ": ",
                                                   e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", spec.name, "': cannot load ", file.string(), ": ", e.what()));
  }

  // The module's forward must accept exactly the config's inputs, positionally.
  const c10::FunctionSchema& schema = impl->module.get_method("forward").function().getSchema();
  size_t required = 0;
  const size_t total = schema.arguments().size() - 1;  // minus self
  for (size_t i = 1; i < schema.arguments().size(); ++i) {
    if (!schema.arguments()[i].default_value().has_value()) ++required;
  }
  if (spec.inputs.size() < required || spec.inputs.size() > total) {
    return ModelError(spec, "input",
                      absl::StrCat("the config names ", spec.inputs.size(), " inputs, the module's forward takes ",
                                   required == total ? absl::StrCat(total) : absl::StrCat(required, " to ", total)));
  }

  std::unique_ptr<Model> model(new Model(std::move(impl)));

  // Run a sample built from the config and compare what comes back.
  std::vector<at::Tensor> sample;
  const int64_t rows = spec.batched() ? 1 : 0;
  for (const TensorSpec& in : spec.inputs) {
    std::vector<int64_t> shape = spec.WireShape(in);
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) shape[i] = (spec.batched() && i == 0) ? rows : kSampleVariableDim;
    }
    // A mask marks every sample position as real.
    sample.push_back(in.generated() ? at::ones(shape, at::TensorOptions().dtype(ScalarTypeOf(in.type)))
                                    : at::zeros(shape, at::TensorOptions().dtype(ScalarTypeOf(in.type))));
  }
  absl::StatusOr<std::vector<at::Tensor>> outputs = model->Forward(sample);
  if (!outputs.ok()) {
    return ModelError(spec, "input",
                      absl::StrCat("forward on a sample built from the config failed: ", outputs.status().message()));
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i) {
    const TensorSpec& out = spec.outputs[i];
    const at::Tensor& t = (*outputs)[i];
    const std::string field = absl::StrCat("output[", i, "] '", out.name, "'");
    absl::StatusOr<DataType> type = DataTypeOf(t);
    if (!type.ok() || *type != out.type) {
      return ModelError(spec, absl::StrCat(field, ".data_type"),
                        absl::StrCat("the module returns ", c10::toString(t.scalar_type()), ", the config says ",
                                     DataTypeName(out.type)));
    }
    const std::vector<int64_t> expected = spec.WireShape(out);
    bool match = static_cast<size_t>(t.dim()) == expected.size();
    for (size_t d = 0; match && d < expected.size(); ++d) {
      if (spec.batched() && d == 0) {
        match = t.size(0) == rows;
      } else if (expected[d] != -1) {
        match = t.size(static_cast<int64_t>(d)) == expected[d];
      }
    }
    if (!match) {
      return ModelError(spec, absl::StrCat(field, ".dims"),
                        absl::StrCat("the module returns shape ", ShapeString(t.sizes()),
                                     spec.batched() ? absl::StrCat(" for a sample of ", rows, " row(s)") : "",
                                     ", the config says ", ShapeString(expected)));
    }
  }
  return model;
}

absl::StatusOr<std::vector<at::Tensor>> Model::Forward(const std::vector<at::Tensor>& inputs) {
  if (impl_->threads > 0 && at::get_num_threads() != impl_->threads) at::set_num_threads(impl_->threads);
  const ModelSpec& spec = impl_->spec;
  auto tracker = impl_->track_memory ? std::make_shared<PeakMemoryTracker>() : nullptr;
  int64_t input_bytes = 0;
  for (const at::Tensor& t : inputs) input_bytes += t.numel() * t.element_size();
  try {
    std::optional<c10::DebugInfoGuard> tracking;
    if (tracker != nullptr) tracking.emplace(c10::DebugInfoKind::PROFILER_STATE, tracker);
    c10::InferenceMode guard;
    std::vector<torch::jit::IValue> args;
    args.reserve(inputs.size());
    for (const at::Tensor& t : inputs) args.emplace_back(t.to(impl_->device));
    torch::jit::IValue result = impl_->module.forward(std::move(args));

    std::vector<at::Tensor> outputs;
    if (result.isTensor()) {
      outputs.push_back(result.toTensor());
    } else if (result.isTuple()) {
      for (const auto& v : result.toTupleRef().elements()) {
        if (!v.isTensor()) return absl::InternalError("the module returned a tuple holding a non-tensor");
        outputs.push_back(v.toTensor());
      }
    } else if (result.isTensorList()) {
      for (const at::Tensor& t : result.toTensorVector()) outputs.push_back(t);
    } else if (result.isGenericDict()) {
      auto dict = result.toGenericDict();
      for (const TensorSpec& out : spec.outputs) {
        auto it = dict.find(out.name);
        if (it == dict.end() || !it->value().isTensor()) {
          return absl::InternalError(absl::StrCat("the module's output dict has no tensor '", out.name, "'"));
        }
        outputs.push_back(it->value().toTensor());
      }
    } else {
      return absl::InternalError(absl::StrCat("the module returned ", result.tagKind(),
                                              "; expected a tensor, a tuple/list of tensors or a dict"));
    }
    if (outputs.size() != spec.outputs.size()) {
      return absl::InternalError(absl::StrCat("the module returned ", outputs.size(), " outputs, the config names ",
                                              spec.outputs.size()));
    }
    for (at::Tensor& t : outputs) t = t.to(torch::kCPU).contiguous();
    last_peak_bytes_ = tracker != nullptr ? input_bytes + tracker->peak() : 0;
    return outputs;
  } catch (const c10::Error& e) {
    // The backtrace belongs in a debugger, not in a client's error message.
    return FailedForward(e.what_without_backtrace(), dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr);
  } catch (const std::exception& e) {
    return FailedForward(e.what(), false);
  }
}

absl::Status Model::FailedForward(absl::string_view what, bool out_of_memory) {
  // Allocator failures also arrive as plain errors (through the TorchScript
  // interpreter, or from the CPU allocator), recognisable only by their
  // message: its last line, since the interpreter's traceback above it
  // quotes source code, which may say anything.
  absl::string_view last = absl::StripTrailingAsciiWhitespace(what);
  if (const size_t newline = last.rfind('\n'); newline != absl::string_view::npos) last.remove_prefix(newline + 1);
  const std::string lower = absl::AsciiStrToLower(last);
  out_of_memory = out_of_memory || absl::StrContains(lower, "out of memory") ||
                  absl::StrContains(lower, "not enough memory");
  if (!out_of_memory) return absl::InternalError(absl::StrCat("model '", impl_->spec.name, "' failed: ", what));
#ifdef DYTSERVE_WITH_CUDA
  // Cached blocks of the failed pass are free now; give them back so that
  // the smaller retry (the caller splits the batch) finds room.
  if (impl_->device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  return absl::ResourceExhaustedError(absl::StrCat("model '", impl_->spec.name, "' ran out of memory: ", what));
}

}  // namespace dytserve
