#!/usr/bin/env bash
# Longer fuzz run of the de-identification pipeline (issue 8): structured mutations of every real
# DICOM file in testdata/ (pydicom and deid-data), plus a 2 GB deflate bomb, each through the real
# pipeline with per-file time and peak memory measured. Rounds repeat the seeds with new random
# choices until the budget is spent. Prints cases, cases/s, the slowest case and the largest peak.
# Usage: scripts/fuzz.sh [SECONDS] [SEED]   (default 900 s, seed = the clock)
# Failing cases (input, output, quarantine) are kept under $VEIL_FUZZ_KEEP (default
# target/fuzz-failures) to become regression tests; exit 1 when any case broke the property.
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
