"""A tiny LLaMA-style causal decoder (random init, not trained).

Input ``input_ids``: int64 ``[N, L]``, any ``L >= 1`` (tested 1..128), token ids
in ``[0, vocab_size)``.  Output ``logits``: float32 ``[N, L, vocab_size]``.

Token embedding (vocab 256) -> ``depth`` pre-norm blocks
(``attn_norm`` -> causal multi-head self-attention with RoPE -> residual,
``ffn_norm`` -> SwiGLU FFN -> residual) -> ``final_norm`` -> untied LM head.
No biases anywhere.  Attention is causal, so right-padding a sequence does not
change the logits of its real positions.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .dyt import RMSNorm


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class RotaryEmbedding(nn.Module):
    """RoPE angles computed on the fly for positions 0..L-1 (no max length)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError("RoPE needs an even head dim")
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, seq_len: int):
        pos = torch.arange(seq_len, dtype=torch.float32, device=self.inv_freq.device)
        freqs = pos[:, None] * self.inv_freq[None, :]            # [L, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)                  # [L, D]
        return emb.cos(), emb.sin()


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q = self.wq(x).view(n, t, self.num_heads, self.head_dim).transpose(1, 2)  # [N, H, L, D]
        k = self.wk(x).view(n, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(n, t, self.num_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # softmax(q k^T / sqrt(d) + mask) v, as one op. An explicit matmul on a
        # transposed k made torch.export guard the length against 1, so the
        # AOTInductor twin could not serve one-token prompts.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.wo(out.transpose(1, 2).reshape(n, t, c))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)   # gate
        self.w3 = nn.Linear(dim, hidden, bias=False)   # up
        self.w2 = nn.Linear(hidden, dim, bias=False)   # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class DecoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_hidden: int, eps: float):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = CausalSelfAttention(dim, num_heads)
        self.ffn_norm = RMSNorm(dim, eps)
        self.ffn = SwiGLU(dim, ffn_hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        x = x + self.ffn(self.ffn_norm(x))
        return x


def swiglu_hidden(dim: int, multiple_of: int = 64) -> int:
    """LLaMA's FFN width: 2/3 * 4 * dim rounded up to a multiple (192 -> 512)."""
    hidden = int(2 * 4 * dim / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class Llama(nn.Module):
    def __init__(self, vocab_size: int = 256, dim: int = 192, depth: int = 2, num_heads: int = 3,
                 ffn_hidden: int = 0, eps: float = 1e-6, rope_theta: float = 10000.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.tok_embeddings = nn.Embedding(vocab_size, dim)
        self.rope = RotaryEmbedding(dim // num_heads, rope_theta)
        hidden = ffn_hidden if ffn_hidden > 0 else swiglu_hidden(dim)
        self.layers = nn.ModuleList([DecoderBlock(dim, num_heads, hidden, eps) for _ in range(depth)])
        self.final_norm = RMSNorm(dim, eps)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        nn.init.normal_(self.tok_embeddings.weight, std=0.02)
        for name, p in self.named_parameters():
            if p.dim() == 2 and name != "tok_embeddings.weight":
                # GPT-2 style: residual output projections scaled down with depth.
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        x = self.tok_embeddings(input_ids)                                   # [N, L, C]
        cos, sin = self.rope(seq_len)
        mask = torch.full((seq_len, seq_len), float("-inf"), device=x.device).triu(1)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.output(self.final_norm(x))


def llama_tiny(**kwargs) -> Llama:
    """vocab 256, width 192, depth 2, 3 heads of 64, SwiGLU 512, RMSNorm pre-norms."""
    return Llama(**kwargs)


def build_llama_pair(seed: int = 0):
    """(llama_rms, llama_dyt), both in eval mode: the RMSNorm model from ``seed`` and its DyT
    twin (``convert_ln_to_dyt(llm_alpha=True)`` of a copy; every other weight identical)."""
    import copy

    from .convert import convert_ln_to_dyt

    torch.manual_seed(seed)
    rms = llama_tiny().eval()
    dyt = convert_ln_to_dyt(copy.deepcopy(rms), llm_alpha=True).eval()
    return rms, dyt
