"""PyTorch models for dytserve: DyT layers, LN->DyT conversion, a digits ViT (softmax or ReLU/L
attention) and a tiny LLaMA."""
from .dyt import DynamicTanh, RMSNorm
from .convert import LLM_ALPHA_TABLE, UnsupportedNormError, convert_ln_to_dyt, llm_alpha_for, norm_role
from .vit import ATTENTION_KINDS, VariantAttention, ViT, vit_digits
from .llama import Llama, build_llama_pair, llama_tiny

__all__ = [
    "DynamicTanh", "RMSNorm", "LLM_ALPHA_TABLE", "UnsupportedNormError", "convert_ln_to_dyt",
    "llm_alpha_for", "norm_role", "ViT", "vit_digits", "VariantAttention", "ATTENTION_KINDS",
    "Llama", "llama_tiny", "build_llama_pair",
]
