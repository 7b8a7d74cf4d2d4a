#!/usr/bin/env python3
"""Build dytserve's default model repository (deterministic, CPU only).

    .venv/bin/python models/export_repository.py --out DIR [--force] [--only NAMES] [--device cpu|cuda]

writes

    DIR/vit_ln/{config.pbtxt,1/model.pt}             digits ViT, LayerNorm, trained here
    DIR/vit_dyt/{config.pbtxt,1/model.pt}            digits ViT, DynamicTanh (alpha0 0.5), trained here
    DIR/vit_relu_attn/{config.pbtxt,1/model.pt}      digits ViT, LayerNorm, ReLU/L attention, trained here
    DIR/vit_dyt_relu_attn/{config.pbtxt,1/model.pt}  digits ViT, DynamicTanh, ReLU/L attention, trained here
    DIR/llama_rms/{config.pbtxt,1/model.pt}          tiny LLaMA, RMSNorm, random init (seed 0)
    DIR/llama_dyt/{config.pbtxt,1/model.pt}          its DyT twin (paper-style alpha0 by width/position)
    DIR/vit_dyt_aoti/{config.pbtxt,1/model.pt2}      vit_dyt's weights as an AOTInductor package
    DIR/llama_dyt_aoti/{config.pbtxt,1/model.pt2}    llama_dyt's weights as an AOTInductor package
    DIR/experiments.pbtxt                             the default experiments (dytserve.v1.ExperimentList)
    DIR/digits_test.json                              the held-out digits and their labels, for
                                                      `dytserve-loadgen --dataset=digits` (written even
                                                      when the models are up to date)
    DIR/manifest.json                                 written last; records the source hash

The four ViTs are trained with the same recipe (dytserve_models.train) and
differ only in the norm and the attention (softmax, or ReLU(q k^T / sqrt(d)) / L).

model.pt is ``torch.jit.save`` of ``torch.jit.script(model.eval())`` (not
frozen): ``forward(self, <input>: Tensor) -> Tensor``.  model.pt2 is
``dytserve_models.aoti.export_package`` of the same module (CPU, dynamic batch,
and dynamic length for the decoder), so an experiment can compare formats on
identical weights.  Re-running with --force on the same machine and checkout
reproduces every file byte for byte (the script re-executes itself with
PYTHONHASHSEED=0 for that).

If DIR/manifest.json records the same hash of the models/ sources (and torch
version) as now and every file is present, prints "repository up to date" and
exits 0 without doing anything.  Exits 1 with a message on stderr if any ViT
reaches less than 85% test accuracy (nothing is written in that case).
"""
import os

# Before torch is imported: keep every thread pool at 2 (shared 2-core build
# machine), or DYTSERVE_EXPORT_THREADS (the GPU check's 16-core machine).
THREADS = int(os.environ.get("DYTSERVE_EXPORT_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, str(THREADS))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent
if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))

# numpy / torch are imported lazily so the "up to date" check stays cheap
# (the build runs this script every time).

MIN_VIT_ACCURACY = 0.85
SEED = 0
MANIFEST_FORMAT = 1

VIT_MAX_BATCH = 64
LLAMA_MAX_BATCH = 16
LLAMA_VOCAB = 256

# name -> static description used for config.pbtxt and manifest.json.  ViTs:
# train_norm / attention are the arguments of train_digits_vit.  Models are
# scripted in this order, and new ones go last: TorchScript numbers the types
# it mangles per process, so scripting a new model before an existing one would
# change the existing one's model.pt bytes (not its graph or weights).
MODELS = {
    "vit_ln": dict(kind="vit", norm="layernorm", train_norm="ln", attention="softmax",
                   max_batch_size=VIT_MAX_BATCH),
    "vit_dyt": dict(kind="vit", norm="dyt", train_norm="dyt", attention="softmax",
                    max_batch_size=VIT_MAX_BATCH),
    "llama_rms": dict(kind="llama", norm="rmsnorm", max_batch_size=LLAMA_MAX_BATCH),
    "llama_dyt": dict(kind="llama", norm="dyt", max_batch_size=LLAMA_MAX_BATCH),
    "vit_relu_attn": dict(kind="vit", norm="layernorm", train_norm="ln", attention="relu",
                          max_batch_size=VIT_MAX_BATCH),
    "vit_dyt_relu_attn": dict(kind="vit", norm="dyt", train_norm="dyt", attention="relu",
                              max_batch_size=VIT_MAX_BATCH),
    # AOTInductor twins: the module of `twin`, compiled (models/dytserve_models/aoti.py).
    "vit_dyt_aoti": dict(kind="vit", norm="dyt", attention="softmax", twin="vit_dyt", format="aoti",
                         max_batch_size=VIT_MAX_BATCH),
    "llama_dyt_aoti": dict(kind="llama", norm="dyt", twin="llama_dyt", format="aoti",
                           max_batch_size=LLAMA_MAX_BATCH),
}
IO = {
    "vit": dict(inputs=[dict(name="pixel_values", data_type="TYPE_FP32", dims=[1, 8, 8])],
                outputs=[dict(name="logits", data_type="TYPE_FP32", dims=[10])],
                batching="max_queue_delay_us: 2000 max_queue_size: 256"),
    # Causal attention: right padding leaves real positions unchanged, so
    # requests of different lengths may share a batch; logits follow the
    # sequence dim and are sliced back per request.
    "llama": dict(inputs=[dict(name="input_ids", data_type="TYPE_INT64", dims=[-1], pad_value=0)],
                  outputs=[dict(name="logits", data_type="TYPE_FP32", dims=[-1, LLAMA_VOCAB],
                                follows='follows { input: "input_ids" input_dim: 0 output_dim: 0 }')],
                  batching=("max_queue_delay_us: 2000 max_queue_size: 256 "
                            "ragged_batching: true length_bucket: 32")),
}


