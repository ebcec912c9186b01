#!/usr/bin/env bash
# Measures Veil from Python (per-file cost of veil.deidentify and veil.deid_paths beside the
# CLI, dicognito, dicom-anonymizer and deid on the same files in the same run) and veil.spark's
# local throughput with 1 and 2 cores. Not part of CI. Needs the package installed
# (scripts/setup.d/python.sh) and a release CLI; installs the three comparison tools (pinned).
#   scripts/bench-python.sh [N_FILES] [--spark] [--release]
# (--release: `veil release` with 1 and 2 threads beside veil.spark.release in local[1]/local[2])
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
shift || true
pip install --quiet "dicognito==0.19.0" "deid==0.4.13" "dicom-anonymizer==2.1.0"
target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p veil
work=${BENCH_WORK:-/tmp/veil-bench-python}
mkdir -p "$work"
python3 scripts/bench-python.py --veil "$target/release/veil" --pydicom-files testdata/pydicom \
  --work "$work" -n "$n" --json "$work/results.json" "$@"
echo "results: $work/results.json"
