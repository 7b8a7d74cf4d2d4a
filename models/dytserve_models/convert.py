"""Replace LayerNorm / RMSNorm layers of a model with DynamicTanh.

``convert_ln_to_dyt`` walks the module tree and swaps, in place:

* every ``nn.LayerNorm`` with a 1-D ``normalized_shape``;
* every RMSNorm: this package's :class:`~dytserve_models.dyt.RMSNorm` and any
  module whose class name is ``"RMSNorm"`` (e.g. a third-party one);

for a :class:`DynamicTanh` of the same width, copying the elementwise weight
(and bias, if any) across.  Norms without an affine part get weight = ones,
bias = zeros.  Other normalisation layers (BatchNorm, GroupNorm, ...) are not
touched.  Norms that cannot be expressed as a per-channel DyT (a LayerNorm over
several trailing dims, an RMSNorm whose width cannot be determined) raise
:class:`UnsupportedNormError`.

alpha initialisation
--------------------
* ``llm_alpha=False`` (default): every DyT gets ``alpha_init`` (0.5 if None),
  the paper's default for non-LLM models.
* ``llm_alpha=True``: paper-style defaults by width and position.  The norm's
  role is decided from the last component of its qualified module name:

  ===================================================  =======
  last name component                                  role
  ===================================================  =======
  contains ``attn_norm`` / ``attention_norm``,          attn
  or is ``norm1`` / ``ln_1`` / ``input_layernorm``
  contains ``ffn_norm`` / ``mlp_norm``,                 ffn
  or is ``norm2`` / ``ln_2`` / ``post_attention_layernorm``
  contains ``final_norm``, or is ``norm`` / ``ln_f`` /  final
  ``norm_f``
  ===================================================  =======

  and alpha0 is looked up in :data:`LLM_ALPHA_TABLE`.  A name matching no
  role raises ``ValueError`` rather than guessing.
"""
from typing import Optional, Tuple

import torch
from torch import nn

from .dyt import DynamicTanh, RMSNorm

# Paper-style defaults by width: (max width, attn alpha0, ffn/final alpha0).
# Attention-block norms start with a higher alpha than FFN-block norms and the
# final norm; wider models start lower.  Modelled on the LLaMA settings reported
# by Zhu et al. (7B: 0.8/0.2, 13B: 0.6/0.15, 34B/70B: 0.2/0.05), extended
# downwards so that every width <= 4096 uses 0.8/0.2.
LLM_ALPHA_TABLE: Tuple[Tuple[float, float, float], ...] = (
    (4096, 0.8, 0.2),
    (5120, 0.6, 0.15),
    (float("inf"), 0.2, 0.05),
)


class UnsupportedNormError(ValueError):
    """A norm layer that cannot be replaced by a per-channel DynamicTanh."""


def llm_alpha_for(width: int, role: str) -> float:
    """alpha0 for a DyT of ``width`` channels in ``role`` ('attn', 'ffn', 'final')."""
    if role not in ("attn", "ffn", "final"):
        raise ValueError(f"unknown DyT role {role!r}; expected 'attn', 'ffn' or 'final'")
    for max_width, attn, other in LLM_ALPHA_TABLE:
        if width <= max_width:
            return attn if role == "attn" else other
    raise AssertionError("unreachable: the table ends with inf")


_ATTN_EXACT = {"norm1", "ln_1", "input_layernorm"}
_FFN_EXACT = {"norm2", "ln_2", "post_attention_layernorm"}
_FINAL_EXACT = {"norm", "ln_f", "norm_f"}


def norm_role(qualified_name: str) -> str:
    """Role ('attn', 'ffn', 'final') of a norm from its qualified module name."""
    leaf = qualified_name.rsplit(".", 1)[-1]
    if "attn_norm" in leaf or "attention_norm" in leaf or leaf in _ATTN_EXACT:
        return "attn"
    if "ffn_norm" in leaf or "mlp_norm" in leaf or leaf in _FFN_EXACT:
        return "ffn"
    if "final_norm" in leaf or leaf in _FINAL_EXACT:
        return "final"
    raise ValueError(
        f"cannot tell whether norm {qualified_name!r} is an attention, FFN or final norm "
        "(llm_alpha=True needs names containing attn_norm/ffn_norm/final_norm, "
        "or norm1/norm2/norm)")


