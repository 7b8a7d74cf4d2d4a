#include "server/core/blas_threads.h"

#include <dlfcn.h>

#include "absl/strings/str_cat.h"

namespace dytserve {
namespace {

// Looked up in the process's global scope, where the libblas.so.3 that
// LibTorch links pulls OpenBLAS in; a build against another BLAS has neither.
template <typename Fn>
Fn Lookup(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

using GetFn = int (*)();
using SetFn = void (*)(int);

}  // namespace

std::optional<int> BlasThreads() {
  const GetFn get = Lookup<GetFn>("openblas_get_num_threads");
  if (get == nullptr) return std::nullopt;
  return get();
}

absl::Status SetBlasThreads(int threads) {
  if (threads < 1) return absl::InvalidArgumentError(absl::StrCat("BLAS threads must be >= 1, got ", threads));
  const SetFn set = Lookup<SetFn>("openblas_set_num_threads");
  if (set == nullptr || !BlasThreads().has_value()) {
    return absl::FailedPreconditionError(
        "the BLAS library in this process is not OpenBLAS (no openblas_set_num_threads): its threads cannot be set");
  }
  set(threads);
  return absl::OkStatus();
}

}  // namespace dytserve
