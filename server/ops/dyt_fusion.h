// Load-time graph rewrite: DyT subgraphs of a frozen TorchScript module become
// one dytserve::dyt call.
//
// Matched: tanh(alpha * x) * w + b, with either operand order of each mul and
// of the add, and the bias-less tanh(alpha * x) * w. alpha must be a
// one-element constant, w and b constants with one value per channel: shape
// [C] is channels-last, [C, 1, ..., 1] channels-first. Intermediate values
// used outside the pattern block the match. The module must be frozen, so
// that parameters are constants the matcher can inspect.
#ifndef DYTSERVE_SERVER_OPS_DYT_FUSION_H_
#define DYTSERVE_SERVER_OPS_DYT_FUSION_H_

#include <torch/script.h>

namespace dytserve::ops {

// Rewrites `frozen`'s forward graph in place; returns how many DyT subgraphs
// it replaced.
int FuseDyt(torch::jit::Module& frozen);

// The same on a bare graph (constants already inlined), for tests.
int FuseDytInGraph(std::shared_ptr<torch::jit::Graph>& graph);

// Affine folding, after FuseDyt: where a channels-last dytserve::dyt's output
// feeds only aten::linear layers (as their input) with constant weights, w
// and b move into those layers (W' = W diag(w), c' = c + W b) and the DyT
// keeps only tanh(alpha * x). Returns how many DyTs it folded.
int FoldDytAffine(torch::jit::Module& frozen);

}  // namespace dytserve::ops

#endif  // DYTSERVE_SERVER_OPS_DYT_FUSION_H_