def _is_rmsnorm(m: nn.Module) -> bool:
    return isinstance(m, RMSNorm) or type(m).__name__ == "RMSNorm"


def _norm_params(name: str, m: nn.Module) -> Tuple[int, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(width, weight or None, bias or None) of a LayerNorm / RMSNorm."""
    if isinstance(m, nn.LayerNorm):
        shape = tuple(m.normalized_shape)
        if len(shape) != 1:
            raise UnsupportedNormError(
                f"{name}: LayerNorm over shape {shape} normalises several dims; "
                "DynamicTanh only replaces a norm over the last dim")
        return shape[0], m.weight, m.bias
    # RMSNorm: ours, torch's (>= 2.4, has normalized_shape), or third-party ones.
    weight = getattr(m, "weight", None)
    bias = getattr(m, "bias", None)
    width = None
    if isinstance(weight, torch.Tensor):
        if weight.dim() != 1:
            raise UnsupportedNormError(f"{name}: RMSNorm weight has shape {tuple(weight.shape)}, expected 1-D")
        width = weight.shape[0]
    else:
        weight = None
        shape = getattr(m, "normalized_shape", None)
        if shape is not None:
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            if len(shape) != 1:
                raise UnsupportedNormError(f"{name}: RMSNorm over shape {shape} is not supported")
            width = shape[0]
        else:
            for attr in ("dim", "hidden_size", "num_features"):
                if isinstance(getattr(m, attr, None), int):
                    width = getattr(m, attr)
                    break
    if width is None:
        raise UnsupportedNormError(f"{name}: cannot determine the width of RMSNorm {type(m).__name__}")
    if not isinstance(bias, torch.Tensor):
        bias = None
    elif bias.shape != (width,):
        raise UnsupportedNormError(f"{name}: RMSNorm bias has shape {tuple(bias.shape)}, expected ({width},)")
    return width, weight, bias


def convert_ln_to_dyt(model: nn.Module, alpha_init: Optional[float] = None,
                      llm_alpha: bool = False) -> nn.Module:
    """Replace every LayerNorm / RMSNorm in ``model`` (in place) by DynamicTanh.

    Returns ``model`` (or a new DynamicTanh if ``model`` itself is a norm).
    See the module docstring for how alpha is initialised.
    """
    if llm_alpha and alpha_init is not None:
        raise ValueError("pass either alpha_init or llm_alpha=True, not both")
    default_alpha = 0.5 if alpha_init is None else float(alpha_init)

    def make(name: str, m: nn.Module) -> DynamicTanh:
        width, weight, bias = _norm_params(name or "<root>", m)
        alpha = llm_alpha_for(width, norm_role(name or "norm")) if llm_alpha else default_alpha
        ref = weight if weight is not None else bias
        dyt = DynamicTanh(width, alpha_init=alpha, channels_last=True, elementwise_affine=True)
        if ref is not None:
            dyt = dyt.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if weight is not None:
                dyt.weight.copy_(weight)
            if bias is not None:
                dyt.bias.copy_(bias)
        dyt.train(m.training)
        return dyt

    if isinstance(model, nn.LayerNorm) or _is_rmsnorm(model):
        return make("", model)

    # Collect first, then replace, so the walk is not disturbed by the edits.
    # A norm shared by several parents is converted once and stays shared.
    targets = [(name, m) for name, m in model.named_modules(remove_duplicate=False)
               if name and (isinstance(m, nn.LayerNorm) or _is_rmsnorm(m))]
    converted = {}
    for name, m in targets:
        if id(m) not in converted:
            converted[id(m)] = make(name, m)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, converted[id(m)])
    return model