# The ViTs that are trained (the AOTInductor twins reuse their twin's module).
VIT_NAMES = [n for n, spec in MODELS.items() if spec["kind"] == "vit" and "twin" not in spec]


def model_file(name: str) -> str:
    """The file under <model>/1/: model.pt (TorchScript) or model.pt2 (AOTInductor)."""
    return "model.pt2" if MODELS[name].get("format") == "aoti" else "model.pt"

# config.pbtxt parameter naming the attention, for the models that do not use softmax
# (vit_ln / vit_dyt keep their config unchanged).
ATTENTION_PARAMETER = {"relu": "relu/L"}

# protobuf text format of dytserve.v1.ExperimentList: the A/B experiments the
# server runs over this repository by default.
EXPERIMENTS_PBTXT = """\
# dytserve.v1.ExperimentList, written by models/export_repository.py
experiments {
  name: "vit"
  arms { name: "ln" model: "vit_ln" weight: 50 }
  arms { name: "dyt" model: "vit_dyt" weight: 50 }
}
experiments {
  name: "llama"
  arms { name: "rms" model: "llama_rms" weight: 100 }
  arms { name: "dyt_shadow" model: "llama_dyt" shadow: true shadow_fraction: 0.5 }
}
"""
EXPERIMENTS_FILE = "experiments.pbtxt"


def source_files():
    """The files whose content decides the repository (sorted, relative to models/)."""
    files = sorted((MODELS_DIR / "dytserve_models").rglob("*.py"))
    files.append(MODELS_DIR / "export_repository.py")
    return files


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def source_hash() -> str:
    """sha256 over the torch/numpy/scikit-learn versions and every source file's path and bytes."""
    h = hashlib.sha256()
    for dist in ("torch", "numpy", "scikit-learn"):
        h.update(f"{dist}={_dist_version(dist)}\n".encode())
    for f in source_files():
        rel = f.relative_to(MODELS_DIR).as_posix()
        data = f.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def expected_files(out: Path, names=None):
    """Every file the export writes except manifest.json (``names``: a --only selection)."""
    names = list(MODELS) if names is None else names
    files = [out / n / p for n in names for p in ("config.pbtxt", "1/" + model_file(n))]
    return files + ([out / EXPERIMENTS_FILE] if set(names) == set(MODELS) else [])


def up_to_date(out: Path, digest: str, names=None, device: str = "cpu") -> bool:
    manifest = out / "manifest.json"
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError, AttributeError):
        return False
    names = list(MODELS) if names is None else names
    return (recorded.get("source_hash") == digest and recorded.get("device", "cpu") == device
            and sorted(recorded.get("models", {})) == sorted(names)
            and all(f.is_file() for f in expected_files(out, names)))


