import pytest
import torch

from dytserve_models import DynamicTanh, RMSNorm


def _randomise(m: DynamicTanh, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        m.alpha.fill_(0.73)
        m.weight.copy_(torch.randn(m.weight.shape, generator=g))
        m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def test_alpha_is_one_element_parameter():
    m = DynamicTanh(16, alpha_init=0.3)
    assert isinstance(m.alpha, torch.nn.Parameter)
    assert m.alpha.shape == (1,)
    assert m.alpha.item() == pytest.approx(0.3)
    assert m.weight.shape == (16,) and m.bias.shape == (16,)
    assert torch.equal(m.weight, torch.ones(16)) and torch.equal(m.bias, torch.zeros(16))


def test_channels_last_matches_formula():
    m = DynamicTanh(24)
    _randomise(m)
    x = torch.randn(3, 5, 24) * 4
    expected = m.weight * torch.tanh(0.73 * x) + m.bias
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)
    # also for a plain [N, C] input
    x2 = torch.randn(7, 24)
    torch.testing.assert_close(m(x2), m.weight * torch.tanh(0.73 * x2) + m.bias, rtol=0, atol=1e-6)


def test_channels_first_matches_formula():
    m = DynamicTanh(6, channels_last=False)
    _randomise(m, 1)
    x = torch.randn(2, 6, 4, 5) * 3
    expected = m.weight.view(1, 6, 1, 1) * torch.tanh(0.73 * x) + m.bias.view(1, 6, 1, 1)
    torch.testing.assert_close(m(x), expected, rtol=0, atol=1e-6)
    # equals the channels-last layer applied to the permuted input
    last = DynamicTanh(6)
    last.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x), last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), rtol=0, atol=1e-6)


def test_no_affine_uses_fixed_ones_and_zeros():
    m = DynamicTanh(8, alpha_init=0.5, elementwise_affine=False)
    assert [n for n, _ in m.named_parameters()] == ["alpha"]
    x = torch.randn(4, 8)
    torch.testing.assert_close(m(x), torch.tanh(0.5 * x), rtol=0, atol=0)


def test_gradients_reach_alpha_weight_bias():
    m = DynamicTanh(8)
    m(torch.randn(4, 8)).pow(2).sum().backward()
    for p in (m.alpha, m.weight, m.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("channels_last", [True, False])
def test_scripted_graph_keeps_mul_tanh_mul_add(channels_last):
    m = DynamicTanh(8, channels_last=channels_last).eval()
    frozen = torch.jit.freeze(torch.jit.script(m))
    kinds = [n.kind() for n in frozen.graph.nodes() if n.kind().startswith("aten::")]
    # channels-first adds slicing/unsqueeze of weight and bias (constant-folded when frozen)
    assert kinds == ["aten::mul", "aten::tanh", "aten::mul", "aten::add"], kinds
    x = torch.randn(2, 8, 3, 3) if not channels_last else torch.randn(2, 3, 8)
    torch.testing.assert_close(frozen(x), m(x), rtol=0, atol=0)


def test_rmsnorm_matches_formula():
    m = RMSNorm(10, eps=1e-6)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(0.5, 2.0, 10))
    x = torch.randn(3, 4, 10)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * m.weight
    torch.testing.assert_close(m(x), expected, rtol=1e-6, atol=1e-6)
