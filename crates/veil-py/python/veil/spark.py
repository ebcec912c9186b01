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
   place; held-back inputs are copied into ``<OUT>.quarantine`` with their reasons and listed in
   its held-back list, as ``veil deid`` holds them back (``veil quarantine list`` names them).
   A retried task finds its earlier outputs already in place (same bytes, left as they are), so
   a killed worker leaves neither duplicates nor half-written files; the temporary directory is
   removed when the job ends.

``release`` runs a consent-gated release the same way (``veil release`` on Spark): the driver
begins it (recipient and purpose checked, the output directory locked and settled), every task
opens the consent registry and ledger itself, admits each instance through the consent gate
and publishes each output with its ledger entry (intent, rename, batch commit; see
``veil_store::publish``), and the driver settles the directory and finishes the release once
the last task has ended.

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
                  "reason string, detail string, patient_ref string, ledger string, "
                  "series_ref string, instance_ref string")
_OUTCOME_COLUMNS = ["input", "status", "output", "sha256", "reason", "detail", "patient_ref",
                    "ledger", "series_ref", "instance_ref"]
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


def _series_of(batches: Iterator[Any]) -> Dict[str, List[Tuple[str, str]]]:
    """A partition's inputs by series reference (a series may span Arrow batches)."""
    series: Dict[str, List[Tuple[str, str]]] = {}
    for batch in batches:
        for path, sref, iref in zip(batch["path"], batch["series_ref"], batch["instance_ref"]):
            series.setdefault(sref, []).append((path, iref))
    return series


def _frame(rows: List[tuple], sref: str, instance_of: Dict[str, str]) -> Any:
    import pandas as pd
    return pd.DataFrame([list(r) + [sref, instance_of.get(r[0], "")] for r in rows],
                        columns=_OUTCOME_COLUMNS)


def _write_task(key_path: str, policy_path: Optional[str], out: str, fsync: bool,
                on_written: Optional[Callable[[List[tuple]], None]]) -> Callable[[Iterator[Any]], Iterator[Any]]:
    tmp = os.path.join(out, TMP_DIR)

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        series = _series_of(batches)
        engine = _engine(key_path, policy_path) if series else None
        for sref in sorted(series):
            members = series[sref]
            rows = _veil.write_series(engine, [p for p, _ in members], out, tmp, fsync,
                                      out + ".quarantine")
            if on_written is not None:
                on_written(rows)
            yield _frame(rows, sref, dict(members))
    return task


_workers: Dict[Tuple[Any, ...], Any] = {}


