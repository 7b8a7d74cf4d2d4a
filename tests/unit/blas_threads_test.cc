#include "server/core/blas_threads.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

namespace dytserve {
namespace {

// This binary links LibTorch, and with it the libblas.so.3 that setup.sh
// points at OpenBLAS; without OpenBLAS there is nothing to size.
TEST(BlasThreads, SizesOpenBlasPoolAndMatrixProductsStillAgree) {
  const std::optional<int> before = BlasThreads();
  if (!before.has_value()) GTEST_SKIP() << "this process's BLAS is not OpenBLAS";
  const at::Tensor a = at::randn({96, 64}), b = at::randn({64, 80});
  const at::Tensor reference = at::mm(a.to(at::kDouble), b.to(at::kDouble));
  for (int threads : {1, 2}) {
    ASSERT_TRUE(SetBlasThreads(threads).ok());
    EXPECT_EQ(BlasThreads(), threads);
    EXPECT_TRUE(at::allclose(at::mm(a, b).to(at::kDouble), reference, 1e-4, 1e-4)) << threads;
  }
  ASSERT_TRUE(SetBlasThreads(*before).ok());
}

TEST(BlasThreads, RefusesFewerThanOne) {
  for (int threads : {0, -3}) {
    absl::Status status = SetBlasThreads(threads);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << threads;
    EXPECT_NE(status.message().find("must be >= 1"), std::string::npos) << status;
  }
}

}  // namespace
}  // namespace dytserve
