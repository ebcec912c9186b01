"""Veil from Python: de-identify DICOM with the pipeline the ``veil`` command line runs.

The same application layer builds the pipeline here and in ``veil deid``, so with the same key
and policy the bytes are the same. Heavy work runs with the GIL released. A key is shown by
its fingerprint only and cannot be pickled.

    import veil
    key = veil.Key.load("site.key")
    result = veil.deidentify("ct.dcm", key=key)
    if result.released:
        open("out.dcm", "wb").write(result.data)
    else:
        print(result.reason, result.detail)
"""

import csv
import io
import json
import os
import tempfile
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from . import _veil
from .errors import HeldBack, UsageError, VeilError, VeilRuntimeError

Key = _veil.Key
Policy = _veil.Policy
Deidentifier = _veil.Deidentifier
__version__ = _veil.__version__

__all__ = [
    "Key",
    "Policy",
    "Deidentifier",
    "DeidResult",
    "RunResult",
    "VerifyResult",
    "deidentify",
    "deidentify_series",
    "deid_paths",
    "verify",
    "risk",
    "VeilError",
    "UsageError",
    "VeilRuntimeError",
    "HeldBack",
]

PathLike = Union[str, "os.PathLike[str]"]


class DeidResult:
    """What became of one instance: ``outcome`` is ``released``, ``suppressed`` or ``held_back``."""

    __slots__ = ("outcome", "data", "relative_path", "reason", "detail")

    def __init__(self, outcome: str, data: Optional[bytes], relative_path: Optional[str],
                 reason: Optional[str], detail: Optional[str]) -> None:
        self.outcome = outcome
        self.data = data
        self.relative_path = relative_path
        self.reason = reason
        self.detail = detail

    @property
    def released(self) -> bool:
        return self.outcome == "released"

    @property
    def exit_code(self) -> int:
        """0 when released, else 3 (as ``veil deid`` exits when something was held back)."""
        return 0 if self.released else 3

    def raise_for_outcome(self) -> "DeidResult":
        """Returns self when released, else raises :class:`HeldBack` with the reason."""
        if not self.released:
            raise HeldBack(self.reason or self.outcome, self.detail)
        return self

    def dataset(self) -> Any:
        """The released instance as a ``pydicom.Dataset`` (needs pydicom)."""
        self.raise_for_outcome()
        try:
            import pydicom
        except ImportError as e:
            raise UsageError("DeidResult.dataset() needs pydicom: pip install pydicom") from e
        return pydicom.dcmread(io.BytesIO(self.data))

    def __repr__(self) -> str:
        if self.released:
            return f"DeidResult(released, {len(self.data)} bytes, {self.relative_path!r})"
        return f"DeidResult({self.outcome}, reason={self.reason!r})"


def _key(key: Union["Key", PathLike, None]) -> "Key":
    if key is None:
        return Key.from_env()
    if isinstance(key, Key):
        return key
    if isinstance(key, (str, os.PathLike)):
        return Key.load(os.fspath(key))
    raise UsageError("key: give a veil.Key, a key file path, or None (VEIL_KEY_FILE / VEIL_KEY)")


_default_policy: Optional["Policy"] = None


def _policy(policy: Union["Policy", PathLike, None]) -> "Policy":
    global _default_policy
    if policy is None:
        # Built once: checking and hashing the rules costs more than de-identifying a small file.
        if _default_policy is None:
            _default_policy = Policy.default()
        return _default_policy
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return Policy.load(os.fspath(policy))
    raise UsageError("policy: give a veil.Policy, a policy file path, or None (the default)")


_engines: Dict[Tuple[str, str, str, Optional[str]], "Deidentifier"] = {}
_engines_lock = threading.Lock()


def _engine(key: "Key", policy: "Policy", patient_map: Optional[PathLike]) -> "Deidentifier":
    """One engine per key, policy and patient map, built on first use (building compiles the
    verifier's and the pixel stage's rules: too slow to repeat per file)."""
    pm = os.fspath(patient_map) if patient_map is not None else None
    cache_key = (key.fingerprint, policy.digest, policy.origin, pm)
    with _engines_lock:
        engine = _engines.get(cache_key)
        if engine is None:
            if len(_engines) >= 8:
                _engines.clear()
            engine = Deidentifier(key, policy, pm)
            _engines[cache_key] = engine
        return engine


def _bytes_of(data: Union[bytes, bytearray, memoryview, PathLike]) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError as e:
            raise UsageError(f"input {path}: no such file or directory") from e
        except OSError as e:
            raise VeilRuntimeError(f"cannot read {path}: {e.strerror}") from e
    raise UsageError("data: give the instance's bytes or a path to a DICOM file")


def deidentify(data: Union[bytes, bytearray, memoryview, PathLike], key: Union["Key", PathLike, None] = None,
               policy: Union["Policy", PathLike, None] = None,
               patient_map: Optional[PathLike] = None) -> DeidResult:
    """De-identifies one DICOM Part 10 instance (bytes or a path) with every stage ``veil deid``
    runs (classify, pixels, transform, encode, verify). The released bytes equal what
    ``veil deid`` writes for the file, at ``OUT/<relative_path>``.

    ``key``: a :class:`Key`, a key file path, or None for ``VEIL_KEY_FILE``/``VEIL_KEY``.
    ``policy``: a :class:`Policy`, a policy file path, or None for the default.
    An instance the defacing stage needs with its series (head CT/MR) is planned as a series
    of one here: give the whole series to :func:`deidentify_series`.
    """
    engine = _engine(_key(key), _policy(policy), patient_map)
    return DeidResult(*engine.deidentify(_bytes_of(data)))


