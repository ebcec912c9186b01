"""veil.spark in local mode with retries (local[2,4]: 2 cores, up to 4 attempts per task):
outputs equal `veil deid` byte for byte, and a Python worker killed mid-task is retried
without duplicates or half-written files.

Needs pyspark and Java (scripts/setup.d/python.sh installs both). Missing either fails the
suite; VEIL_SKIP_SPARK=1 leaves these tests out on purpose.
"""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest

from conftest import data_dir, run_cli, tree

if os.environ.get("VEIL_SKIP_SPARK") == "1":
    pytest.skip("VEIL_SKIP_SPARK=1: Spark tests left out on purpose", allow_module_level=True)

try:
    import pyspark  # noqa: F401
except ImportError:
    pytest.fail("pyspark is not installed: run scripts/setup.d/python.sh (or VEIL_SKIP_SPARK=1)",
                pytrace=False)
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.fail("no Java runtime: run scripts/setup.d/python.sh (or VEIL_SKIP_SPARK=1)",
                pytrace=False)

from veil import spark as veil_spark  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master("local[2,4]").appName("veil-tests")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_corpus(tmp_path_factory):
    """pydicom's test files (every transfer syntax, instances repeated across files) and
    deid-data's CT and burned-in text images."""
    root = tmp_path_factory.mktemp("spark-corpus")
    shutil.copytree(data_dir("pydicom"), root / "pydicom")
    shutil.copytree(data_dir("deid-data"), root / "deid-data")
    # A hidden file in a hidden directory, an instance of its own: `veil deid` reads it, so a
    # Spark job given the same paths must too (Spark's own file source would leave it out).
    import pydicom
    ds = pydicom.dcmread(root / "pydicom" / "CT_small.dcm")
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    (root / "_hidden").mkdir()
    ds.save_as(root / "_hidden" / ".ct.dcm")
    return root


@pytest.fixture(scope="module")
def cli_deid(tmp_path_factory, spark_corpus, key_path):
    out = tmp_path_factory.mktemp("spark-cli") / "out"
    proc = run_cli("deid", str(spark_corpus), "--key", str(key_path), "--out", str(out), "--json")
    files = tree(out)
    assert len(files) >= 60
    report = json.loads(proc.stdout)
    report["held_back_list"] = held_back_list(Path(str(out) + ".quarantine"), key_path)
    return files, report


def held_back_list(quarantine: Path, key_path: Path) -> set:
    """(input, reason) of every input `veil quarantine list` names as held back."""
    proc = run_cli("quarantine", "list", str(quarantine), "--key", str(key_path), "--json")
    return {(r["input"], r["reason"]) for r in json.loads(proc.stdout)}


def listed_inputs(corpus: Path):
    """What `veil deid` lists: every file, hidden ones (`.x`, `_x`) included."""
    return {str(p) for p in corpus.rglob("*") if p.is_file()}


def check_outcomes(outcomes, corpus, cli):
    cli_files, cli_report = cli
    rows = outcomes.collect()
    inputs = [r.input for r in rows]
    assert len(inputs) == len(set(inputs)), "an input has more than one outcome row"
    assert set(inputs) == listed_inputs(corpus)
    written = {r.output: r.sha256 for r in rows if r.status == "written"}
    # Whatever the CLI wrote from the inputs Spark saw: the same paths.
    assert set(written) == set(cli_files)
    import hashlib
    for rel, sha in written.items():
        assert hashlib.sha256(cli_files[rel]).hexdigest() == sha
    held = [r for r in rows if r.status == "held_back"]
    assert held and all(r.reason for r in held)
    # Versions of one instance settled as the CLI settles them, series-level holds included
    # (the corpus has both: pydicom's files repeat instances, deid-data's CT is a volume).
    reasons = Counter(r.reason for r in held)
    for reason in ("conflicting_duplicate", "face_unchecked", "pixel_stage"):
        assert reasons[reason] == cli_report["reasons"].get(reason, 0) > 0, reason
    assert sum(r.status == "duplicate" for r in rows) == cli_report["duplicates"] > 0
    return rows


