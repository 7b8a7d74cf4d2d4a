"""Train the digits ViTs (any norm / attention variant) on scikit-learn's bundled ``load_digits``.

Deterministic: fixed seed, fixed 80/20 split (``random_state=0``, stratified),
pixels divided by 16, CPU only.  Uses whatever ``torch.get_num_threads()`` the
caller set (the exporter sets 2).
"""
import time
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .vit import ViT, vit_digits

SPLIT_RANDOM_STATE = 0
TEST_SIZE = 0.2


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    seed: int = 0


def load_digits_split() -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test); x is float32 [N, 1, 8, 8] in [0, 1], y int64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_RANDOM_STATE, stratify=y)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr),
            torch.from_numpy(x_te), torch.from_numpy(y_te))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)


def train_vit(model: nn.Module, cfg: TrainConfig = TrainConfig(), verbose: bool = False) -> float:
    """Train ``model`` in place on the digits train split; return test accuracy (model left in eval mode)."""
    x_tr, y_tr, x_te, y_te = load_digits_split()
    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n and "token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n and "token" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = (len(x_tr) + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return cfg.lr * 0.5 * (1.0 + np.cos(np.pi * progress))

    model.train()
    step = 0
    t0 = time.time()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(x_tr), generator=gen)
        running = 0.0
        for i in range(0, len(x_tr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss) * len(idx)
            step += 1
        if verbose:
            print(f"  epoch {epoch + 1:2d}/{cfg.epochs} loss {running / len(x_tr):.4f} "
                  f"test acc {evaluate(model, x_te, y_te):.4f} ({time.time() - t0:.1f}s)", flush=True)
    model.eval()
    return evaluate(model, x_te, y_te)


def train_digits_vit(norm: str, seed: int = 0, cfg: TrainConfig = None, verbose: bool = False,
                     attn_kind: str = "softmax", qk_norm: bool = False) -> Tuple[ViT, float]:
    """Build the digits ViT with ``norm`` ('ln' or 'dyt', alpha0 0.5) and attention ``attn_kind``
    ('softmax' or 'relu', optionally with qk-layernorm) from seed ``seed``, train it with the
    same recipe whatever the variant, return (eval-mode model, test accuracy)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = vit_digits(norm, attn_kind=attn_kind, qk_norm=qk_norm)
    cfg = cfg or TrainConfig(seed=seed)
    acc = train_vit(model, cfg, verbose=verbose)
    return model, acc
