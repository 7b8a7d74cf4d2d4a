"""Shared fixtures: models/ on sys.path, 2 torch threads, and the exported repository.

The repository is exported once per session into a temp dir (about 2 minutes:
it trains both ViTs).  To skip that, export once and point DYTSERVE_REPO at it:

    ../.venv/bin/python export_repository.py --out /tmp/dytserve_repo
    DYTSERVE_REPO=/tmp/dytserve_repo ../.venv/bin/python -m pytest -q tests
"""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent.parent
if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))

torch.set_num_threads(2)

EXPORT_SCRIPT = MODELS_DIR / "export_repository.py"
PROTO_ROOT = MODELS_DIR.parent / "proto"


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> Path:
    env_repo = os.environ.get("DYTSERVE_REPO")
    if env_repo:
        path = Path(env_repo)
        if not (path / "manifest.json").is_file():
            pytest.fail(f"DYTSERVE_REPO={env_repo} has no manifest.json; export it first")
        return path
    path = tmp_path_factory.mktemp("repo")
    proc = subprocess.run([sys.executable, str(EXPORT_SCRIPT), "--out", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"export_repository.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return path
