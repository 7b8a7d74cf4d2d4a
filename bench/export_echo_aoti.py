#!/usr/bin/env python3
"""Writes echo_aoti/ (y = x + 0 over 16 floats, as an AOTInductor package) for
bench/protocol_bench.cc: the same trivial model as its TorchScript `echo`, in
the format whose per-request cost is not the TorchScript interpreter's.

    .venv/bin/python bench/export_echo_aoti.py --out REPOSITORY
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))

import torch  # noqa: E402

from dytserve_models.aoti import export_package  # noqa: E402

CONFIG = """name: "echo_aoti"
platform: "torch_aoti"
max_batch_size: 8
input { name: "x" data_type: TYPE_FP32 dims: [16] }
output { name: "y" data_type: TYPE_FP32 dims: [16] }
dynamic_batching { max_queue_delay_us: 0 }
"""


class Echo(torch.nn.Module):
    def forward(self, x):
        return x + 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="model repository to write echo_aoti/ into")
    args = parser.parse_args(argv)
    model_dir = Path(args.out) / "echo_aoti"
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    tensor = [{"name": "x", "data_type": "TYPE_FP32", "dims": [16]}]
    export_package(Echo(), [torch.randn(2, 16)], tensor, [dict(tensor[0], name="y")], 8,
                   str(model_dir / "1" / "model.pt2"))
    (model_dir / "config.pbtxt").write_text(CONFIG)


if __name__ == "__main__":
    main()
