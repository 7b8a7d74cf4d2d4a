"""Dynamic Tanh (DyT), a drop-in replacement for LayerNorm / RMSNorm.

    DyT(x) = weight * tanh(alpha * x) + bias

``alpha`` is a single learnable scalar (a Parameter of shape ``[1]``);
``weight`` and ``bias`` are per-channel.  See Zhu et al., "Transformers
without Normalization" (CVPR 2025).

The forward is deliberately written in the plain form
``torch.tanh(self.alpha * x) * self.weight + self.bias`` so that, after
scripting (and freezing), the TorchScript graph contains exactly::

    %a = aten::mul(%alpha, %x)
    %t = aten::tanh(%a)
    %w = aten::mul(%t, %weight)
    %y = aten::add(%w, %bias, 1)

which a C++ graph pass can pattern-match and fuse.  Keep that op order.
"""
from typing import Optional

import torch
from torch import nn


class DynamicTanh(nn.Module):
    """DyT over the channel dimension.

    Args:
        num_features: number of channels C.
        alpha_init: initial value of the scalar ``alpha``.
        channels_last: if True the channel dim is the last one (``[..., C]``,
            transformer tokens).  If False the input is ``[N, C, H, W]`` and
            weight/bias broadcast as ``[C, 1, 1]``.
        elementwise_affine: if False, ``weight``/``bias`` are fixed buffers of
            ones/zeros (not trained), so the forward keeps the same form.
    """

    __constants__ = ["num_features", "channels_last", "elementwise_affine"]

    def __init__(self, num_features: int, alpha_init: float = 0.5,
                 channels_last: bool = True, elementwise_affine: bool = True):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = int(num_features)
        self.channels_last = bool(channels_last)
        self.elementwise_affine = bool(elementwise_affine)
        self.alpha = nn.Parameter(torch.full([1], float(alpha_init)))
        if self.elementwise_affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return torch.tanh(self.alpha * x) * self.weight + self.bias
        return torch.tanh(self.alpha * x) * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return (f"{self.num_features}, alpha_init={float(self.alpha.detach()[0]):.4g}, "
                f"channels_last={self.channels_last}, "
                f"elementwise_affine={self.elementwise_affine}")


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim: ``x * rsqrt(mean(x^2) + eps) * weight``."""

    __constants__ = ["dim", "eps"]

    def __init__(self, dim: int, eps: float = 1e-6, weight: Optional[torch.Tensor] = None):
        super().__init__()
        self.dim = int(dim)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim) if weight is None else weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"