def test_spark_equals_cli(spark, tmp_path, spark_corpus, cli_deid, key_path):
    out = tmp_path / "out"
    outcomes = veil_spark.deidentify(str(spark_corpus), key_path=key_path, out=out, spark=spark)
    rows = check_outcomes(outcomes, spark_corpus, cli_deid)
    # Held-back inputs are in the quarantine as `veil deid` leaves them: `veil quarantine list`
    # names the same inputs with the same reasons, each with its copy beside its reason.
    quarantine = Path(str(out) + ".quarantine")
    held = held_back_list(quarantine, key_path)
    assert held == cli_deid[1]["held_back_list"] and held
    held_rows = [r for r in rows if r.status == "held_back"]
    assert len(list(quarantine.glob("*.dcm"))) == len(list(quarantine.glob("*.json"))) == len(held_rows)
    hidden = [r for r in rows if r.input.endswith(os.path.join("_hidden", ".ct.dcm"))]
    assert [r.status for r in hidden] == ["written"]
    assert tree(out) == cli_deid[0]
    assert not (out / veil_spark.TMP_DIR).exists()
    # The shuffle carries keyed references only, never a UID in clear.
    refs = outcomes.select("series_ref").collect()
    assert all(not r.series_ref.startswith("1.") for r in refs)


def killer_once(marker: Path):
    """An `on_written` callback: the first attempt of the first task to write anything dies
    right after its first series is in place (`os._exit`, as a worker killed by the OOM killer
    would); `marker` records that it happened."""
    def kill(rows):
        from pyspark import TaskContext
        if TaskContext.get().attemptNumber() == 0 and any(r[1] == "written" for r in rows):
            try:
                fd = os.open(str(marker), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)
    return kill


def test_killed_worker_is_retried_without_duplicates(spark, tmp_path, spark_corpus, cli_deid,
                                                     key_path):
    out = tmp_path / "out"
    marker = tmp_path / "killed-once"
    kill_first_attempt = killer_once(marker)
    # A half-written temporary file, as a worker killed while writing leaves one.
    (out / veil_spark.TMP_DIR).mkdir(parents=True)
    (out / veil_spark.TMP_DIR / "veil-half").write_bytes(b"DICM" * 10)
    outcomes = veil_spark.deidentify([str(spark_corpus)], key_path=str(key_path), out=str(out),
                                     spark=spark, on_written=kill_first_attempt)
    assert marker.exists(), "no worker was killed: the test did not test retries"
    check_outcomes(outcomes, spark_corpus, cli_deid)
    assert tree(out) == cli_deid[0]
    assert not (out / veil_spark.TMP_DIR).exists()


def test_bad_key_fails_on_the_driver(spark, tmp_path, spark_corpus):
    import veil
    with pytest.raises(veil.UsageError):
        veil_spark.deidentify(str(spark_corpus), key_path=tmp_path / "none.key", out=tmp_path / "o",
                              spark=spark)


# ---------------------------------------------------------------------------------------------
# Consent-gated releases (veil.spark.release): the consent registry and ledger on PostgreSQL
# (VEIL_TEST_POSTGRES_URL from scripts/setup.d/postgres.sh; required when CI=true) reached by
# every task, and on SQLite for the crash tests.

RECIPIENT, PURPOSE = "lab", "internal-research"
REFUSING = "1CT1"  # CT_small.dcm's patient: refuses research (opt-out purpose)


def seeded_store(db: str, key_path: Path, cwd: Path) -> str:
    """A store with the recipient and one refusal, made with the CLI."""
    env = {"VEIL_DB": db}
    run_cli("recipient", "add", RECIPIENT, "--purpose", PURPOSE, "--key", str(key_path),
            check_codes=(0,), env=env, cwd=cwd)
    run_cli("consent", "set", REFUSING, "--purpose", PURPOSE, "--state", "refused",
            "--key", str(key_path), check_codes=(0,), env=env, cwd=cwd)
    return db