def deidentify_series(members: Sequence[Union[bytes, PathLike]], key: Union["Key", PathLike, None] = None,
                      policy: Union["Policy", PathLike, None] = None,
                      patient_map: Optional[PathLike] = None) -> List[DeidResult]:
    """De-identifies the instances of one series together, as a run over the same files does
    (the defacing stage plans the whole volume). Results in member order."""
    engine = _engine(_key(key), _policy(policy), patient_map)
    outcomes = engine.deidentify_series([_bytes_of(m) for m in members])
    return [DeidResult(*o) for o in outcomes]


class RunResult(dict):
    """The run report ``veil deid --json`` prints, as a dict, with the CLI's ``exit_code``
    (0: every input released; 3: some held back, see ``report["held_back"]``)."""

    exit_code: int

    def __init__(self, report: Dict[str, Any], exit_code: int) -> None:
        super().__init__(report)
        self.exit_code = exit_code

    def raise_for_outcome(self) -> "RunResult":
        """Returns self when every input was released, else raises :class:`HeldBack`."""
        if self.exit_code != 0:
            held = self.get("quarantined", 0) + self.get("rejected", 0)
            raise HeldBack("held_back", f"{held} input(s) held back; the run report names them")
        return self


def deid_paths(inputs: Union[PathLike, Iterable[PathLike]], out: PathLike,
               key: Union["Key", PathLike, None] = None, policy: Union["Policy", PathLike, None] = None, *,
               quarantine: Optional[PathLike] = None, patient_map: Optional[PathLike] = None,
               threads: Optional[int] = None, fsync: bool = False,
               progress: Optional[Callable[[str, str, Optional[str], Optional[str]], Any]] = None) -> RunResult:
    """Runs the whole pipeline over files and directories into ``out``, exactly as ``veil deid``
    (same builder, journal, quarantine, resume, conflict handling): the output tree is the
    CLI's, byte for byte.

    ``progress(input, status, reason, output)`` is called once per input as it finishes (from
    worker threads, holding the GIL); an exception it raises is raised when the run ends.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [os.fspath(p) for p in inputs]
    report, code = _veil.deid_paths(
        paths, os.fspath(out), _key(key), _policy(policy),
        quarantine=os.fspath(quarantine) if quarantine is not None else None,
        patient_map=os.fspath(patient_map) if patient_map is not None else None,
        threads=threads, fsync=fsync, progress=progress)
    return RunResult(json.loads(report), code)


class VerifyResult(dict):
    """The report ``veil verify --json`` prints, with ``exit_code`` 0 (clean) or 4 (findings)."""

    exit_code: int

    def __init__(self, report: Dict[str, Any], exit_code: int) -> None:
        super().__init__(report)
        self.exit_code = exit_code

    @property
    def clean(self) -> bool:
        return self.exit_code == 0


def verify(outputs: Union[PathLike, Iterable[PathLike]], *, against: Union[PathLike, Iterable[PathLike], None] = None,
           policy: Union["Policy", PathLike, None] = None, ocr: bool = False) -> VerifyResult:
    """Checks de-identified files with the independent verifier, as ``veil verify``; with
    ``against`` (the originals) their identifiers, UIDs and dates are searched for too."""
    def listed(p: Union[PathLike, Iterable[PathLike], None]) -> List[str]:
        if p is None:
            return []
        if isinstance(p, (str, os.PathLike)):
            return [os.fspath(p)]
        return [os.fspath(x) for x in p]
    report, code = _veil.verify(listed(outputs), _policy(policy), policy is not None,
                                against=listed(against), ocr=ocr)
    return VerifyResult(json.loads(report), code)


def _write_csv(table: Any, path: str) -> None:
    """Writes a pandas DataFrame, an Arrow table or record batch, or a list of dicts as CSV."""
    if hasattr(table, "to_csv") and hasattr(table, "columns"):  # pandas
        table.to_csv(path, index=False)
        return
    if hasattr(table, "schema") and hasattr(table, "num_rows"):  # pyarrow
        import pyarrow.csv as pacsv
        pacsv.write_csv(table, path)
        return
    if isinstance(table, (list, tuple)):
        fields: List[str] = []
        for row in table:
            if not isinstance(row, dict):
                raise UsageError("risk: a list table must hold dicts (one per record)")
            fields.extend(k for k in row if k not in fields)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(table)
        return
    raise UsageError("risk: give a pandas DataFrame, a pyarrow Table, or a list of dicts")


def risk(table: Any, quasi: Optional[Sequence[str]] = None, *, sensitive: Optional[str] = None,
         subject: Optional[str] = None, population: Optional[int] = None, k: int = 5) -> Dict[str, Any]:
    """Measures re-identification risk of a table (pandas, Arrow, or a list of dicts): the
    report ``veil risk TABLE.csv --json`` prints (prosecutor/journalist/marketer risk, class
    sizes, records at risk under ``k``, l-diversity of ``sensitive``, Pitman uniqueness with
    ``population``). ``subject="none"`` counts rows instead of people."""
    if subject == "none":
        subject = ""
    with tempfile.TemporaryDirectory(prefix="veil-risk-") as tmp:
        path = os.path.join(tmp, "table.csv")
        _write_csv(table, path)
        report = _veil.risk_csv(path, list(quasi or []), sensitive=sensitive, subject=subject,
                                population=population, k=k)
    return json.loads(report)
