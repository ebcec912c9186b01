"""Shared fixtures: the `veil` binary the Python results are compared with, real DICOM test data
(scripts/fetch-testdata.sh), a key made by `veil key new`, and the CLI's outputs.

Nothing here skips: a missing binary, test data, pyspark or Java fails with what to do. The
Spark tests can be left out only on purpose, with VEIL_SKIP_SPARK=1.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def veil_bin() -> Path:
    """The CLI: $VEIL_BIN (the Rust test that runs this suite sets it), else a built one."""
    candidates = [os.environ.get("VEIL_BIN")]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    candidates += [str(target / "release" / "veil"), str(target / "debug" / "veil")]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.fail("no veil binary: build it (cargo build -p veil) or set VEIL_BIN=/path/to/veil")


def data_dir(name: str) -> Path:
    p = REPO / "testdata" / name
    if not p.is_dir():
        pytest.fail(f"{p} is missing: run ./scripts/fetch-testdata.sh")
    return p


def run_cli(*args: str, check_codes=(0, 3), env=None, cwd=None) -> subprocess.CompletedProcess:
    """The CLI with `args`; `env` adds to the environment."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([str(veil_bin()), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd)
    if proc.returncode not in check_codes:
        pytest.fail(f"veil {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def tree(root: Path) -> dict:
    """Every file under root (Veil's `.veil` run state left out) by relative path: bytes."""
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and ".veil" not in rel.parts and not rel.parts[0].startswith(".veil"):
            files[str(rel)] = p.read_bytes()
    return files


@pytest.fixture(scope="session")
def key_path(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("key") / "site.key"
    run_cli("key", "new", str(p), check_codes=(0,))
    return p


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """pydicom's test files, its charset files and deid-data, copied (inputs are never
    modified, and the copy proves it)."""
    root = tmp_path_factory.mktemp("corpus")
    for name in ("pydicom", "charsets", "deid-data"):
        shutil.copytree(data_dir(name), root / name, symlinks=False)
    return root


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory, corpus, key_path):
    """`veil deid` over the corpus: (output root, run report)."""
    out = tmp_path_factory.mktemp("cli") / "out"
    proc = run_cli("deid", str(corpus), "--key", str(key_path), "--out", str(out), "--json")
    return out, json.loads(proc.stdout)
