#include "server/core/torchscript_backend.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <torch/script.h>

#include "absl/strings/str_cat.h"
#include "server/core/device.h"
#include "server/core/log.h"
#include "server/ops/dyt_fusion.h"

namespace dytserve {
namespace {

// Unpacks what forward returned into tensors in config order.
absl::StatusOr<std::vector<at::Tensor>> Unpack(const torch::jit::IValue& result,
                                               const std::vector<std::string>& output_names) {
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
    for (const std::string& name : output_names) {
      auto it = dict.find(name);
      if (it == dict.end() || !it->value().isTensor()) {
        return absl::InternalError(absl::StrCat("the module's output dict has no tensor '", name, "'"));
      }
      outputs.push_back(it->value().toTensor());
    }
  } else {
    return absl::InternalError(absl::StrCat("the module returned ", result.tagKind(),
                                            "; expected a tensor, a tuple/list of tensors or a dict"));
  }
  return outputs;
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
DytRewrite TryRewriteDyt(const ModelSpec& spec, bool fold, c10::Device device, torch::jit::Module* module) {
  constexpr double kTolerance = 1e-4;
  DytRewrite done;
  try {
    torch::jit::Module candidate = torch::jit::freeze(*module);
    const int fused = ops::FuseDyt(candidate);
    if (fused == 0) return done;
    at::manual_seed(0);
    std::vector<at::Tensor> warmup = SampleInputs(spec, spec.batched() ? 2 : 0, 8, /*random=*/true);
    for (at::Tensor& t : warmup) t = t.to(device);
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
  } catch (const std::exception& e) {
    LogWarning(absl::StrCat("model '", spec.name, "': DyT rewrite failed, serving what passed: ",
                            ForwardFailure(e).message()));
  }
  return done;
}

class TorchScriptBackend final : public ModelBackend {
 public:
  TorchScriptBackend(torch::jit::Module module, BackendFacts facts, const ModelSpec& spec)
      : module_(std::move(module)), facts_(facts) {
    for (const TensorSpec& out : spec.outputs) output_names_.push_back(out.name);
  }

  absl::StatusOr<std::vector<at::Tensor>> Forward(std::vector<at::Tensor> inputs) override {
    try {
      std::vector<torch::jit::IValue> args;
      args.reserve(inputs.size());
      for (at::Tensor& t : inputs) args.emplace_back(std::move(t));
      return Unpack(module_.forward(std::move(args)), output_names_);
    } catch (const std::exception& e) {
      return ForwardFailure(e);
    }
  }

  const BackendFacts& facts() const override { return facts_; }

 private:
  torch::jit::Module module_;
  const BackendFacts facts_;
  std::vector<std::string> output_names_;  // for a module that returns a dict
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> LoadTorchScriptBackend(const std::filesystem::path& file,
                                                                     const ModelSpec& spec) {
  absl::StatusOr<c10::Device> device = ResolveDevice(spec);
  if (!device.ok()) return device.status();
  BackendFacts facts;
  facts.format = ModelFormat::kTorchScript;
  facts.device = *device;
  torch::jit::Module module;
  try {
    module = torch::jit::load(file.string(), *device);
    module.eval();
    for (const at::Tensor& p : module.parameters()) facts.weight_bytes += p.numel() * p.element_size();
    for (const at::Tensor& b : module.buffers()) facts.weight_bytes += b.numel() * b.element_size();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model '", spec.name, "': cannot load ", file.string(), ": ",
                                                   ForwardFailure(e).message()));
  }

  // The module's forward must accept exactly the config's inputs, positionally.
  const c10::FunctionSchema& schema = module.get_method("forward").function().getSchema();
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

  const v1::Optimization& opt = spec.config.optimization();
  try {
    if (opt.freeze()) module = torch::jit::freeze(module);
  } catch (const std::exception& e) {
    return ModelError(spec, "optimization.freeze",
                      absl::StrCat("freezing ", file.string(), " failed: ", ForwardFailure(e).message()));
  }
  if (!opt.has_fuse_dyt() || opt.fuse_dyt()) {
    const DytRewrite rewrite =
        TryRewriteDyt(spec, !opt.has_fold_dyt_affine() || opt.fold_dyt_affine(), *device, &module);
    facts.fused_dyt = rewrite.fused;
    facts.folded_dyt = rewrite.folded;
  }
  return std::make_unique<TorchScriptBackend>(std::move(module), facts, spec);
}

}  // namespace dytserve