def selection(only: str):
    """--only's names, checked, with each AOTInductor twin's TorchScript twin added (it is built from it)."""
    if not only:
        return list(MODELS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"export_repository: --only: unknown model(s) {', '.join(unknown)}; "
                         f"known: {', '.join(MODELS)}")
    for n in list(names):
        twin = MODELS[n].get("twin")
        if twin and twin not in names:
            names.append(twin)
    return [n for n in MODELS if n in names]


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fmt_dims(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _quote(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_pbtxt(name: str, parameters: dict, device: str = "cpu") -> str:
    """protobuf text format of dytserve.v1.ModelConfig for ``name``."""
    spec = MODELS[name]
    io = IO[spec["kind"]]
    lines = [
        f"name: {_quote(name)}",
        'platform: "torch_aoti"' if spec.get("format") == "aoti" else 'platform: "torchscript"',
        f"max_batch_size: {spec['max_batch_size']}",
    ]
    for inp in io["inputs"]:
        extra = f" pad_value: {inp['pad_value']}" if "pad_value" in inp else ""
        lines.append(f"input {{ name: {_quote(inp['name'])} data_type: {inp['data_type']} "
                     f"dims: {_fmt_dims(inp['dims'])}{extra} }}")
    for out in io["outputs"]:
        extra = f" {out['follows']}" if "follows" in out else ""
        lines.append(f"output {{ name: {_quote(out['name'])} data_type: {out['data_type']} "
                     f"dims: {_fmt_dims(out['dims'])}{extra} }}")
    lines.append(f"dynamic_batching {{ {io['batching']} }}")
    lines.append('instance_group { count: 1 device: "cuda:0" }' if device == "cuda"
                 else 'instance_group { count: 1 device: "cpu" }')
    for k in sorted(parameters):
        lines.append(f"parameters {{ key: {_quote(k)} value: {_quote(parameters[k])} }}")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def script_and_check(model, example) -> bytes:
    """TorchScript ``model`` (eval), check the saved file reloads and matches eager; return its bytes."""
    import io as _io

    import torch

    model.eval()
    scripted = torch.jit.script(model)
    buf = _io.BytesIO()
    torch.jit.save(scripted, buf)
    data = buf.getvalue()
    reloaded = torch.jit.load(_io.BytesIO(data))
    with torch.no_grad():
        diff = (reloaded(example) - model(example)).abs().max().item()
    if not diff <= 1e-5:
        raise RuntimeError(f"TorchScript output differs from eager by {diff}")
    return data


def compile_and_check(model, example, io: dict, max_batch_size: int, device: str = "cpu") -> bytes:
    """AOTInductor package of ``model`` (eval) for ``device``; checks it loads and matches eager; returns its bytes."""
    import copy

    import torch
    from dytserve_models.aoti import export_package

    model = copy.deepcopy(model).eval().to(device)
    example = example.to(device)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_package(model, [example], io["inputs"], io["outputs"], max_batch_size,
                              os.path.join(tmp, "model.pt2"))
        loaded = torch._inductor.aoti_load_package(path)
        with torch.no_grad():
            diff = (loaded(example) - model(example)).abs().max().item()
        if not diff <= (1e-5 if device == "cpu" else 1e-4):
            raise RuntimeError(f"AOTInductor output differs from eager by {diff}")
        with open(path, "rb") as f:
            return f.read()


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build(out: Path, names=None, device: str = "cpu") -> dict:
    import torch
    from dytserve_models.llama import build_llama_pair
    from dytserve_models.train import train_digits_vit

    names = list(MODELS) if names is None else names
    built = {}
    for name in (n for n in VIT_NAMES if n in names):
        spec = MODELS[name]
        seed_everything(SEED)
        t0 = time.time()
        # Same seed and recipe for every ViT; only the norm and the attention differ.
        model, acc = train_digits_vit(spec["train_norm"], seed=SEED, attn_kind=spec["attention"])
        print(f"{name}: test accuracy {acc:.4f} (trained in {time.time() - t0:.1f}s)", flush=True)
        built[name] = (model, {"test_accuracy": round(acc, 4)})
    low = {n: m[1]["test_accuracy"] for n, m in built.items() if m[1]["test_accuracy"] < MIN_VIT_ACCURACY}
    if low:
        raise SystemExit("export_repository: ERROR: "
                         + ", ".join(f"{n} test accuracy {a:.4f}" for n, a in low.items())
                         + f" {'is' if len(low) == 1 else 'are'} below the required {MIN_VIT_ACCURACY}; "
                         "repository not written")

    seed_everything(SEED)
    rms, dyt = build_llama_pair(SEED)
    built["llama_rms"] = (rms, {})
    built["llama_dyt"] = (dyt, {"dyt_alpha_init": "attn=0.8,ffn=0.2,final=0.2"})
    for name in ("vit_dyt", "vit_dyt_relu_attn"):
        if name in built:
            built[name][1]["dyt_alpha_init"] = "0.5"

    gen = torch.Generator().manual_seed(SEED)
    examples = {"vit": torch.rand(3, 1, 8, 8, generator=gen),
                "llama": torch.randint(0, LLAMA_VOCAB, (2, 7), generator=gen)}

    # A stale manifest must not vouch for a half-written repository.
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()

    manifest = {"format": MANIFEST_FORMAT, "source_hash": source_hash(), "device": device,
                "torch_version": torch.__version__, "seed": SEED, "models": {}}
    for name in names:
        spec = MODELS[name]
        if "twin" in spec:
            model, twin_facts = built[spec["twin"]]
            facts = {k: v for k, v in twin_facts.items() if k != "test_accuracy"}
            facts["twin"] = spec["twin"]
            t0 = time.time()
            data = compile_and_check(model, examples[spec["kind"]], IO[spec["kind"]], spec["max_batch_size"], device)
            print(f"{name}: compiled with AOTInductor in {time.time() - t0:.1f}s", flush=True)
        else:
            model, facts = built[name]
            data = script_and_check(model, examples[spec["kind"]])
        n_params = num_parameters(model)
        params = {"norm": spec["norm"], "num_parameters": str(n_params)}
        if spec.get("attention") in ATTENTION_PARAMETER:
            params["attention"] = ATTENTION_PARAMETER[spec["attention"]]
        params.update({k: (f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in facts.items()})
        _atomic_write(out / name / "1" / model_file(name), data)
        _atomic_write(out / name / "config.pbtxt", config_pbtxt(name, params, device).encode())
        entry = {"norm": spec["norm"], "num_parameters": n_params, "format": spec.get("format", "torchscript"),
                 "max_batch_size": spec["max_batch_size"], **IO[spec["kind"]],
                 "model_sha256": hashlib.sha256(data).hexdigest()}
        if "attention" in spec:
            entry["attention"] = spec["attention"]
        entry.update(facts)
        manifest["models"][name] = entry
    if set(names) == set(MODELS):  # a selection may lack the experiments' models
        _atomic_write(out / EXPERIMENTS_FILE, EXPERIMENTS_PBTXT.encode())
        manifest["experiments_sha256"] = hashlib.sha256(EXPERIMENTS_PBTXT.encode()).hexdigest()
    _atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


DATASET_FILE = "digits_test.json"


def write_digits_dataset(out: Path) -> Path:
    """The digits ViTs' held-out split (never trained on) with its labels, in the
    layout dytserve-loadgen's --dataset reads:
    {"name", "input", "datatype", "shape" (one example, no batch dim),
     "examples": [{"data": [...], "label": int}, ...]}."""
    from dytserve_models.train import load_digits_split

    _, _, x_te, y_te = load_digits_split()
    doc = {"name": "digits", "input": "pixel_values", "datatype": "FP32", "shape": list(x_te.shape[1:]),
           "examples": [{"data": [round(float(v), 6) for v in x.flatten().tolist()], "label": int(y)}
                        for x, y in zip(x_te, y_te)]}
    path = out / DATASET_FILE
    text = json.dumps(doc, separators=(",", ":")) + "\n"
    if not path.exists() or path.read_text() != text:
        _atomic_write(path, text.encode())
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="model repository directory to write")
    ap.add_argument("--force", action="store_true", help="rebuild even if the manifest says up to date")
    ap.add_argument("--only", default="", help="comma-separated models to write (an AOTInductor twin brings its "
                                               "twin); experiments.pbtxt is written only with all of them")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: configs serve on cuda:0 and the AOTInductor twins are compiled for CUDA "
                         "(needs a GPU; training stays on the CPU)")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    names = selection(args.only)

    digest = source_hash()
    if not args.force and up_to_date(out, digest, names, args.device):
        write_digits_dataset(out)
        print("repository up to date")
        return 0

    import torch

    torch.set_num_threads(THREADS)
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    manifest = build(out, names, args.device)
    print(f"wrote {write_digits_dataset(out)}")
    for name, m in manifest["models"].items():
        attn = f", {m['attention']} attention" if "attention" in m else ""
        acc = f", test accuracy {m['test_accuracy']:.4f}" if "test_accuracy" in m else ""
        print(f"wrote {out / name}: {m['norm']}{attn}, {m['num_parameters']} parameters{acc}")
    if "experiments_sha256" in manifest:
        print(f"wrote {out / EXPERIMENTS_FILE}")
    print(f"repository written to {out} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    # TorchScript writes a module's Final constants in set order, which depends on
    # string hashing: pin the hash seed so model.pt is byte-for-byte reproducible.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve())] + sys.argv[1:])
    sys.exit(main())