def _release_task(job: Dict[str, Any], on_written: Optional[Callable[[List[tuple]], None]]
                  ) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """One partition of a release: every series through the consent gate, every output
    published with its ledger entry; the task's last entries commit before it yields."""
    tmp = os.path.join(job["out"], TMP_DIR)

    def task(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd
        series = _series_of(batches)
        if not series:
            return
        cache_key = tuple(sorted(job.items()))
        worker = _workers.get(cache_key)
        if worker is None:
            # One release's worker per Python process: an earlier release's store connection
            # is let go rather than kept for the life of the worker.
            _workers.clear()
            key = _veil.Key.load(job["key_path"])
            policy = (_veil.Policy.load(job["policy_path"]) if job["policy_path"]
                      else _veil.Policy.default())
            worker = _veil.ReleaseWorker(job["db"], key, policy, job["out"], job["release_id"],
                                         job["recipient"], job["purpose"], job["policy_hash"],
                                         job["config"])
            _workers[cache_key] = worker
        order = sorted(series)
        rows = _veil.release_partition(worker, [[p for p, _ in series[s]] for s in order],
                                       job["out"], tmp, job["fsync"], job["batch"], on_written,
                                       job["out"] + ".quarantine")
        instance_of = {p: i for s in order for p, i in series[s]}
        series_of = {p: s for s in order for p, _ in series[s]}
        yield pd.DataFrame([list(r) + [series_of[r[0]], instance_of.get(r[0], "")] for r in rows],
                           columns=_OUTCOME_COLUMNS)
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
    of paths (listed on the driver as ``veil deid`` lists them, hidden files included).
    ``key_path``: a key file every executor can
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
    spark = spark or _session()
    by_series = _by_series(spark, source, key_path, out, partitions)
    outcomes = by_series.mapInPandas(
        _write_task(key_path, policy_path, out, fsync, on_written), OUTCOME_SCHEMA)
    return _collect(spark, outcomes, out, outcomes_path)


def _session() -> Any:
    from pyspark.sql import SparkSession
    return SparkSession.builder.getOrCreate()


def _by_series(spark: Any, source: Any, key_path: str, out: str,
               partitions: Optional[int]) -> Any:
    """The pre-pass and the shuffle: (path, series_ref, instance_ref) partitioned by series."""
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    paths_df = _paths_frame(spark, source, out, n)
    # The pre-pass reads only headers, so it runs in as many tasks as the write stage (no
    # shuffle: coalesce).
    refs = paths_df.coalesce(n).mapInPandas(_refs_task(key_path), _REFS_SCHEMA)
    return refs.repartition(n, "series_ref").sortWithinPartitions("series_ref", "path")


def _collect(spark: Any, outcomes: Any, out: str, outcomes_path: Optional[str]) -> Any:
    """Runs the job: outcomes written as Parquet on the operator's side, read back."""
    outcomes_path = outcomes_path or os.path.join(out + ".quarantine", ".veil", "spark-outcomes")
    outcomes.write.mode("overwrite").parquet(outcomes_path)
    shutil.rmtree(os.path.join(out, TMP_DIR), ignore_errors=True)
    return spark.read.parquet(outcomes_path)


class SparkRelease:
    """What ``release`` did: ``outcomes`` (DataFrame, one row per input), ``release_id``, and
    ``report``, the operator's report (also written under the quarantine)."""

    def __init__(self, outcomes: Any, release_id: str, report: Dict[str, Any]) -> None:
        self.outcomes = outcomes
        self.release_id = release_id
        self.report = report

    @property
    def exit_code(self) -> int:
        """0 when nothing was held back, 3 otherwise (as ``veil release``)."""
        return 3 if self.report.get("held_back", 0) else 0

    def __repr__(self) -> str:
        return (f"SparkRelease(release_id={self.release_id!r}, "
                f"recorded={self.report.get('recorded_in_ledger')}, "
                f"excluded={self.report.get('excluded_instances')}, "
                f"held_back={self.report.get('held_back')})")


def _store_location(store: Union[str, "os.PathLike[str]"]) -> str:
    """The store as every executor must name it: a PostgreSQL URL without a password (the
    location travels in the plan), or an absolute SQLite path."""
    store = os.fspath(store)
    parsed = urlparse(store)
    if parsed.scheme in ("postgres", "postgresql"):
        if parsed.password:
            raise UsageError("store: the URL carries a password, and it would travel in the Spark "
                             "plan; give it to every executor as PGPASSWORD or in ~/.pgpass instead")
        return store
    if parsed.scheme == "sqlite":
        return "sqlite:" + os.path.abspath(unquote(parsed.path))
    return os.path.abspath(store)


def release(source: Any, key_path: Union[str, "os.PathLike[str]"],
            out: Union[str, "os.PathLike[str]"], *, store: Union[str, "os.PathLike[str]"],
            recipient: str, purpose: str, policy: Union[str, "os.PathLike[str]", None] = None,
            config: Union[str, "os.PathLike[str]", None] = None, spark: Any = None,
            partitions: Optional[int] = None, fsync: bool = False, ledger_batch: int = 256,
            outcomes_path: Optional[str] = None,
            on_written: Optional[Callable[[List[tuple]], None]] = None) -> SparkRelease:
    """Releases every file of ``source`` to ``recipient`` for ``purpose`` on Spark, as
    ``veil release`` would: only patients whose consent allows the purpose, each output under
    the recipient's own pseudonyms and recorded in the disclosure ledger.

    ``store``: the consent registry and ledger every executor can reach (a
    ``postgres://user@host/db`` URL, its password in PGPASSWORD or ~/.pgpass on the executors;
    or a SQLite file on a shared mount, for local mode). ``key_path``: the master key file (the
    recipient's sub-key is derived from it on each executor). ``config``: institution settings
    (``--config``; default: ``$VEIL_CONFIG``, else built-in). ``ledger_batch``: outputs per
    ledger transaction in each task.

    The driver holds ``out``'s release lock for the whole job, so no other release or reconcile
    runs there meanwhile. A task killed after renaming outputs but before committing their
    entries is retried: its retry finds them in place and records them (never twice); whatever
    no attempt recorded is removed when the driver settles ``out`` at the end (or, should the
    driver die too, by the next release into ``out`` or ``veil ledger reconcile``).

    Returns a :class:`SparkRelease`; outcome statuses are those of :func:`deidentify` plus
    ``excluded`` (with the consent reason and the patient's keyed reference), and ``ledger`` is
    ``recorded`` or ``already_recorded`` for each written output.
    """
    import json
    key_path = os.path.abspath(os.fspath(key_path))
    policy_path = os.path.abspath(os.fspath(policy)) if policy is not None else None
    config_path = os.path.abspath(os.fspath(config)) if config is not None else None
    out = os.path.abspath(os.fspath(out))
    _check_settings(key_path, policy_path)
    db = _store_location(store)
    key = _veil.Key.load(key_path)
    policy_obj = _veil.Policy.load(policy_path) if policy_path else _veil.Policy.default()
    job = _veil.ReleaseJob.begin(db, key, recipient, purpose, policy_obj, out,
                                 out + ".quarantine", config_path)
    spec = {"db": db, "key_path": key_path, "policy_path": policy_path, "config": config_path,
            "out": out, "release_id": job.release_id, "recipient": job.recipient,
            "purpose": job.purpose, "policy_hash": job.policy_hash, "fsync": fsync,
            "batch": max(1, int(ledger_batch))}
    spark = spark or _session()
    sc = spark.sparkContext
    group = f"veil-release-{job.release_id}"
    sc.setJobGroup(group, f"veil release {job.release_id}", interruptOnCancel=True)
    try:
        by_series = _by_series(spark, source, key_path, out, partitions)
        outcomes = _collect(spark, by_series.mapInPandas(_release_task(spec, on_written),
                                                         OUTCOME_SCHEMA), out, outcomes_path)
    except BaseException:
        # Nothing published without its entry stays: the job's remaining tasks are cancelled,
        # settling waits for any still publishing and closes the release to late ones, and the
        # directory's lock is let go.
        sc.cancelJobGroup(group)
        try:
            job.settle()
        finally:
            job.close()
        raise
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
        sc.setLocalProperty("spark.job.interruptOnCancel", None)
    report = json.loads(job.finish(*_tally(outcomes)))
    return SparkRelease(outcomes, job.release_id, report)


def _tally(outcomes: Any) -> Tuple[int, int, int, int, List[Tuple[str, str, int]]]:
    """(recorded, already recorded, excluded, held back, excluded patients) from the outcomes."""
    from pyspark.sql import functions as F
    counts = outcomes.agg(
        F.sum((F.col("ledger") == "recorded").cast("long")).alias("recorded"),
        F.sum((F.col("ledger") == "already_recorded").cast("long")).alias("already"),
        F.sum((F.col("status") == "excluded").cast("long")).alias("excluded"),
        F.sum((F.col("status") == "held_back").cast("long")).alias("held"),
    ).collect()[0]
    patients = (outcomes.where(F.col("status") == "excluded")
                .groupBy("patient_ref", "reason").count().collect())
    return (int(counts.recorded or 0), int(counts.already or 0), int(counts.excluded or 0),
            int(counts.held or 0),
            [(p.patient_ref or "", p.reason or "", int(p["count"])) for p in patients])


def _paths_frame(spark: Any, source: Any, out: str, n: int) -> Any:
    """The inputs as a one-column (``path``) DataFrame. Paths are listed on the driver as
    ``veil deid`` lists them (hidden files included, the output tree and its quarantine left
    out); at archive scale, pass a DataFrame with a ``path`` column read from a manifest."""
    if isinstance(source, (str, os.PathLike)):
        source = [os.fspath(source)]
    if isinstance(source, (list, tuple)):
        missing = [p for p in source if not os.path.exists(p)]
        if missing:
            raise UsageError(f"input {missing[0]}: no such file or directory")
        files = _veil.walk_inputs([os.path.abspath(p) for p in source],
                                  [out, out + ".quarantine"])
        rows = [(os.fspath(f),) for f in files]
        return spark.createDataFrame(spark.sparkContext.parallelize(rows, max(1, n)), "path string")
    if "path" not in source.columns:
        raise UsageError("source: a binaryFile DataFrame (with a `path` column) or paths")
    return source.select("path")
