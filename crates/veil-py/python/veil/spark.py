"""Veil on Spark: one consistent de-identification over a cluster.

    from veil import spark as veil_spark
    outcomes = veil_spark.deidentify(spark.read.format("binaryFile").load("/data/dicom"),
                                     key_path="/secrets/site.key", out="/data/released")

How a job runs, and why:

1. **Pre-pass** (``mapInPandas`` over the paths, content column pruned): each file's header is
   read up to Pixel Data and its Series and SOP Instance UIDs become *keyed* references (HMAC
   under the key), so no UID travels in clear in the shuffle or the plan.
2. **Repartition by series reference**: a series-level stage (defacing) sees its whole series,
   and every version of one instance (same output path, which names the series) meets in one
   task, where they are settled as ``veil deid`` settles them: identical outputs are one
   ``written`` and the rest ``duplicate``; different outputs are all held back as
   ``conflicting_duplicate``.
3. **Write**: outputs go to a temporary file under ``OUT/.veil-spark-tmp`` and are renamed into
   place. A retried task finds its earlier outputs already in place (same bytes, left as they
   are), so a killed worker leaves neither duplicates nor half-written files; the temporary
   directory is removed when the job ends.

The key reaches executors as a file path (read there with the same 0600 check as the CLI): key
bytes are never in the plan, a closure or a log. Outcomes (one row per input) are written as
Parquet to the operator's side (``<OUT>.quarantine/.veil/spark-outcomes`` by default) and
returned as a DataFrame read from there.
"""

import os
import shutil
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import unquote, urlparse

from . import _veil
from .errors import UsageError

OUTCOME_SCHEMA = ("input string, status string, output string, sha256 string, "
                  "reason string, detail string, series_ref string, instance_ref string")
_REFS_SCHEMA = "path string, series_ref string, instance_ref string"
TMP_DIR = ".veil-spark-tmp"


def local_path(uri: str) -> str:
    """A ``binaryFile`` path (``file:/…`` URI, or a plain path) as a local file path. Other file
    systems must be mounted locally (e.g. ``/dbfs``)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return unquote(parsed.path) if parsed.scheme else uri
    raise UsageError(f"{uri}: only local or mounted paths are supported (scheme {parsed.scheme!r}); "
                     "mount the store and give its local path")


_engines: Dict[Tuple[str, Optional[str]], Any] = {}


def _engine(key_path: str, policy_path: Optional[str]) -> Any:
    """The executor's engine for this key file and policy, built once per Python worker."""
    cache_key = (key_path, policy_path)
    engine = _engines.get(cache_key)
    if engine is None:
        key = _veil.Key.load(key_path)
        policy = _veil.Policy.load(policy_path) if policy_path else _veil.Policy.default()
        engine = _veil.Deidentifier(key, policy, None)
        _engines[cache_key] = engine
    return engine


def _refs_task(key_path: str) -> Callable[[Iterator[Any]], Iterator[Any]]:
    def task(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        key = _veil.Key.load(key_path)
        for batch in batches:
            paths = [local_path(p) for p in batch["path"]]
            refs = _veil.instance_refs(key, paths)
            yield pd.DataFrame({
                "path": paths,
                "series_ref": [r[0] for r in refs],
                "instance_ref": [r[1] for r in refs],
            })
    return task


def _write_task(key_path: str, policy_path: Optional[str], out: str, fsync: bool,
                on_written: Optional[Callable[[List[tuple]], None]]) -> Callable[[Iterator[Any]], Iterator[Any]]:
    tmp = os.path.join(out, TMP_DIR)

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        # A partition's paths and references are small; a series may span Arrow batches.
        series: Dict[str, List[Tuple[str, str]]] = {}
        for batch in batches:
            for path, sref, iref in zip(batch["path"], batch["series_ref"], batch["instance_ref"]):
                series.setdefault(sref, []).append((path, iref))
        engine = _engine(key_path, policy_path) if series else None
        for sref in sorted(series):
            members = series[sref]
            instance_of = dict(members)
            rows = _veil.write_series(engine, [p for p, _ in members], out, tmp, fsync)
            if on_written is not None:
                on_written(rows)
            yield pd.DataFrame(
                [list(r) + [sref, instance_of.get(r[0], "")] for r in rows],
                columns=["input", "status", "output", "sha256", "reason", "detail",
                         "series_ref", "instance_ref"])
    return task


def _check_settings(key_path: str, policy_path: Optional[str]) -> None:
    """Fails on the driver, before any task, for a missing or loose key file or a bad policy."""
    _veil.Key.load(key_path)
    if policy_path:
        _veil.Policy.load(policy_path)


def deidentify(source: Any, key_path: Union[str, "os.PathLike[str]"],
               policy: Union[str, "os.PathLike[str]", None] = None,
               out: Union[str, "os.PathLike[str]", None] = None, *, spark: Any = None,
               partitions: Optional[int] = None, fsync: bool = False,
               outcomes_path: Optional[str] = None,
               on_written: Optional[Callable[[List[tuple]], None]] = None) -> Any:
    """De-identifies every file of ``source`` into ``out`` on Spark, as ``veil deid`` would.

    ``source``: a ``binaryFile`` DataFrame (only its ``path`` column is read), or a path or list
    of paths (read recursively as ``binaryFile``). ``key_path``: a key file every executor can
    read (mode 0600). ``policy``: a policy file path, or None for the default.
    ``partitions``: tasks of the write stage (default: the session's shuffle partitions).
    ``on_written(rows)``: called on the executor after each series' outputs are in place
    (progress reporting; the tests use it to kill a worker mid-task).

    Returns a DataFrame of outcomes, one row per input: input, status (``written``,
    ``duplicate``, ``suppressed``, ``held_back``), output (relative to ``out``), sha256,
    reason, detail, and the keyed series and instance references.
    """
    if out is None:
        raise UsageError("out: give the output root (a directory every executor can write)")
    key_path = os.path.abspath(os.fspath(key_path))
    policy_path = os.path.abspath(os.fspath(policy)) if policy is not None else None
    out = os.path.abspath(os.fspath(out))
    _check_settings(key_path, policy_path)
    if spark is None:
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.getOrCreate()
    paths_df = _paths_frame(spark, source)
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    # The file source makes a task per few dozen small files; the pre-pass reads only headers,
    # so it runs in as many tasks as the write stage (no shuffle: coalesce).
    refs = paths_df.coalesce(n).mapInPandas(_refs_task(key_path), _REFS_SCHEMA)
    by_series = refs.repartition(n, "series_ref").sortWithinPartitions("series_ref", "path")
    outcomes = by_series.mapInPandas(
        _write_task(key_path, policy_path, out, fsync, on_written), OUTCOME_SCHEMA)
    outcomes_path = outcomes_path or os.path.join(out + ".quarantine", ".veil", "spark-outcomes")
    outcomes.write.mode("overwrite").parquet(outcomes_path)
    shutil.rmtree(os.path.join(out, TMP_DIR), ignore_errors=True)
    return spark.read.parquet(outcomes_path)


def _paths_frame(spark: Any, source: Any) -> Any:
    if isinstance(source, (str, os.PathLike)):
        source = [os.fspath(source)]
    if isinstance(source, (list, tuple)):
        missing = [p for p in source if not os.path.exists(p)]
        if missing:
            raise UsageError(f"input {missing[0]}: no such file or directory")
        return (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                .load([os.path.abspath(p) for p in source]).select("path"))
    if "path" not in source.columns:
        raise UsageError("source: a binaryFile DataFrame (with a `path` column) or paths")
    return source.select("path")
