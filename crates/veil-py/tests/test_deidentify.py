"""veil.deidentify and veil.deid_paths give the bytes `veil deid` writes, on real files."""

import hashlib
import os
import pickle
from pathlib import Path

import pytest

import veil
from conftest import run_cli, tree


def corpus_files(corpus: Path):
    return sorted(p for p in corpus.rglob("*") if p.is_file())


def series_of(files):
    """Files grouped by Series Instance UID (header only); unreadable files alone."""
    import pydicom
    groups = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            key = (str(ds.SeriesInstanceUID), str(getattr(ds, "Modality", "")))
        except Exception:
            key = (str(f), "")
        groups.setdefault(key, []).append(f)
    return groups


def test_deidentify_equals_cli_file_by_file(corpus, cli_run, key_path):
    out, report = cli_run
    key = veil.Key.load(str(key_path))
    released = {}  # relative path -> set of output digests
    results = {}
    alone_differs = []
    for (_, modality), members in series_of(corpus_files(corpus)).items():
        together = veil.deidentify_series(members, key=key)
        for f, r in zip(members, together):
            results[f] = r
            if r.released:
                released.setdefault(r.relative_path, set()).add(hashlib.sha256(r.data).hexdigest())
            alone = veil.deidentify(f, key=key)
            if (alone.outcome, alone.data, alone.reason) != (r.outcome, r.data, r.reason):
                alone_differs.append((f, modality, len(members)))
    # Only the defacing stage looks at a whole series (CT and MR volumes): elsewhere one file
    # alone gives what it gives in its series.
    assert all(m in ("CT", "MR") and n > 1 for _, m, n in alone_differs), alone_differs[:3]
    # Several inputs that are one instance with different outputs: the CLI releases none.
    conflicted = {rel for rel, digests in released.items() if len(digests) > 1}
    cli_tree = tree(out)
    expected = set(released) - conflicted
    assert set(cli_tree) == expected, (
        f"only the CLI wrote {sorted(set(cli_tree) - expected)[:5]}, "
        f"only veil.deidentify released {sorted(expected - set(cli_tree))[:5]}")
    compared = 0
    for f, r in results.items():
        if r.released and r.relative_path in cli_tree:
            assert r.data == cli_tree[r.relative_path], f"{f}: bytes differ from veil deid"
            compared += 1
    # Identical versions of one instance are compared once each.
    assert compared >= len(cli_tree) >= 80, f"only {compared} files compared"
    assert len(cli_tree) == report["written"]
    held = [r for r in results.values() if not r.released]
    assert held, "the corpus holds files the CLI holds back; so must veil.deidentify"
    assert all(r.reason for r in held)


def test_deidentify_bytes_and_path_agree(corpus, key_path):
    f = corpus / "pydicom" / "CT_small.dcm"
    by_path = veil.deidentify(f, key=str(key_path))
    by_bytes = veil.deidentify(f.read_bytes(), key=veil.Key.load(str(key_path)))
    assert by_path.released and by_path.data == by_bytes.data
    assert by_path.exit_code == 0


def test_dataset_is_deidentified(corpus, key_path):
    import pydicom
    f = corpus / "pydicom" / "CT_small.dcm"
    original = pydicom.dcmread(f)
    ds = veil.deidentify(f, key=str(key_path)).dataset()
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert str(ds.PatientName) != str(original.PatientName)
    assert ds.PatientIdentityRemoved == "YES"


def test_held_back_carries_reason_and_exit_code(key_path):
    r = veil.deidentify(b"this is not DICOM" * 20, key=str(key_path))
    assert r.outcome == "held_back" and r.reason == "not_dicom" and r.exit_code == 3
    with pytest.raises(veil.HeldBack) as e:
        r.raise_for_outcome()
    assert e.value.exit_code == 3 and e.value.reason == "not_dicom"


def test_usage_errors_name_what_to_fix(tmp_path, key_path, monkeypatch):
    monkeypatch.delenv("VEIL_KEY", raising=False)
    monkeypatch.delenv("VEIL_KEY_FILE", raising=False)
    with pytest.raises(veil.UsageError) as e:
        veil.deidentify(b"x", key=None)
    assert e.value.exit_code == 2 and "veil key new" in str(e.value)
    loose = tmp_path / "loose.key"
    loose.write_text(key_path.read_text())
    os.chmod(loose, 0o644)
    with pytest.raises(veil.UsageError) as e:
        veil.Key.load(str(loose))
    assert str(loose) in str(e.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense\n")
    with pytest.raises(veil.UsageError) as e:
        veil.Policy.load(str(bad))
    assert "bad.toml" in str(e.value)
    with pytest.raises(veil.UsageError):
        veil.deid_paths([tmp_path / "missing"], tmp_path / "out", key=str(key_path))


def test_key_from_env_and_never_shown(key_path, monkeypatch):
    monkeypatch.setenv("VEIL_KEY_FILE", str(key_path))
    key = veil.Key.from_env()
    secret = key_path.read_text().strip()
    assert key.fingerprint == veil.Key.load(str(key_path)).fingerprint
    assert secret not in repr(key) and secret not in repr(veil.Deidentifier(key, veil.Policy.default()))
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_deid_paths_tree_equals_cli(tmp_path, corpus, cli_run, key_path):
    out, cli_report = cli_run
    seen = []
    report = veil.deid_paths([corpus], tmp_path / "out", key=str(key_path),
                             progress=lambda i, status, reason, o: seen.append((i, status)))
    assert tree(tmp_path / "out") == tree(out)
    assert tree(tmp_path / "out.quarantine") == tree(out.parent / "out.quarantine")
    for field in ("inputs", "written", "duplicates", "quarantined", "rejected", "suppressed",
                  "reasons", "held_back", "actions", "key_fingerprint", "policy_sha256"):
        assert report[field] == cli_report[field], field
    assert report.exit_code == 3  # the corpus holds files that are not DICOM
    assert len(seen) == report["inputs"] and len({i for i, _ in seen}) == len(seen)
    with pytest.raises(veil.HeldBack):
        report.raise_for_outcome()
    # Inputs are never modified: the corpus is still the test data it was copied from.
    from conftest import data_dir
    for name in ("pydicom", "charsets", "deid-data"):
        assert tree(corpus / name) == tree(data_dir(name)), name


def test_progress_exception_is_raised_after_the_run(tmp_path, corpus, key_path):
    def fail(*_):
        raise KeyError("from the callback")
    with pytest.raises(KeyError):
        veil.deid_paths([corpus / "pydicom" / "CT_small.dcm"], tmp_path / "out",
                        key=str(key_path), progress=fail)
    assert (tmp_path / "out").exists()


def test_verify_equals_cli(cli_run, corpus):
    import json
    out, _ = cli_run
    clean = veil.verify(out)
    assert clean.exit_code == 0 and clean.clean and clean["files_scanned"] == len(tree(out)) >= 80
    checked = veil.verify(out, against=corpus)
    cli = json.loads(run_cli("verify", str(out), "--against", str(corpus), "--json",
                             check_codes=(0, 4)).stdout)
    assert checked["findings"] == cli["findings"]
    assert checked["files_scanned"] == cli["files_scanned"]
    originals = veil.verify(corpus / "pydicom" / "CT_small.dcm")
    assert originals.exit_code == 4 and originals["findings"]
