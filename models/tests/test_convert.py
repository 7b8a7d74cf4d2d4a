import copy

import pytest
import torch
from torch import nn

from dytserve_models import (LLM_ALPHA_TABLE, DynamicTanh, UnsupportedNormError,
                             convert_ln_to_dyt, llama_tiny, llm_alpha_for, norm_role, vit_digits)


def _norms(model):
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.LayerNorm) or type(m).__name__ == "RMSNorm"]


def _randomise_norms(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in _norms(model):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g))
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def test_vit_conversion_leaves_no_layernorm_and_copies_weights():
    torch.manual_seed(0)
    model = vit_digits("ln")
    _randomise_norms(model)
    before = {n: (m.weight.clone(), m.bias.clone()) for n, m in _norms(model)}
    assert len(before) == 2 * 4 + 1
    others = {k: v.clone() for k, v in model.state_dict().items()}
    out = convert_ln_to_dyt(model)
    assert out is model
    assert _norms(model) == []
    dyts = {n: m for n, m in model.named_modules() if isinstance(m, DynamicTanh)}
    assert set(dyts) == set(before)
    for name, (w, b) in before.items():
        assert torch.equal(dyts[name].weight, w) and torch.equal(dyts[name].bias, b)
        assert dyts[name].alpha.item() == pytest.approx(0.5)
    after = model.state_dict()
    for k, v in others.items():  # every non-norm tensor untouched
        assert torch.equal(after[k], v), k
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_alpha_init_argument_and_no_affine_layernorm():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6, elementwise_affine=False), nn.Linear(6, 2))
    convert_ln_to_dyt(model, alpha_init=1.25)
    dyt = model[1]
    assert isinstance(dyt, DynamicTanh)
    assert dyt.alpha.item() == pytest.approx(1.25)
    assert torch.equal(dyt.weight, torch.ones(6)) and torch.equal(dyt.bias, torch.zeros(6))


def test_llama_conversion_leaves_no_rmsnorm_and_copies_weights():
    torch.manual_seed(0)
    model = llama_tiny()
    _randomise_norms(model, 1)
    before = {n: m.weight.clone() for n, m in _norms(model)}
    assert set(before) == {"layers.0.attn_norm", "layers.0.ffn_norm", "layers.1.attn_norm",
                           "layers.1.ffn_norm", "final_norm"}
    others = {k: v.clone() for k, v in model.state_dict().items()}
    convert_ln_to_dyt(model, llm_alpha=True)
    assert _norms(model) == []
    dyts = {n: m for n, m in model.named_modules() if isinstance(m, DynamicTanh)}
    assert set(dyts) == set(before)
    for name, w in before.items():
        assert torch.equal(dyts[name].weight, w)
        assert torch.equal(dyts[name].bias, torch.zeros_like(w))  # RMSNorm has no bias
    after = model.state_dict()
    for k, v in others.items():
        assert torch.equal(after[k], v), k


def test_llm_alpha_attn_vs_ffn_and_final():
    torch.manual_seed(0)
    model = convert_ln_to_dyt(llama_tiny(), llm_alpha=True)
    alphas = {n: m.alpha.item() for n, m in model.named_modules() if isinstance(m, DynamicTanh)}
    for name, a in alphas.items():
        if name.endswith("attn_norm"):
            assert a == pytest.approx(0.8), name
        else:
            assert a == pytest.approx(0.2), name
    # ViT names: norm1 -> attn, norm2 -> ffn, norm -> final
    vit = convert_ln_to_dyt(vit_digits("ln"), llm_alpha=True)
    assert vit.blocks[0].norm1.alpha.item() == pytest.approx(0.8)
    assert vit.blocks[0].norm2.alpha.item() == pytest.approx(0.2)
    assert vit.norm.alpha.item() == pytest.approx(0.2)


def test_width_table_is_monotone_and_attn_higher():
    assert llm_alpha_for(192, "attn") == 0.8 and llm_alpha_for(1024, "ffn") == 0.2
    assert llm_alpha_for(1024, "final") == 0.2
    widths = [64, 1024, 2048, 4096, 5120, 8192, 16384]
    for role in ("attn", "ffn", "final"):
        vals = [llm_alpha_for(w, role) for w in widths]
        assert all(a >= b for a, b in zip(vals, vals[1:])), (role, vals)
    for w in widths:
        assert llm_alpha_for(w, "attn") > llm_alpha_for(w, "ffn")
    assert LLM_ALPHA_TABLE[-1][0] == float("inf")
    with pytest.raises(ValueError):
        llm_alpha_for(64, "mlp")


def test_norm_role_names():
    assert norm_role("layers.3.attn_norm") == "attn"
    assert norm_role("blocks.0.norm1") == "attn"
    assert norm_role("layers.3.ffn_norm") == "ffn"
    assert norm_role("blocks.0.norm2") == "ffn"
    assert norm_role("final_norm") == "final"
    assert norm_role("norm") == "final"
    with pytest.raises(ValueError, match="q_norm"):
        norm_role("layers.0.q_norm")


def test_llm_alpha_unknown_name_raises():
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(ValueError, match="cannot tell"):
        convert_ln_to_dyt(model, llm_alpha=True)


def test_foreign_rmsnorm_class_by_name():
    class RMSNorm(nn.Module):  # noqa: N801 - a third-party class with the same name
        def __init__(self, hidden_size):
            super().__init__()
            self.weight = nn.Parameter(torch.full((hidden_size,), 3.0))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight

    model = nn.Sequential(nn.Linear(4, 5), RMSNorm(5))
    convert_ln_to_dyt(model)
    assert isinstance(model[1], DynamicTanh)
    assert torch.equal(model[1].weight, torch.full((5,), 3.0))


def test_unsupported_norm_raises_clear_error():
    model = nn.Sequential(nn.LayerNorm([4, 5]))
    with pytest.raises(UnsupportedNormError, match="several dims"):
        convert_ln_to_dyt(model)


def test_shared_norm_stays_shared_and_batchnorm_untouched():
    ln = nn.LayerNorm(4)
    model = nn.Module()
    model.a = ln
    model.b = ln
    model.bn = nn.BatchNorm1d(4)
    convert_ln_to_dyt(model)
    assert isinstance(model.a, DynamicTanh) and model.a is model.b
    assert isinstance(model.bn, nn.BatchNorm1d)


def test_converting_a_bare_norm_returns_dyt():
    ln = nn.LayerNorm(3)
    out = convert_ln_to_dyt(ln)
    assert isinstance(out, DynamicTanh) and out.num_features == 3


def test_converted_models_script():
    torch.manual_seed(0)
    rms = llama_tiny().eval()
    dyt = convert_ln_to_dyt(copy.deepcopy(rms), llm_alpha=True).eval()
    ids = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(dyt)(ids), dyt(ids), rtol=0, atol=1e-5)
