"""Attention variants of the digits ViT (issue #10): ReLU/L attention and qk-layernorm.

Every check compares the modules against references written here from the
definitions, with explicit loops / einsum over the module's own parameters.
"""
import math

import pytest
import torch
from torch import nn

from dytserve_models import DynamicTanh, vit_digits
from dytserve_models.vit import Attention, VariantAttention, make_attention_factory

DIM, HEADS = 24, 3
HEAD_DIM = DIM // HEADS


def _randomise(module: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Every parameter to random values (norm weights around 1), so that no
    part of the computation is hidden by a zero / identity initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            if name.endswith("norm.weight") or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def _layer_norm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)       # biased variance, as LayerNorm
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _attention_ref(attn: nn.Module, x: torch.Tensor, kind: str, qk_norm: bool = False) -> torch.Tensor:
    """Naive multi-head self-attention with the module's weights: explicit loops
    over batch, head, query and key.  ``kind``: 'softmax' or 'relu' (relu / L)."""
    dtype = x.dtype
    x = x.double()
    w_qkv, b_qkv = attn.qkv.weight.double(), attn.qkv.bias.double()
    w_o, b_o = attn.proj.weight.double(), attn.proj.bias.double()
    n, length, width = x.shape
    heads = attn.num_heads
    d = width // heads
    out = torch.zeros(n, length, width, dtype=torch.float64)
    for b in range(n):
        proj = x[b] @ w_qkv.t() + b_qkv                  # [L, 3 * width]: q | k | v, heads contiguous
        for h in range(heads):
            q = proj[:, h * d:(h + 1) * d]
            k = proj[:, width + h * d:width + (h + 1) * d]
            v = proj[:, 2 * width + h * d:2 * width + (h + 1) * d]
            if qk_norm:
                q = _layer_norm_ref(q, attn.q_norm.weight.double(), attn.q_norm.bias.double(), attn.q_norm.eps)
                k = _layer_norm_ref(k, attn.k_norm.weight.double(), attn.k_norm.bias.double(), attn.k_norm.eps)
            for i in range(length):
                scores = [float(torch.dot(q[i], k[j])) / math.sqrt(d) for j in range(length)]
                if kind == "softmax":
                    top = max(scores)
                    e = [math.exp(s - top) for s in scores]
                    weights = [w / sum(e) for w in e]
                elif kind == "relu":
                    weights = [max(s, 0.0) / length for s in scores]   # L = number of keys
                else:
                    raise AssertionError(kind)
                acc = torch.zeros(d, dtype=torch.float64)
                for j in range(length):
                    acc += weights[j] * v[j]
                out[b, i, h * d:(h + 1) * d] = acc
    return (out @ w_o.t() + b_o).to(dtype)


@pytest.mark.parametrize("length", [1, 2, 5, 17, 33])
@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("kind", ["relu", "softmax"])
def test_variant_attention_matches_naive_reference(kind, qk_norm, length):
    torch.manual_seed(0)
    attn = VariantAttention(DIM, HEADS, attn_kind=kind, qk_norm=qk_norm).eval()
    _randomise(attn, seed=length)
    if qk_norm:   # distinct affine parts for q and k, away from the identity
        with torch.no_grad():
            attn.q_norm.weight.add_(1.0)
            attn.k_norm.bias.add_(0.3)
    x = torch.randn(2, length, DIM, generator=torch.Generator().manual_seed(100 + length)) * 2
    with torch.no_grad():
        got = attn(x)
    # float32 module against a float64 reference: with the wheel's MKL GEMM, one
    # element of 1584 (relu, length 33) differed by 1.7e-5.
    torch.testing.assert_close(got, _attention_ref(attn, x, kind, qk_norm), rtol=1e-4, atol=5e-5)


