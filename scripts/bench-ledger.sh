#!/usr/bin/env bash
# Ledger benchmark on SQLite: appends/s (one transaction per entry, as `veil release` commits each
# instance; and batched) and full-chain verify time of 1M entries. Targets: >= 10,000 appends/s,
# verify 1M < 5 s. Results go to bench/ledger/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SINGLE=${SINGLE:-20000}
TOTAL=${TOTAL:-1000000}
cargo build --release -q -p veil-store --example ledger_bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmd="target/release/examples/ledger_bench $dir/ledger.db $SINGLE $TOTAL"
out=$($cmd)
echo "$out"
{ echo "# Ledger benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, SQLite)"; echo; echo '```'; echo "\$ SINGLE=$SINGLE TOTAL=$TOTAL scripts/bench-ledger.sh"; echo "$out"; echo '```'; } > bench/ledger/results.md
