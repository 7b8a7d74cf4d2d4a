// The thread pool of the BLAS library behind LibTorch's matrix products.
//
// Debian's LibTorch does its matrix products in OpenBLAS, which keeps a
// thread pool of its own: sized by the host's cores (not a container's CPU
// limit, nor LibTorch's intra-op setting), and whose idle workers spin for a
// while after every product. On a small CPU box that spinning takes the
// cycles gRPC needs to answer. This sizes the pool; it knows OpenBLAS, found
// at run time, so that a LibTorch linked to another BLAS still starts.
#ifndef DYTSERVE_SERVER_CORE_BLAS_THREADS_H_
#define DYTSERVE_SERVER_CORE_BLAS_THREADS_H_

#include <optional>

#include "absl/status/status.h"

namespace dytserve {

// The pool's size now, or nullopt when the process has no OpenBLAS.
std::optional<int> BlasThreads();

// Sizes the pool. InvalidArgument for threads < 1, FailedPrecondition when
// the process has no OpenBLAS (nothing is changed).
absl::Status SetBlasThreads(int threads);

}  // namespace dytserve

#endif  // DYTSERVE_SERVER_CORE_BLAS_THREADS_H_
