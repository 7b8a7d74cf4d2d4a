#!/usr/bin/env python3
"""Exports the models of the end-to-end DyT benchmark (bench/dyt_e2e_bench.cc).

A ViT-Tiny-sized pair (width 192, depth 12, 3 heads, 224x224 images in 16x16
patches: 197 tokens), LayerNorm and DyT, with the same random weights except
the norms, plus a DyT copy with fusion switched off and a copy with no norm at
all (every norm an identity: the floor that no norm, however cheap, can beat).
Untrained: latency does not depend on what the weights learned. Run with the
project's venv (.venv/bin/python); --device cuda:0 writes configs that serve
on the GPU.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))

import torch  # noqa: E402

from dytserve_models.vit import ViT  # noqa: E402

CONFIG = """max_batch_size: 8
input {{ name: "pixel_values" data_type: TYPE_FP32 dims: [3, 224, 224] }}
output {{ name: "logits" data_type: TYPE_FP32 dims: [1000] }}
{extra}"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu", help="instance_group device of every config: cpu or cuda:N")
    args = parser.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(2)
    models = {}
    for norm, layer in (("ln", "ln"), ("dyt", "dyt"), ("none", lambda dim: torch.nn.Identity())):
        torch.manual_seed(0)
        models[norm] = ViT(image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=192, depth=12,
                           num_heads=3, norm_layer=layer).eval()
    for name, norm, extra in (("vit_tiny_ln", "ln", ""), ("vit_tiny_dyt", "dyt", ""),
                              ("vit_tiny_dyt_unfused", "dyt", "optimization { fuse_dyt: false }\n"),
                              ("vit_tiny_nonorm", "none", "")):
        (out / name / "1").mkdir(parents=True, exist_ok=True)
        torch.jit.save(torch.jit.script(models[norm]), str(out / name / "1" / "model.pt"))
        extra += f'instance_group {{ device: "{args.device}" }}\n'
        (out / name / "config.pbtxt").write_text(CONFIG.format(extra=extra))
    print(f"exported to {out}")


if __name__ == "__main__":
    main()