def postgres_db(tag: str) -> Optional[str]:
    admin = os.environ.get("VEIL_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs VEIL_TEST_POSTGRES_URL (scripts/setup.d/postgres.sh)")
        return None
    name = f"veil_spark_{tag}_{os.getpid()}"
    subprocess.run(["psql", admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name}",
                    "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return admin.rsplit("/", 1)[0] + "/" + name


def ledger_query(db: str, sql: str) -> list:
    """The first column of `sql`'s rows, read in another process: this process has the store
    open through the `veil` module's own SQLite, and a second SQLite library in one process
    breaks the first one's POSIX locks when it closes the file (SQLite's documented way to
    corrupt a database)."""
    if db.startswith("postgres"):
        cmd = ["psql", db, "-At", "-c", sql]
    else:
        cmd = [sys.executable, "-c",
               "import sqlite3, sys\n"
               "for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print(r[0])",
               db, sql]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def ledger_outputs(db: str, release_id: str) -> Counter:
    """Output path -> number of ledger entries of the release (retractions would show too)."""
    return Counter(ledger_query(db, f"SELECT output_path FROM ledger WHERE release_id = '{release_id}'"))


@pytest.fixture(scope="module")
def cli_release(tmp_path_factory, spark_corpus, key_path):
    """`veil release` over the corpus on SQLite: (output tree, operator's report)."""
    work = tmp_path_factory.mktemp("cli-release")
    db = seeded_store(str(work / "veil.db"), key_path, work)
    proc = run_cli("release", str(spark_corpus), "--recipient", RECIPIENT, "--purpose", PURPOSE,
                   "--out", str(work / "out"), "--key", str(key_path), "--json",
                   env={"VEIL_DB": db}, cwd=work)
    report = json.loads(proc.stdout)
    assert report["excluded_instances"] > 0 and report["recorded_in_ledger"] > 20
    return tree(work / "out"), report


def check_release(result, out: Path, db: str, cli, key_path: Path, cwd: Path):
    cli_files, cli_report = cli
    assert tree(out) == cli_files, "the Spark release differs from `veil release`"
    report = result.report
    assert report["excluded_instances"] == cli_report["excluded_instances"]
    assert report["excluded_patients"] == cli_report["excluded_patients"]
    rows = result.outcomes.collect()
    released = {r.output for r in rows if r.status == "written"}
    assert set(cli_files) == released
    # Every output is recorded exactly once, and nothing else is.
    entries = ledger_outputs(db, result.release_id)
    assert set(entries) == released and set(entries.values()) == {1}, entries.most_common(3)
    recorded = report["recorded_in_ledger"] + report["already_recorded_by_an_interrupted_run"]
    assert recorded == len(released)
    assert not list((out / ".veil").glob("ledger-intents.d/*.tsv")), "an intent log was left"
    assert (out / ".veil" / f"release-{result.release_id}.json").is_file()
    env = {"VEIL_DB": db}
    run_cli("ledger", "verify", "--key", str(key_path), check_codes=(0,), env=env, cwd=cwd)
    refusing = run_cli("disclosures", REFUSING, "--format", "json", "--key", str(key_path),
                       check_codes=(0,), env=env, cwd=cwd).stdout
    assert f'"{RECIPIENT}"' not in refusing
    excluded = [r for r in rows if r.status == "excluded"]
    # The refusing patient, and files without a Patient ID (nobody's consent covers them).
    assert excluded and all(r.reason.startswith("consent-") and r.patient_ref for r in excluded)
    assert {r.reason for r in excluded} == {"consent-refused", "consent-no-patient-id"}


def test_spark_release_equals_cli_release_on_postgres(spark, tmp_path, spark_corpus, key_path,
                                                      cli_release):
    db = postgres_db("release") or str(tmp_path / "veil.db")
    seeded_store(db, key_path, tmp_path)
    out = tmp_path / "out"
    result = veil_spark.release(str(spark_corpus), key_path, out, store=db, recipient=RECIPIENT,
                                purpose=PURPOSE, spark=spark, ledger_batch=16)
    check_release(result, out, db, cli_release, key_path, tmp_path)
    assert result.exit_code == 3  # held-back inputs, as `veil release` exits


def test_killed_release_worker_records_every_output_once(spark, tmp_path, spark_corpus, key_path,
                                                         cli_release):
    db = seeded_store(str(tmp_path / "veil.db"), key_path, tmp_path)
    out = tmp_path / "out"
    marker = tmp_path / "killed-once"
    # Outputs renamed into place, their intents logged, their entries not committed yet (the
    # batch is larger than the task) when the worker dies.
    kill_before_commit = killer_once(marker)
    result = veil_spark.release(str(spark_corpus), key_path, out, store=db, recipient=RECIPIENT,
                                purpose=PURPOSE, spark=spark, ledger_batch=100_000,
                                on_written=kill_before_commit)
    assert marker.exists(), "no worker was killed: the test did not test retries"
    check_release(result, out, db, cli_release, key_path, tmp_path)


def test_failed_release_job_leaves_no_output_without_its_entry(spark, tmp_path, spark_corpus,
                                                               key_path, cli_release):
    db = seeded_store(str(tmp_path / "veil.db"), key_path, tmp_path)
    out = tmp_path / "out"

    def always_fail_after_publishing(rows):
        # Every attempt of the tasks that write fails after publishing (before committing):
        # Spark gives up after four attempts and the job fails.
        if any(r[1] == "written" for r in rows):
            raise RuntimeError("injected failure after publishing")

    with pytest.raises(Exception, match="injected failure"):
        veil_spark.release(str(spark_corpus), key_path, out, store=db, recipient=RECIPIENT,
                           purpose=PURPOSE, spark=spark, ledger_batch=100_000,
                           on_written=always_fail_after_publishing)
    # What is left in OUT is exactly what the ledger records, and no intent is left to settle.
    left = {rel for rel in tree(out) if rel.endswith(".dcm")}
    # (Entries without an output are the consent statements the ledger also records.)
    recorded = set(ledger_query(db, "SELECT output_path FROM ledger WHERE output_path != ''"))
    assert left == recorded
    assert not list((out / ".veil").glob("ledger-intents.d/*.tsv"))
    # Run again without the fault: the tree is `veil release`'s, each output recorded once.
    result = veil_spark.release(str(spark_corpus), key_path, out, store=db, recipient=RECIPIENT,
                                purpose=PURPOSE, spark=spark)
    assert tree(out) == cli_release[0]
    entries = ledger_outputs(db, result.release_id)
    earlier = Counter(ledger_query(db, "SELECT output_path FROM ledger WHERE output_path != '' "
                                       f"AND release_id != '{result.release_id}'"))
    assert set(entries) | set(earlier) == set(cli_release[0])
    assert all(n == 1 for n in (entries + earlier).values())


def test_release_settings_are_checked_on_the_driver(spark, tmp_path, spark_corpus, key_path):
    import veil
    db = seeded_store(str(tmp_path / "veil.db"), key_path, tmp_path)
    kw = dict(spark=spark, recipient=RECIPIENT, purpose=PURPOSE)
    with pytest.raises(veil.UsageError, match="PGPASSWORD"):
        veil_spark.release(str(spark_corpus), key_path, tmp_path / "o1",
                           store="postgres://veil:secret@127.0.0.1/veil", **kw)
    with pytest.raises(veil.UsageError, match="no recipient `nobody`"):
        veil_spark.release(str(spark_corpus), key_path, tmp_path / "o2", store=db,
                           recipient="nobody", purpose=PURPOSE, spark=spark)
    with pytest.raises(veil.UsageError, match="commercial-ai-training"):
        veil_spark.release(str(spark_corpus), key_path, tmp_path / "o3", store=db,
                           recipient=RECIPIENT, purpose="commercial-ai-training", spark=spark)
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").rglob("*.dcm"))
