#!/usr/bin/env bash
# Load benchmark of `veil gateway` (issue 20; a benchmark, not a test): 2,000 x SCALE real-file
# instances sent by SENDERS parallel dcmtk storescu processes through the gateway to a real
# Orthanc, beside storescu straight to Orthanc and Orthanc's own /anonymize in the same run
# (bench/gateway_load.py says how each is timed). Prints a Markdown table; writes it to
# bench/results-gateway.md.
#
#   ./scripts/bench-gateway.sh [SCALE] [SENDERS]     (default 5 = 10,000 instances; 4 senders)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scale=${1:-5}
senders=${2:-4}
work="$root/bench/work"
mkdir -p "$work"
command -v storescu >/dev/null && command -v Orthanc >/dev/null \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dcmtk orthanc >/dev/null; }
./scripts/fetch-testdata.sh >/dev/null
python3 -c 'import pydicom' 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy
cargo build --release --quiet -p veil
python3 bench/gateway_load.py "$root/target/release/veil" "$work" "$scale" "$senders" \
  | tee "$work/results-gateway.txt"
{
  echo "# Gateway load"
  echo
  echo "Command: \`./scripts/bench-gateway.sh $scale $senders\`; $(date -u +%Y-%m-%d)."
  echo
  sed -n '/^[0-9,]* instances (/,$p' "$work/results-gateway.txt"
} > bench/results-gateway.md
