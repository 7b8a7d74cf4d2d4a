"""Checks on the exported repository (see conftest.repo: DYTSERVE_REPO or a fresh export)."""
import hashlib
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

import export_repository as er
from conftest import EXPORT_SCRIPT, PROTO_ROOT
from dytserve_models import DynamicTanh, build_llama_pair, vit_digits
from dytserve_models.train import load_digits_split

VIT_NAMES = ["vit_ln", "vit_dyt", "vit_relu_attn", "vit_dyt_relu_attn"]
MODEL_NAMES = VIT_NAMES + ["llama_rms", "llama_dyt"]
# AOTInductor packages of the same modules as their TorchScript twins.
AOTI_TWINS = {"vit_dyt_aoti": "vit_dyt", "llama_dyt_aoti": "llama_dyt"}
ALL_NAMES = MODEL_NAMES + list(AOTI_TWINS)
# name -> (norm, attention) as vit_digits takes them
VIT_VARIANTS = {"vit_ln": ("ln", "softmax"), "vit_dyt": ("dyt", "softmax"),
                "vit_relu_attn": ("ln", "relu"), "vit_dyt_relu_attn": ("dyt", "relu")}
ATOL = 1e-5


def _load(repo, name):
    return torch.jit.load(str(repo / name / "1" / "model.pt"))


def _manifest(repo):
    return json.loads((repo / "manifest.json").read_text())


def _file(name):
    return "1/model.pt2" if name in AOTI_TWINS else "1/model.pt"


def test_layout(repo):
    for name in ALL_NAMES:
        assert (repo / name / "config.pbtxt").is_file()
        assert (repo / name / _file(name)).is_file()
    assert set(_manifest(repo)["models"]) == set(ALL_NAMES)
    assert (repo / "experiments.pbtxt").is_file()
    assert set(er.expected_files(repo)) == (
        {repo / n / f for n in ALL_NAMES for f in ("config.pbtxt", _file(n))} | {repo / "experiments.pbtxt"})


@pytest.mark.parametrize("name", sorted(AOTI_TWINS))
def test_aoti_twin_matches_its_torchscript_twin(repo, name):
    """Same weights, other format: equal outputs at every batch size (1 included) and length."""
    package = torch._inductor.aoti_load_package(str(repo / name / "1" / "model.pt2"))
    twin = _load(repo, AOTI_TWINS[name])
    gen = torch.Generator().manual_seed(3)
    if name.startswith("vit"):
        examples = [torch.rand(b, 1, 8, 8, generator=gen) for b in (1, 2, 7, 64)]
    else:
        examples = [torch.randint(0, 256, (b, n), generator=gen) for b, n in ((1, 1), (1, 9), (4, 33), (16, 5))]
    with torch.no_grad():
        for x in examples:
            torch.testing.assert_close(package(x), twin(x), rtol=1e-4, atol=1e-5)
    meta = package.get_metadata()
    assert meta["AOTI_DEVICE_KEY"] == "cpu"
    assert meta["dytserve.torch_version"] == torch.__version__
    entry = _manifest(repo)["models"][name]
    assert meta["dytserve.max_batch_size"] == str(entry["max_batch_size"])
    assert json.loads(meta["dytserve.inputs"])[0]["name"] == entry["inputs"][0]["name"]
    assert entry["format"] == "aoti" and entry["twin"] == AOTI_TWINS[name]
    assert entry["num_parameters"] == _manifest(repo)["models"][AOTI_TWINS[name]]["num_parameters"]


def test_manifest_matches_current_sources(repo):
    assert _manifest(repo)["source_hash"] == er.source_hash(), (
        "the repository was exported from other sources; re-export it (DYTSERVE_REPO is stale?)")


def test_manifest_accuracy_and_facts(repo):
    models = _manifest(repo)["models"]
    for name in VIT_NAMES:
        assert models[name]["test_accuracy"] >= er.MIN_VIT_ACCURACY >= 0.80, name
        norm, attention = VIT_VARIANTS[name]
        assert models[name]["norm"] == {"ln": "layernorm", "dyt": "dyt"}[norm], name
        assert models[name]["attention"] == attention, name
    assert models["llama_rms"]["norm"] == "rmsnorm" and models["llama_dyt"]["norm"] == "dyt"
    for name in MODEL_NAMES:
        assert models[name]["num_parameters"] == sum(p.numel() for p in _load(repo, name).parameters())


def test_forward_signature(repo):
    for name in MODEL_NAMES:
        arg = "pixel_values" if name in VIT_NAMES else "input_ids"
        schema = _load(repo, name).forward.schema
        assert [a.name for a in schema.arguments] == ["self", arg], str(schema)
        assert [str(r.type) for r in schema.returns] == ["Tensor"], str(schema)