def test_relu_attention_divides_by_the_key_length():
    """relu(S) / L: repeating the whole sequence r times multiplies every key's
    score count by r and L by r, so the output of the original positions is
    unchanged; without the 1/L it would be r times larger (before proj)."""
    torch.manual_seed(0)
    attn = VariantAttention(DIM, HEADS, attn_kind="relu").eval()
    _randomise(attn, seed=7)
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(DIM))
        attn.proj.bias.zero_()
    x = torch.randn(3, 6, DIM, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        base = attn(x)
        assert base.abs().max() > 1e-3
        for r in (2, 3, 5):
            torch.testing.assert_close(attn(x.repeat(1, r, 1))[:, :6], base, rtol=1e-5, atol=1e-6)
        # the weights of one query do not sum to 1: a single token attending to
        # itself gets relu(q.k / sqrt(d)) * v exactly
        one = x[:, :1]
        qkv = attn.qkv(one).reshape(3, 1, 3, HEADS, HEAD_DIM)
        q, k, v = qkv[:, 0, 0], qkv[:, 0, 1], qkv[:, 0, 2]            # [N, H, D]
        w = torch.relu(torch.einsum("nhd,nhd->nh", q, k) / math.sqrt(HEAD_DIM))
        torch.testing.assert_close(attn(one)[:, 0], (w[..., None] * v).reshape(3, DIM), rtol=1e-5, atol=1e-6)


def test_relu_attention_einsum_reference_varying_length():
    """A second, vectorised reference (einsum) over many lengths, batched."""
    torch.manual_seed(1)
    attn = VariantAttention(DIM, HEADS, attn_kind="relu").eval()
    _randomise(attn, seed=3)
    g = torch.Generator().manual_seed(4)
    for length in range(1, 40, 3):
        x = torch.randn(4, length, DIM, generator=g)
        with torch.no_grad():
            proj = x @ attn.qkv.weight.t() + attn.qkv.bias
            q, k, v = (proj[..., s * DIM:(s + 1) * DIM].reshape(4, length, HEADS, HEAD_DIM) for s in range(3))
            scores = torch.einsum("nihd,njhd->nhij", q, k) / math.sqrt(HEAD_DIM)
            ctx = torch.einsum("nhij,njhd->nihd", torch.relu(scores) / length, v).reshape(4, length, DIM)
            expected = ctx @ attn.proj.weight.t() + attn.proj.bias
            torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_softmax_variant_equals_plain_attention():
    torch.manual_seed(0)
    plain = Attention(DIM, HEADS).eval()
    _randomise(plain, seed=11)
    variant = VariantAttention(DIM, HEADS, attn_kind="softmax").eval()
    variant.load_state_dict(plain.state_dict())          # same keys: no q_norm / k_norm
    x = torch.randn(2, 9, DIM)
    with torch.no_grad():
        assert torch.equal(variant(x), plain(x))
        torch.testing.assert_close(plain(x), _attention_ref(plain, x, "softmax"), rtol=1e-4, atol=1e-5)


def test_qk_norm_parameters_and_scale_invariance():
    """qk-layernorm: one LayerNorm over the head dim for q and one for k; scaling
    the q and k projections (weight and bias) by a positive factor then does
    not change the output, while without qk-norm it does."""
    torch.manual_seed(0)
    for kind in ("softmax", "relu"):
        with_norm = VariantAttention(DIM, HEADS, attn_kind=kind, qk_norm=True).eval()
        without = VariantAttention(DIM, HEADS, attn_kind=kind, qk_norm=False).eval()
        assert isinstance(with_norm.q_norm, nn.LayerNorm) and isinstance(with_norm.k_norm, nn.LayerNorm)
        assert tuple(with_norm.q_norm.normalized_shape) == (HEAD_DIM,)
        assert tuple(with_norm.k_norm.normalized_shape) == (HEAD_DIM,)
        assert with_norm.q_norm is not with_norm.k_norm
        assert without.q_norm is None and without.k_norm is None
        assert set(with_norm.state_dict()) - set(without.state_dict()) == {
            "q_norm.weight", "q_norm.bias", "k_norm.weight", "k_norm.bias"}
        _randomise(without, seed=5)
        with_norm.load_state_dict(without.state_dict(), strict=False)
        x = torch.randn(2, 7, DIM)
        with torch.no_grad():
            ref_norm, ref_plain = with_norm(x), without(x)
            for m in (with_norm, without):
                m.qkv.weight[:2 * DIM].mul_(4.0)
                m.qkv.bias[:2 * DIM].mul_(4.0)
            torch.testing.assert_close(with_norm(x), ref_norm, rtol=1e-4, atol=1e-5)
            assert (without(x) - ref_plain).abs().max() > 1e-3


@pytest.mark.parametrize("kind,qk_norm", [("relu", False), ("relu", True), ("softmax", True)])
def test_variant_attention_scripts(kind, qk_norm):
    torch.manual_seed(0)
    attn = VariantAttention(DIM, HEADS, attn_kind=kind, qk_norm=qk_norm).eval()
    _randomise(attn, seed=2)
    scripted = torch.jit.script(attn)
    x = torch.randn(3, 11, DIM)
    with torch.no_grad():
        assert torch.equal(scripted(x), attn(x))
    kinds = {n.kind() for n in scripted.graph.nodes()}
    assert ("aten::relu" in kinds) == (kind == "relu")
    assert ("aten::softmax" in kinds) == (kind == "softmax")


def test_attention_factory_and_vit_options():
    assert make_attention_factory() is Attention
    assert make_attention_factory("softmax", False) is Attention
    with pytest.raises(ValueError, match="attn_kind"):
        make_attention_factory("sigmoid")
    with pytest.raises(ValueError, match="attn_kind"):
        VariantAttention(DIM, HEADS, attn_kind="sigmoid")
    with pytest.raises(ValueError, match="attn_kind"):
        vit_digits("ln", attn_kind="linear")
    # the default ViT still uses the plain softmax Attention, with the same parameters as before
    default = vit_digits("ln")
    assert all(type(b.attn) is Attention for b in default.blocks)
    assert not any("q_norm" in k or "k_norm" in k for k in default.state_dict())
    relu = vit_digits("dyt", attn_kind="relu")
    assert all(type(b.attn) is VariantAttention and b.attn.relu_scores for b in relu.blocks)
    assert all(b.attn.q_norm is None for b in relu.blocks)
    assert set(relu.state_dict()) == set(vit_digits("dyt").state_dict())
    qk = vit_digits("ln", attn_kind="relu", qk_norm=True)
    assert all(isinstance(b.attn.q_norm, nn.LayerNorm) for b in qk.blocks)


def _vit_ref(model, pixels: torch.Tensor, kind: str) -> torch.Tensor:
    """The whole digits ViT written out: patches by slicing, norms by formula,
    attention by the naive reference above."""
    n = pixels.shape[0]
    p = model.patch_embed.kernel_size[0]
    side = pixels.shape[-1] // p
    patches = torch.stack([pixels[:, 0, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(n, -1)
                           for r in range(side) for c in range(side)], dim=1)          # [N, P, p*p]
    w = model.patch_embed.weight.reshape(model.patch_embed.weight.shape[0], -1)
    x = patches @ w.t() + model.patch_embed.bias
    x = torch.cat([model.cls_token.expand(n, -1, -1), x], dim=1) + model.pos_embed

    def norm(m, t):
        if isinstance(m, DynamicTanh):
            return m.weight * torch.tanh(m.alpha * t) + m.bias
        return _layer_norm_ref(t, m.weight, m.bias, m.eps)

    for blk in model.blocks:
        x = x + _attention_ref(blk.attn, norm(blk.norm1, x), kind)
        h = norm(blk.norm2, x) @ blk.mlp.fc1.weight.t() + blk.mlp.fc1.bias
        h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))                               # exact GELU
        x = x + h @ blk.mlp.fc2.weight.t() + blk.mlp.fc2.bias
    x = norm(model.norm, x)
    return x[:, 0] @ model.head.weight.t() + model.head.bias


@pytest.mark.parametrize("norm", ["ln", "dyt"])
@pytest.mark.parametrize("kind", ["softmax", "relu"])
def test_whole_vit_matches_explicit_reference(norm, kind):
    """The default (softmax) ViT computes exactly what it did before this option
    existed, and the ReLU/L one what its definition says (in float64, so that the
    comparison is tight whatever the random weights)."""
    torch.manual_seed(0)
    model = vit_digits(norm, attn_kind=kind).eval().double()
    _randomise(model, seed=21, scale=0.2)
    if norm == "dyt":
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, DynamicTanh):
                    m.alpha.fill_(0.7)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
        expected = _vit_ref(model, x, kind)
    assert got.shape == (3, 10) and got.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
