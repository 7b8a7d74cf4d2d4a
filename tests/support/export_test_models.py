"""Models that current PyTorch makes, exported with the pinned one, for the
runtime tests (tests/integration/runtime_test.cc):

    .venv/bin/python tests/support/export_test_models.py --out DIR

DIR/<model>/config.pbtxt and DIR/<model>/1/model.pt (or model.pt2):

    sdpa_scripted, sdpa_traced       pre-norm block calling scaled_dot_product_attention
    encoder_scripted, encoder_traced nn.TransformerEncoderLayer (batch_first)
    timm_vit_dyt_scripted/_traced    a timm-style ViT (patch conv, cls token, fused qkv,
                                     SDPA, pre-norm blocks) whose LayerNorms
                                     convert_ln_to_dyt turned into DyT
    timm_vit_dyt_aoti                the same module as an AOTInductor package
    zoo_vit_dyt_traced               the zoo's DyT ViT and LLaMA architectures, traced
    zoo_llama_dyt_traced             (the default repository scripts them)
    legacy_113                       tests/fixtures/legacy_113.pt, saved by PyTorch 1.13
    keyword_aoti                     an AOTInductor package taking keyword arguments and
                                     returning a dict, in another order than its config's

DIR/cases/<model>.json: {"inputs": [...], "outputs": [...]} in the KServe v2
JSON layout: 3 rows and the eager outputs for them. DIR/expected.json: per
model, how many DyTs the server must fuse, and fold into a following Linear. DIR/packages/: copies of
timm_vit_dyt_aoti's package whose metadata claims a CUDA device, another
PyTorch version or another CPU instruction set, for the refusal tests.

Does nothing when DIR/stamp matches the hash of this file, the models
package and the fixture (a few AOTInductor compiles take about a minute).
"""
import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from dytserve_models.aoti import export_package  # noqa: E402
from dytserve_models.convert import convert_ln_to_dyt  # noqa: E402
from dytserve_models.llama import build_llama_pair  # noqa: E402
from dytserve_models.vit import ViT  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "legacy_113"
ROWS = 3


