"""AOTInductor packages (``model.pt2``) that dytserve loads beside TorchScript.

``export_package(model, example, inputs, outputs, max_batch_size, path)``
exports ``model`` with ``torch.export`` (the batch dimension, and every
dimension a config marks -1, dynamic), compiles it for the CPU with
``torch._inductor.aoti_compile_and_package`` and records in the package's
metadata what the server checks against ``config.pbtxt`` before it runs
anything (``server/core/aoti_backend.h``):

    dytserve.torch_version    the PyTorch that compiled it (packages load only in it)
    dytserve.inputs/outputs   JSON [{"name", "datatype", "shape"}], batch first, -1 variable
    dytserve.max_batch_size   the batch dimension's upper bound

Size 1 is a legal batch and sequence length: the export runs with
``backed_size_oblivious``, so that the graph is not specialised for sizes of
at least 2 (torch.export's default for a dynamic dimension).
"""
import json
import os
from typing import Dict, List, Sequence

import torch
import torch.fx.experimental._config as fx_config

# config.pbtxt's TYPE_* -> the Open Inference Protocol's names (server/core/datatype.h).
_DATATYPES = {"TYPE_FP32": "FP32", "TYPE_INT64": "INT64", "TYPE_INT32": "INT32", "TYPE_FP16": "FP16",
              "TYPE_BF16": "BF16", "TYPE_FP64": "FP64", "TYPE_BOOL": "BOOL", "TYPE_UINT8": "UINT8",
              "TYPE_INT8": "INT8", "TYPE_INT16": "INT16"}


def _describe(tensors: Sequence[dict]) -> str:
    return json.dumps([{"name": t["name"], "datatype": _DATATYPES[t["data_type"]], "shape": [-1] + list(t["dims"])}
                       for t in tensors], separators=(",", ":"))


def export_package(model: torch.nn.Module, example: Sequence[torch.Tensor], inputs: List[dict],
                   outputs: List[dict], max_batch_size: int, path: str, max_length: int = 4096) -> str:
    """Compiles ``model`` (eval mode, CPU) to an AOTInductor package at ``path``.

    ``inputs`` / ``outputs``: the config's tensors (``name``, ``data_type`` as
    ``TYPE_*``, ``dims`` without the batch dim, -1 variable), in forward's
    argument order. Every -1 dim of the inputs shares one dynamic length in
    [1, ``max_length``]."""
    for link in ("/usr/lib/x86_64-linux-gnu/libtorch_cpu.so", "/usr/lib/aarch64-linux-gnu/libtorch_cpu.so"):
        if os.path.exists(link):
            raise SystemExit(f"export_package: {link} (Debian's libtorch-dev, LibTorch 1.13) is installed: "
                             "AOTInductor would link the package against it. Remove it: apt-get remove libtorch-dev "
                             "(scripts/setup.sh does)")
    batch = torch.export.Dim("batch", min=1, max=max_batch_size)
    length = torch.export.Dim("length", min=1, max=max_length)
    dynamic: Dict[str, Dict[int, torch.export.Dim]] = {}
    names = [t["name"] for t in inputs]
    for t in inputs:
        dims = {0: batch}
        for i, d in enumerate(t["dims"]):
            if d == -1:
                dims[i + 1] = length
        dynamic[t["name"]] = dims
    with fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(model.eval(), tuple(example),
                                      dynamic_shapes=tuple(dynamic[n] for n in names), strict=False)
    metadata = {
        "dytserve.torch_version": torch.__version__,
        "dytserve.inputs": _describe(inputs),
        "dytserve.outputs": _describe(outputs),
        "dytserve.max_batch_size": str(max_batch_size),
    }
    return torch._inductor.aoti_compile_and_package(
        program, package_path=path, inductor_configs={"aot_inductor.metadata": metadata})
