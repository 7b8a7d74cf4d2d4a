#include "server/ops/dyt_fusion.h"

#include <gtest/gtest.h>
#include <torch/script.h>

namespace dytserve::ops {
namespace {

constexpr int64_t kC = 16;

// A module with DyT-shaped parameters and the given forward, frozen.
torch::jit::Module Frozen(const std::string& forward, at::Tensor alpha = at::full({1}, 0.7)) {
  torch::jit::Module m("M");
  m.register_parameter("alpha", alpha, false);
  m.register_parameter("w", at::randn({kC}), false);
  m.register_parameter("b", at::randn({kC}), false);
  m.define(forward);
  m.eval();
  return torch::jit::freeze(m);
}

int CountKind(const torch::jit::Module& m, const char* kind) {
  int n = 0;
  for (const torch::jit::Node* node : m.get_method("forward").graph()->nodes()) {
    n += node->kind().toQualString() == std::string(kind);
  }
  return n;
}

struct Variant {
  const char* label;
  std::string forward;
  std::vector<int64_t> shape;
  int fused;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.label; }

class Fusion : public ::testing::TestWithParam<Variant> {};

TEST_P(Fusion, FusesExactlyTheDytPatternsAndKeepsOutputs) {
  at::manual_seed(3);
  torch::jit::Module original = Frozen(GetParam().forward);
  torch::jit::Module fused = original.clone();
  EXPECT_EQ(FuseDyt(fused), GetParam().fused);
  EXPECT_EQ(CountKind(fused, "dytserve::dyt"), GetParam().fused);
  if (GetParam().fused > 0) {
    EXPECT_EQ(CountKind(fused, "aten::tanh"), 0) << "the pattern's tanh is gone";
  }
  const at::Tensor x = at::randn(GetParam().shape) * 2;
  c10::InferenceMode guard;
  const at::Tensor want = original.forward({x}).toTensor();
  const at::Tensor got = fused.forward({x}).toTensor();
  EXPECT_LE((want - got).abs().max().item<double>(), 2e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, Fusion,
    ::testing::Values(
        Variant{"canonical", "def forward(self, x):\n  return torch.tanh(self.alpha * x) * self.w + self.b\n",
                {4, 5, kC}, 1},
        Variant{"commuted", "def forward(self, x):\n  return self.b + self.w * torch.tanh(x * self.alpha)\n",
                {4, kC}, 1},
        Variant{"bias_less", "def forward(self, x):\n  return torch.tanh(self.alpha * x) * self.w\n", {3, kC}, 1},
        Variant{"channels_first",
                "def forward(self, x):\n"
                "  return torch.tanh(self.alpha * x) * self.w[:, None, None] + self.b[:, None, None]\n",
                {2, kC, 3, 5}, 1},
        Variant{"two_in_a_row",
                "def forward(self, x):\n"
                "  y = torch.tanh(self.alpha * x) * self.w + self.b\n"
                "  return torch.tanh(self.alpha * y) * self.w + self.b\n",
                {2, kC}, 2},
        Variant{"no_alpha", "def forward(self, x):\n  return torch.tanh(x) * self.w + self.b\n", {2, kC}, 0},
        Variant{"not_tanh", "def forward(self, x):\n  return torch.sigmoid(self.alpha * x) * self.w + self.b\n",
                {2, kC}, 0},
        Variant{"intermediate_used",
                "def forward(self, x):\n"
                "  t = torch.tanh(self.alpha * x)\n"
                "  return t * self.w + self.b + t\n",
                {2, kC}, 0},
        // b * 2 is no DyT bias: only the bias-less part fuses, the scaled add stays.
        Variant{"scaled_add", "def forward(self, x):\n  return torch.add(torch.tanh(self.alpha * x) * self.w, self.b, alpha=2)\n",
                {2, kC}, 1}),
    [](const auto& info) { return std::string(info.param.label); });

// DyT followed by Linear layers, for affine folding.
torch::jit::Module FrozenWithLinear(const std::string& forward) {
  torch::jit::Module m("L");
  m.register_parameter("alpha", at::full({1}, 0.6), false);
  m.register_parameter("w", at::randn({kC}), false);
  m.register_parameter("b", at::randn({kC}), false);
  m.register_parameter("W1", at::randn({8, kC}), false);
  m.register_parameter("c1", at::randn({8}), false);
  m.register_parameter("W2", at::randn({4, kC}), false);
  m.define(forward);
  m.eval();
  return torch::jit::freeze(m);
}

struct FoldCase {
  const char* label;
  std::string forward;
  int folded;
};

void PrintTo(const FoldCase& c, std::ostream* os) { *os << c.label; }

class Folding : public ::testing::TestWithParam<FoldCase> {};

TEST_P(Folding, FoldsOnlyWhereEveryUseIsALinearAndKeepsOutputs) {
  at::manual_seed(5);
  torch::jit::Module original = FrozenWithLinear(GetParam().forward);
  torch::jit::Module rewritten = original.clone();
  ASSERT_EQ(FuseDyt(rewritten), 1);
  EXPECT_EQ(FoldDytAffine(rewritten), GetParam().folded);
  const at::Tensor x = at::randn({3, 5, kC});
  c10::InferenceMode guard;
  const torch::jit::IValue want = original.forward({x});
  const torch::jit::IValue got = rewritten.forward({x});
  const auto as_list = [](const torch::jit::IValue& v) {
    std::vector<at::Tensor> out;
    if (v.isTensor()) return std::vector<at::Tensor>{v.toTensor()};
    for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
    return out;
  };
  const std::vector<at::Tensor> a = as_list(want), b = as_list(got);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE((a[i] - b[i]).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Folding,
    ::testing::Values(
        FoldCase{"two_linears",
                 "def forward(self, x):\n"
                 "  y = torch.tanh(self.alpha * x) * self.w + self.b\n"
                 "  return torch.linear(y, self.W1, self.c1), torch.linear(y, self.W2)\n",
                 1},
        FoldCase{"with_a_shape_query",
                 "def forward(self, x):\n"
                 "  y = torch.tanh(self.alpha * x) * self.w + self.b\n"
                 "  n = y.size(0)\n"
                 "  return torch.linear(y, self.W1, self.c1) * n\n",
                 1},
        FoldCase{"also_used_elsewhere",
                 "def forward(self, x):\n"
                 "  y = torch.tanh(self.alpha * x) * self.w + self.b\n"
                 "  return torch.linear(y, self.W1, self.c1), y + 1\n",
                 0}),
    [](const auto& info) { return std::string(info.param.label); });

TEST(Fusion, AlphaWithManyElementsIsNotDyt) {
  at::manual_seed(3);
  torch::jit::Module m = Frozen("def forward(self, x):\n  return torch.tanh(self.alpha * x) * self.w + self.b\n",
                                at::randn({kC}));
  EXPECT_EQ(FuseDyt(m), 0);
}

}  // namespace
}  // namespace dytserve::ops