class SdpaBlock(nn.Module):
    """x + proj(SDPA(qkv(LN(x)))), then x + MLP(LN(x)): the shape of every current transformer block."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).reshape(n, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TimmAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TimmBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TimmAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimmViT(nn.Module):
    """timm's VisionTransformer layout at toy size: 16x16 RGB, patch 4, width 64, depth 2."""

    def __init__(self, image: int = 16, patch: int = 4, dim: int = 64, depth: int = 2, heads: int = 4,
                 classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[TimmBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class KeywordModel(nn.Module):
    """forward(a, b) -> {"sum": ..., "scaled": ...}: exported with keywords in the order (b, a)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        return {"scaled": self.fc(b) * 2.0, "sum": self.fc(a) + b}


def tensor_json(name: str, t: torch.Tensor) -> dict:
    datatype = {torch.float32: "FP32", torch.int64: "INT64"}[t.dtype]
    data = [float(v) for v in t.flatten()] if t.is_floating_point() else [int(v) for v in t.flatten()]
    return {"name": name, "datatype": datatype, "shape": list(t.shape), "data": data}


def config(name: str, platform: str, max_batch: int, inputs, outputs, extra: str = "") -> str:
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}"]
    for n, t, dims in inputs:
        lines.append(f'input {{ name: "{n}" data_type: {t} dims: [{", ".join(map(str, dims))}] }}')
    for n, t, dims in outputs:
        lines.append(f'output {{ name: "{n}" data_type: {t} dims: [{", ".join(map(str, dims))}] }}')
    lines.append("dynamic_batching { max_queue_delay_us: 20000 }")
    return "\n".join(lines) + "\n" + extra


def source_hash() -> str:
    h = hashlib.sha256(torch.__version__.encode())
    files = [Path(__file__)] + sorted((ROOT / "models" / "dytserve_models").glob("*.py"))
    files += [FIXTURE.with_suffix(".pt"), FIXTURE.with_suffix(".case.json")]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def with_metadata(package: Path, out: Path, changes: dict) -> None:
    """Copies an AOTInductor package, changing keys of its metadata JSON files."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            dst.writestr(item, data)


def build(out: Path) -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    expected = {}
    cases = {}

    def add(name, platform, data_path_or_bytes, inputs, outputs, example_rows, model_outputs, fused_dyt,
            folded_dyt=0, max_batch=8, extra=""):
        vdir = out / name / "1"
        vdir.mkdir(parents=True, exist_ok=True)
        target = vdir / ("model.pt2" if platform == "torch_aoti" else "model.pt")
        if isinstance(data_path_or_bytes, Path):
            shutil.copyfile(data_path_or_bytes, target)
        else:
            target.write_bytes(data_path_or_bytes)
        (out / name / "config.pbtxt").write_text(config(name, platform, max_batch, inputs, outputs, extra))
        cases[name] = {"inputs": [tensor_json(n, t) for (n, _, _), t in zip(inputs, example_rows)],
                       "outputs": [tensor_json(n, t) for (n, _, _), t in zip(outputs, model_outputs)]}
        expected[name] = {"fused_dyt": fused_dyt, "folded_dyt": folded_dyt, "platform": platform}

    def saved(module) -> bytes:
        with tempfile.NamedTemporaryFile(suffix=".pt") as f:
            torch.jit.save(module, f.name)
            return Path(f.name).read_bytes()

    # A block calling scaled_dot_product_attention, scripted and traced.
    block = SdpaBlock().eval()
    x = torch.randn(ROWS, 8, 32, generator=gen)
    with torch.no_grad():
        y = block(x)
    io_in, io_out = [("x", "TYPE_FP32", [8, 32])], [("y", "TYPE_FP32", [8, 32])]
    add("sdpa_scripted", "torchscript", saved(torch.jit.script(block)), io_in, io_out, [x], [y], 0)
    add("sdpa_traced", "torchscript", saved(torch.jit.trace(block, x[:1])), io_in, io_out, [x], [y], 0)

    # PyTorch's own encoder layer (its fast path in eval mode, where it applies).
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0,
                                       batch_first=True).eval()
    with torch.no_grad():
        y = layer(x)
    io_in, io_out = [("src", "TYPE_FP32", [8, 32])], [("out", "TYPE_FP32", [8, 32])]
    add("encoder_scripted", "torchscript", saved(torch.jit.script(layer)), io_in, io_out, [x], [y], 0)
    # Traced as it runs when served (no grad: the fused fast path). Tracing's
    # own check re-traces with grad on, which takes the other path, so it is
    # off; the served outputs are checked against eager instead.
    with torch.no_grad():
        traced = torch.jit.trace(layer, x[:1], check_trace=False)
    add("encoder_traced", "torchscript", saved(traced), io_in, io_out, [x], [y], 0)

    # A timm-style ViT, its LayerNorms turned into DyT: 2 blocks x 2 + the final norm.
    vit = convert_ln_to_dyt(TimmViT()).eval()
    with torch.no_grad():  # away from the identity, so that a lost DyT would show
        for m in vit.modules():
            if type(m).__name__ == "DynamicTanh":
                m.weight.add_(torch.rand(m.weight.shape, generator=gen))
                m.bias.add_(torch.rand(m.bias.shape, generator=gen) * 0.1)
    images = torch.rand(ROWS, 3, 16, 16, generator=gen)
    with torch.no_grad():
        logits = vit(images)
    io_in, io_out = [("pixel_values", "TYPE_FP32", [3, 16, 16])], [("logits", "TYPE_FP32", [10])]
    # Every DyT fused; the blocks' four folded into the Linear after them (the
    # final norm's output is sliced, x[:, 0], before the head: not foldable).
    add("timm_vit_dyt_scripted", "torchscript", saved(torch.jit.script(vit)), io_in, io_out, [images], [logits], 5, 4)
    add("timm_vit_dyt_traced", "torchscript", saved(torch.jit.trace(vit, images[:1])), io_in, io_out, [images],
        [logits], 5, 4)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(export_package(
            vit, [images], [dict(name="pixel_values", data_type="TYPE_FP32", dims=[3, 16, 16])],
            [dict(name="logits", data_type="TYPE_FP32", dims=[10])], 8, os.path.join(tmp, "model.pt2")))
        add("timm_vit_dyt_aoti", "torch_aoti", package, io_in, io_out, [images], [logits], 0)
        packages = out / "packages"
        packages.mkdir(exist_ok=True)
        with_metadata(package, packages / "cuda.pt2", {"AOTI_DEVICE_KEY": "cuda", "AOTI_COMPUTE_CAPABILITY": "90"})
        with_metadata(package, packages / "other_torch.pt2", {"dytserve.torch_version": "2.10.0+cu128"})
        with_metadata(package, packages / "other_isa.pt2", {"AOTI_CPU_ISA": "NEON"})

    # The zoo's architectures, traced (the default repository scripts them).
    zoo_vit = ViT(norm_layer="dyt").eval()
    digits = torch.rand(ROWS, 1, 8, 8, generator=gen)
    with torch.no_grad():
        logits = zoo_vit(digits)
    add("zoo_vit_dyt_traced", "torchscript", saved(torch.jit.trace(zoo_vit, digits[:1])),
        [("pixel_values", "TYPE_FP32", [1, 8, 8])], [("logits", "TYPE_FP32", [10])], [digits], [logits], 9, 8)
    _, llama = build_llama_pair(0)
    ids = torch.randint(0, 256, (ROWS, 12), generator=gen)
    with torch.no_grad():
        logits = llama(ids)
    add("zoo_llama_dyt_traced", "torchscript", saved(torch.jit.trace(llama, ids[:1, :5])),
        [("input_ids", "TYPE_INT64", [-1])], [("logits", "TYPE_FP32", [-1, 256])], [ids], [logits], 5, 5)

    # Saved by PyTorch 1.13 (tests/fixtures/make_legacy_113.py); its outputs are 1.13's.
    legacy = json.loads(FIXTURE.with_suffix(".case.json").read_text())
    add("legacy_113", "torchscript", FIXTURE.with_suffix(".pt"), [("x", "TYPE_FP32", [16])],
        [("y", "TYPE_FP32", [8])], [], [], 1, 1)
    cases["legacy_113"] = {"inputs": legacy["inputs"], "outputs": legacy["outputs"]}

    # Keyword inputs and a dict output, each in another order than the config's.
    kw = KeywordModel().eval()
    a, b = torch.randn(ROWS, 4, generator=gen), torch.randn(ROWS, 4, generator=gen)
    with torch.no_grad():
        result = kw(a, b)
    batch = torch.export.Dim("batch", min=1, max=8)
    import torch.fx.experimental._config as fx_config
    with fx_config.patch(backed_size_oblivious=True):
        program = torch.export.export(kw, (), kwargs={"b": b, "a": a},
                                      dynamic_shapes={"b": {0: batch}, "a": {0: batch}}, strict=False)
    with tempfile.TemporaryDirectory() as tmp:
        package = torch._inductor.aoti_compile_and_package(program, package_path=os.path.join(tmp, "model.pt2"))
        add("keyword_aoti", "torch_aoti", Path(package), [("a", "TYPE_FP32", [4]), ("b", "TYPE_FP32", [4])],
            [("sum", "TYPE_FP32", [4]), ("scaled", "TYPE_FP32", [4])], [a, b], [result["sum"], result["scaled"]], 0)

    (out / "cases").mkdir(exist_ok=True)
    for name, case in cases.items():
        (out / "cases" / f"{name}.json").write_text(json.dumps(case) + "\n")
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return expected


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, type=Path)
    out = ap.parse_args().out.resolve()
    digest = source_hash()
    stamp = out / "stamp"
    if stamp.is_file() and stamp.read_text() == digest:
        print("test models up to date")
        return 0
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    expected = build(out)
    stamp.write_text(digest)
    print(f"wrote {len(expected)} test models to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
