#include "server/ops/dyt_fusion.h"

#include <string>
#include <unordered_set>
#include <vector>

#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/ir/subgraph_matcher.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>

#include "server/ops/dyt_op.h"

namespace dytserve::ops {
namespace {

using torch::jit::Match;
using torch::jit::Value;

struct Pattern {
  std::string ir;
  bool has_bias;
};

// Every operand order of the two muls (and the add, when there is one). The
// biased forms come first: run after the bias-less one they would find its
// `tanh(alpha*x)*w` already gone, leaving the bias add unfused.
std::vector<Pattern> Patterns() {
  std::vector<Pattern> out, bias_less;
  const char* first_mul[] = {"aten::mul(%alpha, %x)", "aten::mul(%x, %alpha)"};
  const char* second_mul[] = {"aten::mul(%t, %w)", "aten::mul(%w, %t)"};
  const char* add[] = {"aten::add(%m, %b, %one)", "aten::add(%b, %m, %one)"};
  for (const char* m1 : first_mul) {
    for (const char* m2 : second_mul) {
      const std::string body = std::string("  %a = ") + m1 + "\n  %t = aten::tanh(%a)\n  %m = " + m2 + "\n";
      bias_less.push_back({"graph(%x, %alpha, %w):\n" + body + "  return (%m)", false});
      for (const char* a : add) {
        out.push_back({"graph(%x, %alpha, %w, %b, %one):\n" + body + "  %y = " + a + "\n  return (%y)", true});
      }
    }
  }
  out.insert(out.end(), bias_less.begin(), bias_less.end());
  return out;
}

std::string Replacement(bool has_bias, bool channels_last) {
  const std::string flag = channels_last ? "1" : "0";
  if (has_bias) {
    return "graph(%x, %alpha, %w, %b, %one):\n  %cl : bool = prim::Constant[value=" + flag +
           "]()\n  %r = dytserve::dyt(%x, %alpha, %w, %b, %cl)\n  return (%r)";
  }
  return "graph(%x, %alpha, %w):\n  %cl : bool = prim::Constant[value=" + flag +
         "]()\n  %none : NoneType = prim::Constant()\n  %r = dytserve::dyt(%x, %alpha, %w, %none, %cl)\n  return (%r)";
}

c10::optional<at::Tensor> ConstantTensor(const Value* v) {
  c10::optional<c10::IValue> iv = torch::jit::toIValue(v);
  if (!iv.has_value() || !iv->isTensor()) return c10::nullopt;
  return iv->toTensor();
}

// 1: shape [C] (channels last); 0: [C, 1, ..., 1] (channels first); -1: neither.
int ChannelLayout(const at::Tensor& t) {
  if (t.dim() == 1) return 1;
  if (t.dim() < 2) return -1;
  for (int64_t d = 1; d < t.dim(); ++d) {
    if (t.size(d) != 1) return -1;
  }
  return 0;
}

// Intermediate values must have no users outside the matched nodes, or
// removing them would break the rest of the graph.
bool SelfContained(const Match& match, const std::unordered_map<std::string, Value*>& vmap, bool has_bias) {
  std::unordered_set<const torch::jit::Node*> nodes;
  for (const auto& [pattern_node, graph_node] : match.nodes_map) nodes.insert(graph_node);
  std::vector<std::string> inner = {"a", "t"};
  if (has_bias) inner.push_back("m");
  for (const std::string& name : inner) {
    const Value* v = match.values_map.at(vmap.at(name));
    for (const torch::jit::Use& use : v->uses()) {
      if (nodes.count(use.user) == 0) return false;
    }
  }
  return true;
}

bool Accept(const Match& match, const std::unordered_map<std::string, Value*>& vmap, bool has_bias,
            bool channels_last) {
  const c10::optional<at::Tensor> alpha = ConstantTensor(match.values_map.at(vmap.at("alpha")));
  const c10::optional<at::Tensor> w = ConstantTensor(match.values_map.at(vmap.at("w")));
  if (!alpha || alpha->numel() != 1 || !alpha->is_floating_point()) return false;
  if (!w || !w->is_floating_point() || ChannelLayout(*w) != (channels_last ? 1 : 0)) return false;
  if (has_bias) {
    const c10::optional<at::Tensor> b = ConstantTensor(match.values_map.at(vmap.at("b")));
    if (!b || !b->is_floating_point() || b->numel() != w->numel() || ChannelLayout(*b) != ChannelLayout(*w)) {
      return false;
    }
    const c10::optional<c10::IValue> one = torch::jit::toIValue(match.values_map.at(vmap.at("one")));
    if (!one || !((one->isInt() && one->toInt() == 1) || (one->isDouble() && one->toDouble() == 1.0))) return false;
  }
  return SelfContained(match, vmap, has_bias);
}

int CountDyt(const torch::jit::Block* block) {
  int n = 0;
  for (const torch::jit::Node* node : block->nodes()) {
    if (node->kind().toQualString() == std::string("dytserve::dyt")) ++n;
    for (const torch::jit::Block* sub : node->blocks()) n += CountDyt(sub);
  }
  return n;
}

}  // namespace

int FuseDytInGraph(std::shared_ptr<torch::jit::Graph>& graph) {
  EnsureDytRegistered();
  const int before = CountDyt(graph->block());
  for (const Pattern& pattern : Patterns()) {
    for (const bool channels_last : {true, false}) {
      torch::jit::SubgraphRewriter rewriter;
      rewriter.RegisterRewritePattern(pattern.ir, Replacement(pattern.has_bias, channels_last));
      const bool has_bias = pattern.has_bias;
      rewriter.runOnGraph(graph, [has_bias, channels_last](const Match& m, const auto& vmap) {
        return Accept(m, vmap, has_bias, channels_last);
      });
    }
  }
  torch::jit::EliminateDeadCode(graph);
  return CountDyt(graph->block()) - before;
}

namespace {

bool IsDyt(const torch::jit::Node* node) { return node->kind().toQualString() == std::string("dytserve::dyt"); }

// Shape queries of a DyT's output are the same as of its input (DyT keeps
// the shape), so they do not stand in the way of folding.
bool IsShapeQuery(const torch::jit::Node* user) {
  const std::string kind = user->kind().toQualString();
  return kind == "aten::size" || kind == "aten::dim";
}

// Every use of `out` is a shape query or the input of an aten::linear whose
// weight (and bias, if any) are constant tensors, and there is a linear.
bool FeedsOnlyConstantLinears(const Value* out) {
  bool any_linear = false;
  for (const torch::jit::Use& use : out->uses()) {
    const torch::jit::Node* user = use.user;
    if (IsShapeQuery(user)) continue;
    any_linear = true;
    if (user->kind().toQualString() != std::string("aten::linear") || use.offset != 0) return false;
    const c10::optional<at::Tensor> w = ConstantTensor(user->input(1));
    if (!w || w->dim() != 2 || !w->is_floating_point()) return false;
    const c10::optional<c10::IValue> b = torch::jit::toIValue(user->input(2));
    if (!b || !(b->isNone() || b->isTensor())) return false;
  }
  return any_linear;
}

int FoldInBlock(torch::jit::Graph& graph, torch::jit::Block* block) {
  int folded = 0;
  for (torch::jit::Node* node : block->nodes()) {
    for (torch::jit::Block* sub : node->blocks()) folded += FoldInBlock(graph, sub);
    if (!IsDyt(node)) continue;
    const c10::optional<c10::IValue> channels_last = torch::jit::toIValue(node->input(4));
    const c10::optional<c10::IValue> w_value = torch::jit::toIValue(node->input(2));
    const c10::optional<c10::IValue> b_value = torch::jit::toIValue(node->input(3));
    if (!channels_last || !channels_last->isBool() || !channels_last->toBool() || !w_value || !b_value) continue;
    if (w_value->isNone() && b_value->isNone()) continue;  // nothing left to fold
    if (!FeedsOnlyConstantLinears(node->output())) continue;
    const at::Tensor w = w_value->isTensor() ? w_value->toTensor().reshape({-1}) : at::Tensor();
    const at::Tensor b = b_value->isTensor() ? b_value->toTensor().reshape({-1}) : at::Tensor();
    bool shapes_fit = true;
    for (const torch::jit::Use& use : node->output()->uses()) {
      if (IsShapeQuery(use.user)) continue;
      const int64_t in_features = ConstantTensor(use.user->input(1))->size(1);
      shapes_fit &= (!w.defined() || w.numel() == in_features) && (!b.defined() || b.numel() == in_features);
    }
    if (!shapes_fit) continue;
    // Shape queries move to the DyT's input; what is left are the linears.
    std::vector<torch::jit::Node*> shape_queries;
    for (const torch::jit::Use& use : node->output()->uses()) {
      if (IsShapeQuery(use.user)) shape_queries.push_back(use.user);
    }
    for (torch::jit::Node* query : shape_queries) query->replaceInputWith(node->output(), node->input(0));
    for (const torch::jit::Use& use : node->output()->uses()) {
      torch::jit::Node* linear = use.user;
      const at::Tensor weight = *ConstantTensor(linear->input(1));
      const c10::IValue bias_value = *torch::jit::toIValue(linear->input(2));
      // Fold in double, store in the layer's dtype.
      const at::Tensor w64 = weight.to(at::kDouble);
      at::Tensor new_weight = w.defined() ? w64 * w.to(at::kDouble).unsqueeze(0) : w64;
      at::Tensor new_bias = bias_value.isTensor() ? bias_value.toTensor().to(at::kDouble)
                                                  : at::zeros({weight.size(0)}, at::kDouble);
      if (b.defined()) new_bias = new_bias + at::mv(w64, b.to(at::kDouble));
      torch::jit::WithInsertPoint guard(linear);
      linear->replaceInput(1, graph.insertConstant(new_weight.to(weight.scalar_type()).contiguous()));
      if (b.defined() || bias_value.isTensor()) {
        linear->replaceInput(2, graph.insertConstant(new_bias.to(weight.scalar_type()).contiguous()));
      }
    }
    torch::jit::WithInsertPoint guard(node);
    torch::jit::Value* none = graph.insertConstant(c10::IValue());
    node->replaceInput(2, none);
    node->replaceInput(3, none);
    ++folded;
  }
  return folded;
}

}  // namespace

int FoldDytAffine(torch::jit::Module& frozen) {
  std::shared_ptr<torch::jit::Graph> graph = frozen.get_method("forward").graph();
  const int folded = FoldInBlock(*graph, graph->block());
  torch::jit::EliminateDeadCode(graph);
  return folded;
}

int FuseDyt(torch::jit::Module& frozen) {
  std::shared_ptr<torch::jit::Graph> graph = frozen.get_method("forward").graph();
  return FuseDytInGraph(graph);
}

}  // namespace dytserve::ops