@pytest.mark.parametrize("name", VIT_NAMES)
def test_vit_torchscript_matches_eager(repo, name):
    scripted = _load(repo, name)
    norm, attention = VIT_VARIANTS[name]
    eager = vit_digits(norm, attn_kind=attention).eval()
    eager.load_state_dict(scripted.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n in (1, 5, 64):
            x = torch.rand(n, 1, 8, 8, generator=g)
            y = scripted(x)
            assert y.dtype == torch.float32 and y.shape == (n, 10)
            assert (y - eager(x)).abs().max().item() <= ATOL
    has_dyt = any(isinstance(m, DynamicTanh) for m in eager.modules())
    assert has_dyt == (norm == "dyt")


@pytest.mark.parametrize("name", VIT_NAMES)
def test_vit_accuracy_reproduces(repo, name):
    scripted = _load(repo, name)
    _, _, x_te, y_te = load_digits_split()
    with torch.no_grad():
        acc = (scripted(x_te).argmax(-1) == y_te).float().mean().item()
    assert acc >= er.MIN_VIT_ACCURACY
    assert acc == pytest.approx(_manifest(repo)["models"][name]["test_accuracy"], abs=1e-4)


@pytest.fixture(scope="module")
def llamas():
    rms, dyt = build_llama_pair(er.SEED)
    return {"llama_rms": rms, "llama_dyt": dyt}


@pytest.mark.parametrize("name", ["llama_rms", "llama_dyt"])
def test_llama_torchscript_matches_eager(repo, llamas, name):
    scripted, eager = _load(repo, name), llamas[name]
    # the export is deterministic: rebuilding from the seed gives the same weights
    sd = scripted.state_dict()
    for k, v in eager.state_dict().items():
        assert torch.equal(sd[k], v), k
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, length in [(1, 1), (1, 2), (2, 7), (3, 33), (16, 64), (4, 128)]:
            ids = torch.randint(0, 256, (n, length), generator=g)
            y = scripted(ids)
            assert y.dtype == torch.float32 and y.shape == (n, length, 256)
            assert (y - eager(ids)).abs().max().item() <= ATOL, (n, length)


@pytest.mark.parametrize("name", ["llama_rms", "llama_dyt"])
def test_llama_right_padding_does_not_change_real_positions(repo, name):
    """The server pads input_ids on the right with pad_value 0 to batch requests of
    different lengths; the causal model's logits for real positions must not change."""
    scripted = _load(repo, name)
    g = torch.Generator().manual_seed(3)
    lengths = [1, 5, 17, 40]
    seqs = [torch.randint(1, 256, (1, n), generator=g) for n in lengths]
    batch = torch.zeros(len(seqs), max(lengths), dtype=torch.int64)
    for i, s in enumerate(seqs):
        batch[i, :s.shape[1]] = s[0]
    with torch.no_grad():
        out = scripted(batch)
        for i, s in enumerate(seqs):
            alone = scripted(s)[0]
            assert (out[i, :s.shape[1]] - alone).abs().max().item() <= ATOL


def test_llama_dyt_alpha_and_graph_pattern(repo):
    frozen = torch.jit.freeze(_load(repo, "llama_dyt").eval())
    kinds = [n.kind() for n in frozen.graph.nodes()]
    assert kinds.count("aten::tanh") == 5  # 2 x (attn_norm, ffn_norm) + final_norm
    sd = _load(repo, "llama_dyt").state_dict()
    assert sd["layers.0.attn_norm.alpha"].item() == pytest.approx(0.8)
    assert sd["layers.1.ffn_norm.alpha"].item() == pytest.approx(0.2)
    assert sd["final_norm.alpha"].item() == pytest.approx(0.2)
    assert not any(k.endswith("norm.weight") and "alpha" in k for k in sd)


@pytest.mark.parametrize("name", VIT_NAMES)
def test_vit_frozen_graph_norms_and_attention(repo, name):
    norm, attention = VIT_VARIANTS[name]
    frozen = torch.jit.freeze(_load(repo, name).eval())
    kinds = [n.kind() for n in frozen.graph.nodes()]
    if norm == "dyt":
        assert kinds.count("aten::tanh") == 9  # 4 x (norm1, norm2) + norm
        assert "aten::layer_norm" not in kinds
    else:
        assert kinds.count("aten::layer_norm") == 9
        assert "aten::tanh" not in kinds
    # one score normalisation per block, softmax or relu (GELU is aten::gelu)
    assert kinds.count("aten::softmax") == (4 if attention == "softmax" else 0)
    assert kinds.count("aten::relu") == (4 if attention == "relu" else 0)


CONFIG_LINE = re.compile(
    r'^(name: "[a-z_]+"'
    r'|platform: "(torchscript|torch_aoti)"'
    r'|max_batch_size: \d+'
    r'|input \{ name: "\w+" data_type: TYPE_(FP32|INT64) dims: \[-?\d+(, -?\d+)*\]( pad_value: \d+)? \}'
    r'|output \{ name: "\w+" data_type: TYPE_FP32 dims: \[-?\d+(, -?\d+)*\]'
    r'( follows \{ input: "\w+" input_dim: \d+ output_dim: \d+ \})? \}'
    r'|dynamic_batching \{ max_queue_delay_us: \d+ max_queue_size: \d+'
    r'( ragged_batching: true length_bucket: \d+)? \}'
    r'|instance_group \{ count: \d+ device: "cpu" \}'
    r'|parameters \{ key: "\w+" value: "[^"\\]*" \})$')


@pytest.mark.parametrize("name", ALL_NAMES)
def test_config_text(repo, name):
    text = (repo / name / "config.pbtxt").read_text()
    for line in text.splitlines():
        assert CONFIG_LINE.match(line), line
    assert f'name: "{name}"\n' in text
    assert ('platform: "torch_aoti"\n' if name in AOTI_TWINS else 'platform: "torchscript"\n') in text
    if name.startswith("vit"):
        assert 'input { name: "pixel_values" data_type: TYPE_FP32 dims: [1, 8, 8] }' in text
        assert 'output { name: "logits" data_type: TYPE_FP32 dims: [10] }' in text
        assert "max_batch_size: 64\n" in text
        assert "dynamic_batching { max_queue_delay_us: 2000 max_queue_size: 256 }\n" in text
        if name in AOTI_TWINS:
            assert "test_accuracy" not in text and f'parameters {{ key: "twin" value: "{AOTI_TWINS[name]}" }}' in text
        else:
            acc = _manifest(repo)["models"][name]["test_accuracy"]
            assert f'parameters {{ key: "test_accuracy" value: "{acc:.4f}" }}' in text
            has_attention_param = 'parameters { key: "attention" value: "relu/L" }' in text
            assert has_attention_param == (VIT_VARIANTS[name][1] == "relu")
    else:
        assert 'input { name: "input_ids" data_type: TYPE_INT64 dims: [-1] pad_value: 0 }' in text
        assert ('output { name: "logits" data_type: TYPE_FP32 dims: [-1, 256] '
                'follows { input: "input_ids" input_dim: 0 output_dim: 0 } }') in text
        assert "ragged_batching: true" in text
        assert "max_batch_size: 16\n" in text
    norm = _manifest(repo)["models"][name]["norm"]
    assert f'parameters {{ key: "norm" value: "{norm}" }}' in text


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed")
@pytest.mark.parametrize("name", ALL_NAMES)
def test_config_parses_with_protoc(repo, name):
    """protoc --encode parses protobuf text format strictly (unknown fields are errors)."""
    proc = subprocess.run(
        ["protoc", f"--proto_path={PROTO_ROOT}", "--encode=dytserve.v1.ModelConfig",
         "dytserve/v1/model_config.proto"],
        input=(repo / name / "config.pbtxt").read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout


def test_second_run_is_a_no_op(repo):
    if _manifest(repo)["source_hash"] != er.source_hash():
        pytest.fail("stale repository: not re-running the exporter over it")
    before = {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, str(EXPORT_SCRIPT), "--out", str(repo)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "repository up to date"
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()} == before


def test_only_selects_models_and_brings_each_aoti_twins_module():
    assert er.selection("") == list(er.MODELS)
    assert er.selection("llama_dyt_aoti") == ["llama_dyt", "llama_dyt_aoti"]
    assert er.selection("vit_ln, vit_dyt_aoti") == ["vit_ln", "vit_dyt", "vit_dyt_aoti"]
    with pytest.raises(SystemExit, match="--only: unknown model"):
        er.selection("vit_nope")


def test_low_accuracy_fails_loudly_and_writes_nothing(tmp_path, monkeypatch):
    import dytserve_models.train as train

    def fake_train(norm, seed=0, cfg=None, verbose=False, attn_kind="softmax", qk_norm=False):
        acc = 0.5 if norm == "dyt" else (0.84 if attn_kind == "relu" else 0.9)
        return vit_digits(norm, attn_kind=attn_kind).eval(), acc

    monkeypatch.setattr(train, "train_digits_vit", fake_train)
    out = tmp_path / "repo"
    with pytest.raises(SystemExit) as exc:
        er.main(["--out", str(out)])
    assert str(exc.value.code) == (
        "export_repository: ERROR: vit_dyt test accuracy 0.5000, vit_relu_attn test accuracy 0.8400, "
        "vit_dyt_relu_attn test accuracy 0.5000 are below the required 0.85; repository not written")
    assert not (out / "manifest.json").exists()
    assert not any(p.is_file() for p in out.rglob("*"))


def test_config_generator_matches_brief_example():
    text = er.config_pbtxt("vit_dyt", {"test_accuracy": "0.9583", "norm": "dyt"})
    assert text == (
        'name: "vit_dyt"\n'
        'platform: "torchscript"\n'
        "max_batch_size: 64\n"
        'input { name: "pixel_values" data_type: TYPE_FP32 dims: [1, 8, 8] }\n'
        'output { name: "logits" data_type: TYPE_FP32 dims: [10] }\n'
        "dynamic_batching { max_queue_delay_us: 2000 max_queue_size: 256 }\n"
        'instance_group { count: 1 device: "cpu" }\n'
        'parameters { key: "norm" value: "dyt" }\n'
        'parameters { key: "test_accuracy" value: "0.9583" }\n')


EXPECTED_ARMS = [
    # experiment, arm, model, weight, shadow, shadow_fraction
    ("vit", "ln", "vit_ln", 50, False, None),
    ("vit", "dyt", "vit_dyt", 50, False, None),
    ("llama", "rms", "llama_rms", 100, False, None),
    ("llama", "dyt_shadow", "llama_dyt", None, True, 0.5),
]


def _parse_experiments(text):
    """A small reader for the ExperimentList text written by the exporter:
    [(experiment, arm, model, weight, shadow, shadow_fraction)]."""
    arms = []
    experiment = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line in ("experiments {", "}"):
            continue
        m = re.fullmatch(r'name: "(\w+)"', line)
        if m:
            experiment = m.group(1)
            continue
        m = re.fullmatch(r'arms \{ name: "(\w+)" model: "(\w+)"( weight: (\d+))?'
                         r'( shadow: (true|false))?( shadow_fraction: ([0-9.]+))? \}', line)
        assert m, f"unexpected line {raw!r}"
        arms.append((experiment, m.group(1), m.group(2), int(m.group(4)) if m.group(4) else None,
                     m.group(6) == "true", float(m.group(8)) if m.group(8) else None))
    return arms


def test_experiments_file(repo):
    text = (repo / "experiments.pbtxt").read_text()
    assert text == er.EXPERIMENTS_PBTXT
    arms = _parse_experiments(text)
    assert arms == EXPECTED_ARMS
    assert text.count("experiments {") == 2
    for _, _, model, _, _, _ in arms:
        assert (repo / model / "1" / "model.pt").is_file(), model
    # written atomically with the others, no temp files left behind
    assert not [p.name for p in repo.iterdir() if p.name.startswith(".")]
    assert _manifest(repo)["experiments_sha256"] == hashlib.sha256(text.encode()).hexdigest()


def _proto_defining(message):
    for path in sorted(PROTO_ROOT.rglob("*.proto")):
        if re.search(rf"^message {message}\b", path.read_text(), re.M):
            return path.relative_to(PROTO_ROOT).as_posix()
    return None


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed")
def test_experiments_parse_with_protoc(repo):
    proto = _proto_defining("ExperimentList")
    if proto is None:
        pytest.skip("no .proto under proto/ defines message ExperimentList yet")
    proc = subprocess.run(
        ["protoc", f"--proto_path={PROTO_ROOT}", "--encode=dytserve.v1.ExperimentList", proto],
        input=(repo / "experiments.pbtxt").read_bytes(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout


def test_up_to_date_needs_every_file(tmp_path):
    """The no-op check: the manifest's source hash and every expected file,
    experiments.pbtxt included."""
    for f in er.expected_files(tmp_path):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    models = {n: {} for n in er.MODELS}
    (tmp_path / "manifest.json").write_text(json.dumps({"source_hash": "abc", "device": "cpu", "models": models}))
    assert er.up_to_date(tmp_path, "abc")
    assert not er.up_to_date(tmp_path, "abd")
    # Another selection (--only) or device (--device) is not this export.
    assert not er.up_to_date(tmp_path, "abc", device="cuda")
    assert not er.up_to_date(tmp_path, "abc", names=er.selection("vit_dyt_aoti"))
    (tmp_path / "experiments.pbtxt").unlink()
    assert not er.up_to_date(tmp_path, "abc")
