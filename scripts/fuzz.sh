#!/usr/bin/env bash
# Longer fuzz run of the de-identification pipeline (issue 8): structured mutations of every real
# DICOM file in testdata/ (pydicom and deid-data), plus a deflate bomb, each through the real
# pipeline with per-file time and memory measured. Usage: scripts/fuzz.sh [SECONDS] [SEED]
# Failing cases are kept under $VEIL_FUZZ_KEEP (default target/fuzz-failures) for regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-900}"
seed="${2:-$(date +%s)}"
[ -d testdata/pydicom ] || scripts/fetch-testdata.sh
cargo build --release -q -p veil-fuzz
export VEIL_FUZZ_KEEP="${VEIL_FUZZ_KEEP:-target/fuzz-failures}"
mkdir -p "$VEIL_FUZZ_KEEP"
echo "fuzz: seed $seed, budget ${seconds}s, failures kept in $VEIL_FUZZ_KEEP"
exec target/release/veil-fuzz --seconds "$seconds" --seed "$seed" --bomb-mb 2048 testdata/pydicom testdata/deid-data
