"""A small Vision Transformer for scikit-learn's 8x8 digits.

Input ``pixel_values``: float32 ``[N, 1, 8, 8]`` (pixels scaled to [0, 1], i.e.
the raw 0..16 values divided by 16).  Output ``logits``: float32 ``[N, 10]``.

Patch size 2 -> 16 patches, plus a cls token and learned positional
embeddings (17 tokens), width 192, depth 4, 3 heads, MLP ratio 4, pre-norm
blocks (norms ``norm1`` / ``norm2``, final ``norm``), softmax or ReLU/L attention (see the end).
"""
import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn

from .dyt import DynamicTanh

NormFactory = Callable[[int], nn.Module]


def make_norm_factory(norm_layer: Union[str, NormFactory], alpha_init: float = 0.5) -> NormFactory:
    """``"ln"``/``"layernorm"`` -> nn.LayerNorm(eps=1e-6); ``"dyt"`` -> DynamicTanh(alpha_init);
    a callable ``width -> module`` is used as is."""
    if callable(norm_layer):
        return norm_layer
    key = str(norm_layer).lower()
    if key in ("ln", "layernorm"):
        return lambda dim: nn.LayerNorm(dim, eps=1e-6)
    if key == "dyt":
        return lambda dim: DynamicTanh(dim, alpha_init=alpha_init)
    raise ValueError(f"unknown norm_layer {norm_layer!r}; expected 'ln', 'dyt' or a callable")


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                       # [N, H, T, D]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(n, t, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm: NormFactory, attention=Attention):
        super().__init__()
        self.norm1 = norm(dim)
        self.attn = attention(dim, num_heads)
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class ViT(nn.Module):
    def __init__(self, image_size: int = 8, patch_size: int = 2, in_chans: int = 1,
                 num_classes: int = 10, dim: int = 192, depth: int = 4, num_heads: int = 3,
                 mlp_ratio: float = 4.0, norm_layer: Union[str, NormFactory] = "ln",
                 dyt_alpha_init: float = 0.5, attn_kind: str = "softmax", qk_norm: bool = False):
        super().__init__()
        if image_size % patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        norm, attention = make_norm_factory(norm_layer, dyt_alpha_init), make_attention_factory(attn_kind, qk_norm)
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio, norm, attention) for _ in range(depth)])
        self.norm = norm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Token-scale init.  The usual ViT init (xavier patch embedding,
        # std-0.02 position embedding) relies on LayerNorm to rescale tokens;
        # with a 2x2x1 patch (fan-in 4) it gives tokens of std ~0.1 whose
        # position part (~0.02) a DyT layer cannot amplify, so the DyT model
        # barely sees *where* a stroke is and trains very slowly.  Patch
        # embedding with std 1/sqrt(fan_in) and unit-std position / cls
        # embeddings give O(1) tokens for both norm types.
        nn.init.trunc_normal_(self.pos_embed, std=1.0, a=-2.0, b=2.0)
        nn.init.trunc_normal_(self.cls_token, std=1.0, a=-2.0, b=2.0)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        fan_in = w[0].numel()
        nn.init.trunc_normal_(w, std=fan_in ** -0.5, a=-2.0 * fan_in ** -0.5, b=2.0 * fan_in ** -0.5)
        nn.init.zeros_(self.patch_embed.bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)   # [N, P, C]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.head(x[:, 0])


def vit_digits(norm_layer: Union[str, NormFactory] = "ln", **kwargs) -> ViT:
    """The digits ViT (width 192, depth 4, 3 heads, patch 2) with LayerNorm or DyT.

    ``attn_kind="relu"`` gives ReLU/L attention, ``qk_norm=True`` adds qk-layernorm
    (see :class:`VariantAttention`)."""
    return ViT(norm_layer=norm_layer, **kwargs)


# ---------------------------------------------------------------------------
# Attention variants (issue #10: softmax-free attention).
#
# Kept at the end of the file on purpose: a saved TorchScript module records
# the file and line of every scripted method, so code inserted above ViT.forward
# would change the bytes of the default (softmax) models' model.pt although
# their graphs and outputs stay the same.  ViT(attn_kind="softmax",
# qk_norm=False) still builds the plain ``Attention`` above.

ATTENTION_KINDS = ("softmax", "relu")


class VariantAttention(Attention):
    """Multi-head self-attention with a choice of score normalisation.

    With scores ``S = q @ k^T / sqrt(d)`` (d = head dim) and L keys:

    * ``attn_kind="softmax"``: ``softmax(S, dim=-1) @ v``, the same as :class:`Attention`;
    * ``attn_kind="relu"``: ``(relu(S) / L) @ v``, ReLU attention divided by the key
      sequence length (Wortsman et al., "Replacing softmax with ReLU in Vision
      Transformers", 2023).  The weights of one query need not sum to 1.

    ``qk_norm=True`` applies a LayerNorm over the head dim (eps 1e-6, learnable,
    one for q and one for k, shared by all heads) to q and k before the product
    ("qk-layernorm").  Off by default: then ``q_norm`` / ``k_norm`` are None and
    the scripted graph has no trace of them.
    """

    __constants__ = ["relu_scores"]

    def __init__(self, dim: int, num_heads: int, attn_kind: str = "softmax", qk_norm: bool = False):
        super().__init__(dim, num_heads)
        if attn_kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attn_kind {attn_kind!r}; expected one of {ATTENTION_KINDS}")
        self.attn_kind = attn_kind
        self.relu_scores = attn_kind == "relu"
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6) if qk_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                       # [N, H, T, D]
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.k_norm is not None:
            k = self.k_norm(k)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if self.relu_scores:
            attn = torch.relu(scores) / k.shape[-2]
        else:
            attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(n, t, c)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"attn_kind={self.attn_kind!r}, qk_norm={self.q_norm is not None}"


def make_attention_factory(attn_kind: str = "softmax", qk_norm: bool = False) -> Callable[[int, int], nn.Module]:
    """``(width, heads) -> attention module``: plain :class:`Attention` for softmax without
    qk-layernorm (the default models), :class:`VariantAttention` otherwise."""
    key = str(attn_kind).lower()
    if key not in ATTENTION_KINDS:
        raise ValueError(f"unknown attn_kind {attn_kind!r}; expected one of {ATTENTION_KINDS}")
    if key == "softmax" and not qk_norm:
        return Attention
    return lambda dim, num_heads: VariantAttention(dim, num_heads, key, bool(qk_norm))
