#include "server/ops/dyt_op.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>

#include <cstring>

#include "server/ops/dyt_kernel.h"

namespace dytserve::ops {
namespace {

at::Tensor Reference(const at::Tensor& x, double alpha, const c10::optional<at::Tensor>& w,
                     const c10::optional<at::Tensor>& b, bool channels_last) {
  std::vector<int64_t> shape(x.dim(), 1);
  const int64_t c = channels_last ? x.size(-1) : x.size(1);
  shape[channels_last ? x.dim() - 1 : 1] = c;
  at::Tensor y = at::tanh(alpha * x.to(at::kDouble));
  if (w) y = y * w->to(at::kDouble).reshape(shape);
  if (b) y = y + b->to(at::kDouble).reshape(shape);
  return y;
}

// Error bound: 2e-6 absolute for fp32 (the operator's promise); for the
// half types, the output rounding (an ulp of the result) dominates.
double Bound(at::ScalarType type, const at::Tensor& ref) {
  const double scale = ref.abs().max().item<double>() + 1;
  if (type == at::kHalf) return scale * std::ldexp(1.0, -10);
  if (type == at::kBFloat16) return scale * std::ldexp(1.0, -7);
  return 2e-6;
}

struct Case {
  std::vector<int64_t> shape;
  bool channels_last;
  bool weight;
  bool bias;
  bool transposed;  // feed a non-contiguous view
};

class DytOp : public ::testing::TestWithParam<std::tuple<DytIsa, at::ScalarType>> {
 protected:
  void SetUp() override { SetDytIsa(std::get<0>(GetParam())); }
  void TearDown() override { SetDytIsa(DytIsa::kAuto); }
};

TEST_P(DytOp, MatchesDoublePrecisionReference) {
  const at::ScalarType type = std::get<1>(GetParam());
  const std::vector<Case> cases = {
      {{64, 197, 192}, true, true, true, false},   // ViT-Tiny activations
      {{5, 192}, true, true, true, false},
      {{3, 7, 19}, true, true, true, false},       // C not a multiple of any vector width
      {{4, 33}, true, false, true, false},         // no weight
      {{4, 33}, true, true, false, false},         // no bias
      {{1, 1}, true, true, true, false},
      {{2, 6, 5, 7}, false, true, true, false},    // channels first, plane of 35
      {{2, 6, 16, 16}, false, true, true, false},  // channels first, full vectors
      {{3, 6}, false, true, true, false},          // channels first with one element per plane
      {{8, 24, 40}, true, true, true, true},       // non-contiguous
      {{0, 16}, true, true, true, false},          // empty
  };
  at::manual_seed(7);
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "shape " << c10::IntArrayRef(c.shape) << (c.channels_last ? " last" : " first")
                                      << (c.transposed ? " transposed" : ""));
    at::Tensor x = at::randn(c.shape) * 3;
    if (x.numel() > 4) {
      x.view(-1)[0] = 1e4;  // saturated
      x.view(-1)[1] = -1e4;
      x.view(-1)[2] = 0;
      x.view(-1)[3] = 1e-30;
    }
    if (c.transposed) x = x.transpose(0, 1).contiguous().transpose(0, 1);  // same values, other strides
    x = x.to(type);
    const int64_t channels = c.channels_last ? x.size(-1) : x.size(1);
    const c10::optional<at::Tensor> w = c.weight ? c10::optional<at::Tensor>(at::randn({channels})) : c10::nullopt;
    const c10::optional<at::Tensor> b = c.bias ? c10::optional<at::Tensor>(at::randn({channels})) : c10::nullopt;
    // Threshold 0 streams every fp32 output whose rows are 64-byte aligned
    // past the cache (non-temporal stores), as large outputs are.
    for (int64_t stream_threshold : {int64_t{-1}, int64_t{0}}) {
      SetDytStreamThreshold(stream_threshold);
      for (double alpha : {0.5, 0.8, -1.3}) {
        const at::Tensor y = Dyt(x, at::full({1}, alpha), w, b, c.channels_last);
        EXPECT_EQ(y.scalar_type(), type);
        EXPECT_EQ(y.sizes(), x.sizes());
        if (x.numel() == 0) continue;
        const at::Tensor ref = Reference(x, static_cast<float>(alpha), w, b, c.channels_last);
        const double err = (y.to(at::kDouble) - ref).abs().max().item<double>();
        EXPECT_LE(err, Bound(type, ref)) << "alpha " << alpha << " stream threshold " << stream_threshold;
      }
    }
    SetDytStreamThreshold(-1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    IsaAndDtype, DytOp,
    ::testing::Combine(::testing::Values(DytIsa::kScalar, DytIsa::kAvx2, DytIsa::kAvx512),
                       ::testing::Values(at::kFloat, at::kHalf, at::kBFloat16)),
    [](const auto& info) {
      return std::string(DytIsaName(std::get<0>(info.param))) + "_" +
             std::string(c10::toString(std::get<1>(info.param)));
    });

TEST(DytOp, TanhApproximationIsWithinAFewUlps) {
  double worst = 0;
  for (double x = -12; x <= 12; x += 1e-3) {
    worst = std::max(worst, std::abs(double(DytTanhScalar(static_cast<float>(x))) - std::tanh(double(float(x)))));
  }
  EXPECT_LE(worst, 5e-7);
  // The vector kernels too.
  const at::Tensor x = at::arange(-12.0, 12.0, 1e-4, at::kFloat);
  const at::Tensor ref = at::tanh(x.to(at::kDouble));
  for (DytIsa isa : {DytIsa::kAvx2, DytIsa::kAvx512}) {
    SetDytIsa(isa);
    const at::Tensor y = Dyt(x, at::full({1}, 1.0), c10::nullopt, c10::nullopt, true).to(at::kDouble);
    EXPECT_LE((y - ref).abs().max().item<double>(), 5e-7) << DytIsaName(ActiveDytIsa());
    EXPECT_LE(y.abs().max().item<double>(), 1.0) << DytIsaName(ActiveDytIsa());
  }
  SetDytIsa(DytIsa::kAuto);
}

TEST_P(DytOp, NanStaysNanInfinitiesSaturateAndZeroGivesTheBias) {
  const at::ScalarType type = std::get<1>(GetParam());
  at::Tensor x = at::zeros({5, 35});  // 35: vectors and a scalar tail
  x[0].fill_(std::numeric_limits<float>::quiet_NaN());
  x[1].fill_(std::numeric_limits<float>::infinity());
  x[2].fill_(-std::numeric_limits<float>::infinity());
  // NaNs with payload bits: the exponent arithmetic must not turn them finite.
  float* row3 = x[3].data_ptr<float>();
  for (int j = 0; j < 35; ++j) {
    const uint32_t bits = (j % 2 ? 0xffc00000u : 0x7fc00000u) | static_cast<uint32_t>(1 + j * 4099);
    std::memcpy(&row3[j], &bits, sizeof(bits));
  }
  const at::Tensor w = at::full({35}, 2.0), b = at::full({35}, 0.5);
  const at::Tensor y = Dyt(x.to(type), at::full({1}, 0.5), w, b, true).to(at::kFloat);
  EXPECT_TRUE(y[0].isnan().all().item<bool>()) << y[0];
  EXPECT_TRUE((y[1] == 2.5).all().item<bool>()) << y[1];
  EXPECT_TRUE((y[2] == -1.5).all().item<bool>()) << y[2];
  EXPECT_TRUE(y[3].isnan().all().item<bool>()) << y[3];
  EXPECT_TRUE((y[4] == 0.5).all().item<bool>()) << "tanh(0) is exactly 0: " << y[4];
}

TEST(DytOp, TanhIsOddAndKeepsItsRelativeAccuracyNearZero) {
  for (int isa = 0; isa < 3; ++isa) {
    SetDytIsa(isa == 0 ? DytIsa::kScalar : isa == 1 ? DytIsa::kAvx2 : DytIsa::kAvx512);
    at::Tensor x = at::empty({64});
    for (int i = 0; i < 32; ++i) x[i] = std::ldexp(1.0, -2 * i - 1);  // 0.5 down to 2^-63
    x.narrow(0, 32, 32).copy_(-x.narrow(0, 0, 32));
    const at::Tensor y = Dyt(x, at::full({1}, 1.0), c10::nullopt, c10::nullopt, true).to(at::kDouble);
    const at::Tensor ref = at::tanh(x.to(at::kDouble));
    EXPECT_LE(((y - ref).abs() / ref.abs()).max().item<double>(), 1e-6) << DytIsaName(ActiveDytIsa());
    const at::Tensor positive = y.narrow(0, 0, 32), negative = y.narrow(0, 32, 32);
    EXPECT_LE(((positive + negative).abs() / positive.abs()).max().item<double>(), 1e-6) << "odd, to rounding";
  }
  SetDytIsa(DytIsa::kAuto);
}

TEST(DytOp, WeightOfChannelShapeBroadcastsChannelsFirst) {
  const at::Tensor x = at::randn({2, 4, 3, 3});
  const at::Tensor w = at::randn({4, 1, 1});
  const at::Tensor b = at::randn({4, 1, 1});
  const at::Tensor y = Dyt(x, at::full({1}, 0.7), w, b, /*channels_last=*/false);
  const at::Tensor ref = w * at::tanh(0.7 * x) + b;
  EXPECT_LE((y - ref).abs().max().item<double>(), 2e-6);
}

TEST(DytOp, OtherFloatTypesTakeTheUnfusedPath) {
  const at::Tensor x = at::randn({3, 5}, at::kDouble);
  const at::Tensor w = at::randn({5}), b = at::randn({5});
  const at::Tensor y = Dyt(x, at::full({1}, 0.5), w, b, true);
  EXPECT_EQ(y.scalar_type(), at::kDouble);
  EXPECT_LE((y - Reference(x, 0.5, w, b, true)).abs().max().item<double>(), 1e-6);
}

TEST(DytOp, BadArgumentsAreClearErrors) {
  const at::Tensor x = at::randn({2, 8});
  EXPECT_THROW(Dyt(x, at::ones({2}), c10::nullopt, c10::nullopt, true), c10::Error);         // alpha not scalar
  EXPECT_THROW(Dyt(x, at::ones({1}), at::ones({7}), c10::nullopt, true), c10::Error);        // weight size
  EXPECT_THROW(Dyt(at::ones({2, 8}, at::kLong), at::ones({1}), c10::nullopt, c10::nullopt, true), c10::Error);
  EXPECT_THROW(Dyt(at::ones({8}), at::ones({1}), c10::nullopt, c10::nullopt, false), c10::Error);  // no dim 1
}

// Runs only where a CUDA LibTorch and a GPU are present (DYTSERVE_WITH_CUDA).
TEST(DytOp, CudaMatchesTheReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA here";
  EnsureDytRegistered();
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("dytserve::dyt", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                  const c10::optional<at::Tensor>&, bool)>();
  for (const at::ScalarType type : {at::kFloat, at::kHalf, at::kBFloat16}) {
    for (const bool channels_last : {true, false}) {
      const std::vector<int64_t> shape = channels_last ? std::vector<int64_t>{64, 197, 192}
                                                       : std::vector<int64_t>{2, 6, 5, 7};
      const at::Tensor x = (at::randn(shape) * 3).to(type);
      const int64_t c = channels_last ? shape.back() : shape[1];
      const at::Tensor w = at::randn({c}), b = at::randn({c});
      const at::Tensor y = op.call(x.cuda(), at::full({1}, 0.6).cuda(), w.cuda(), b.cuda(), channels_last).cpu();
      const at::Tensor ref = Reference(x, 0.6f, w, b, channels_last);
      EXPECT_LE((y.to(at::kDouble) - ref).abs().max().item<double>(), Bound(type, ref))
          << c10::toString(type) << (channels_last ? " last" : " first");
    }
  }
}

TEST(DytOp, RegisteredWithTheDispatcher) {
  EnsureDytRegistered();
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("dytserve::dyt", "")
                .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                  const c10::optional<at::Tensor>&, bool)>();
  const at::Tensor x = at::randn({4, 16});
  const at::Tensor y = op.call(x, at::full({1}, 0.5), at::ones({16}), at::zeros({16}), true);
  EXPECT_LE((y - at::tanh(0.5 * x)).abs().max().item<double>(), 2e-6);
}

}  // namespace
}  // namespace dytserve::ops
