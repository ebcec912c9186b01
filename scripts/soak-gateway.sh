#!/usr/bin/env bash
# Outage soak of `veil gateway` (issue 20; a benchmark, not a test): one storescu sends without
# pause for MINUTES through the gateway to a real Orthanc, which is killed for OUTAGE seconds at
# a quarter of the run, and the gateway is SIGKILLed and restarted at half (bench/gateway_soak.py
# says what is measured). Fails unless every acknowledged instance reaches Orthanc once.
#
#   ./scripts/soak-gateway.sh [MINUTES] [OUTAGE_SECONDS]     (default 10 minutes, 120 s outage)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
minutes=${1:-10}
outage=${2:-120}
work="$root/bench/work"
mkdir -p "$work"
command -v storescu >/dev/null && command -v Orthanc >/dev/null \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dcmtk orthanc >/dev/null; }
python3 -c 'import pydicom' 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy
./scripts/fetch-testdata.sh >/dev/null
cargo build --release --quiet -p veil
python3 bench/gateway_soak.py "$root/target/release/veil" "$work" "$minutes" "$outage" \
  | tee "$work/results-gateway-soak.txt"
{
  echo "# Gateway outage soak"
  echo
  echo "Command: \`./scripts/soak-gateway.sh $minutes $outage\`; $(date -u +%Y-%m-%d)."
  echo
  sed -n '/^Soak:/,$p' "$work/results-gateway-soak.txt"
} > bench/results-gateway-soak.md
