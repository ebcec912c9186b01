#!/usr/bin/env python3
"""Per-file cost of Veil from Python beside the CLI and other Python de-identifiers, and Spark
local throughput, on the same files in the same run (scripts/bench-python.sh runs this).

Corpus: N instances made from pydicom's small CT and MR test files, each with its own patient,
study, series and instance UIDs (so that no two are one instance). Every tool reads each file
and writes its de-identified copy; times are wall-clock over the whole set, one process, one
thread unless stated.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def make_corpus(src: Path, dest: Path, n: int) -> list:
    import pydicom
    from pydicom.uid import generate_uid
    templates = [pydicom.dcmread(src / name) for name in ("CT_small.dcm", "MR_small.dcm")]
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        ds = templates[i % len(templates)].copy()
        patient = i // 20
        ds.PatientID = f"BENCH{patient:05d}"
        ds.PatientName = f"Bench^Patient{patient}"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"study{patient}"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"series{i // 10}"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"sop{i}"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = dest / f"{i:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def timed(label: str, n: int, fn, results: dict) -> None:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    results[label] = {"seconds": round(seconds, 3), "files": n,
                      "ms_per_file": round(1000 * seconds / n, 3),
                      "files_per_second": round(n / seconds, 1)}
    print(f"{label:<44} {seconds:8.2f} s  {1000 * seconds / n:8.3f} ms/file  {n / seconds:8.1f} files/s",
          flush=True)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(str(path) + ".quarantine", ignore_errors=True)
    return path


def bench_cli(veil: str, corpus: Path, key: Path, work: Path, threads: int) -> None:
    subprocess.run([veil, "deid", str(corpus), "--key", str(key), "--out", str(fresh(work / f"cli{threads}")),
                    "--threads", str(threads), "--json"], check=True, stdout=subprocess.DEVNULL)


def bench_veil_deidentify(files, key: Path, work: Path) -> None:
    import veil
    out = fresh(work / "py-deidentify")
    k = veil.Key.load(str(key))
    for f in files:
        r = veil.deidentify(f, key=k)
        if r.released:
            target = out / r.relative_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(r.data)


def bench_veil_in_memory(files, key: Path) -> None:
    """The engine alone: bytes already in memory, outputs not written."""
    import veil
    k = veil.Key.load(str(key))
    data = [f.read_bytes() for f in files]
    start = time.perf_counter()
    for d in data:
        veil.deidentify(d, key=k)
    return time.perf_counter() - start


def bench_dicognito(files, work: Path) -> None:
    import pydicom
    from dicognito.anonymizer import Anonymizer
    out = fresh(work / "dicognito")
    out.mkdir(parents=True)
    anonymizer = Anonymizer()
    for f in files:
        ds = pydicom.dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(out / f.name)


def bench_dicom_anonymizer(files, work: Path) -> None:
    from dicomanonymizer import anonymize
    out = fresh(work / "dicom-anonymizer")
    out.mkdir(parents=True)
    for f in files:
        anonymize(str(f), str(out / f.name), {}, True)


def bench_deid(files, work: Path) -> None:
    from deid.dicom import replace_identifiers
    out = fresh(work / "deid")
    out.mkdir(parents=True)
    # deid's default recipe (dicom): blank/remove the header fields it lists.
    replace_identifiers(dicom_files=[str(f) for f in files], save=True, output_folder=str(out),
                        overwrite=True)


def bench_spark(corpus: Path, key: Path, work: Path, cores: int, n: int, results: dict) -> None:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession
    from veil import spark as veil_spark
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("veil-bench")
             .config("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    # Warm: JVM and Python workers started once, as on a cluster.
    veil_spark.deidentify(str(corpus), key_path=str(key), out=str(fresh(work / "spark-warm")), spark=spark)
    timed(f"veil.spark local[{cores}]", n,
          lambda: veil_spark.deidentify(str(corpus), key_path=str(key),
                                        out=str(fresh(work / f"spark{cores}")), spark=spark), results)
    spark.stop()


def release_store(veil: str, key: Path, work: Path) -> Path:
    """A SQLite store with the recipient `lab` (research is opt-out: every patient admitted)."""
    db = work / "release.db"
    for p in work.glob("release.db*"):
        p.unlink()
    subprocess.run([veil, "recipient", "add", "lab", "--purpose", "internal-research",
                    "--key", str(key)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "VEIL_DB": str(db)})
    return db


def bench_release(veil: str, corpus: Path, key: Path, work: Path, n: int, results: dict) -> None:
    """`veil release` with 1 and 2 threads beside `veil.spark.release` in local[1] and local[2],
    every output recorded in one SQLite ledger."""
    from pyspark.sql import SparkSession
    from veil import spark as veil_spark
    db = release_store(veil, key, work)
    env = {**os.environ, "VEIL_DB": str(db)}
    for threads in (1, 2):
        timed(f"veil release (CLI, --threads {threads})", n, lambda: subprocess.run(
            [veil, "release", str(corpus), "--recipient", "lab", "--purpose", "internal-research",
             "--out", str(fresh(work / f"release-cli{threads}")), "--key", str(key),
             "--threads", str(threads), "--json"], check=True, stdout=subprocess.DEVNULL, env=env),
            results)
    for cores in (1, 2):
        spark = (SparkSession.builder.master(f"local[{cores}]").appName("veil-bench")
                 .config("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
                 .config("spark.ui.enabled", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        kw = dict(store=str(db), recipient="lab", purpose="internal-research", spark=spark)
        veil_spark.release(str(corpus), str(key), str(fresh(work / "release-warm")), **kw)
        timed(f"veil.spark.release local[{cores}]", n, lambda: veil_spark.release(
            str(corpus), str(key), str(fresh(work / f"release-spark{cores}")), **kw), results)
        spark.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--pydicom-files", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--spark", action="store_true")
    ap.add_argument("--release", action="store_true",
                    help="also time consent-gated releases: the CLI beside veil.spark.release")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = args.work
    corpus = work / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    files = make_corpus(args.pydicom_files, corpus, args.n)
    key = work / "bench.key"
    if key.exists():
        key.unlink()
    subprocess.run([args.veil, "key", "new", str(key)], check=True, stdout=subprocess.DEVNULL)
    n = len(files)
    print(f"{n} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB; cores: {os.cpu_count()}")
    results: dict = {}
    timed("veil deid (CLI, --threads 1)", n, lambda: bench_cli(args.veil, corpus, key, work, 1), results)
    timed("veil.deidentify (Python, one thread)", n, lambda: bench_veil_deidentify(files, key, work), results)
    seconds = bench_veil_in_memory(files, key)
    results["veil.deidentify in memory"] = {"seconds": round(seconds, 3), "files": n,
                                            "ms_per_file": round(1000 * seconds / n, 3)}
    print(f"{'veil.deidentify (bytes in memory, no write)':<44} {seconds:8.2f} s  {1000 * seconds / n:8.3f} ms/file")
    import veil
    timed("veil.deid_paths (Python, threads=1)", n,
          lambda: veil.deid_paths(corpus, fresh(work / "py-paths"), key=str(key), threads=1), results)
    timed("veil deid (CLI, --threads 2)", n, lambda: bench_cli(args.veil, corpus, key, work, 2), results)
    timed("dicognito 0.19.0 (in process)", n, lambda: bench_dicognito(files, work), results)
    timed("dicom-anonymizer 2.1.0 (in process)", n, lambda: bench_dicom_anonymizer(files, work), results)
    timed("deid 0.4.13 default recipe (in process)", n, lambda: bench_deid(files, work), results)
    if args.spark:
        for cores in (1, 2):
            bench_spark(corpus, key, work, cores, n, results)
    if args.release:
        bench_release(args.veil, corpus, key, work, n, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
