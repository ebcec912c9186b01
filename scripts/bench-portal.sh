#!/usr/bin/env bash
# Portal load benchmark (issue 21): SESSIONS concurrent patient sessions, each signed in with its
# own one-time code, read their pages (/me, /me/disclosures, /me/consent, /me/notices in turn)
# for SECONDS against a store of PATIENTS patients and PATIENTS*PER_PATIENT ledger entries;
# prints requests, errors and p50/p90/p99 latency, beside the CLI's `veil disclosures` time for
# one patient of the same store. Not part of CI.
#
#   ./scripts/bench-portal.sh    (PATIENTS=100000 PER_PATIENT=10 SESSIONS=200 SECONDS=60 PROFILE=release)
# PROFILE=dev uses the debug build (dependencies optimised, Veil's own crates not).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PATIENTS=${PATIENTS:-100000}
PER_PATIENT=${PER_PATIENT:-10}
SESSIONS=${SESSIONS:-200}
SECONDS_=${SECONDS:-60}
PROFILE=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}
if [ "$PROFILE" = release ]; then flag=--release; dir=release; else flag=; dir=debug; fi
cargo build $flag -q -p veil
cargo build $flag -q -p veil-portal --example portal_bench
veil="$target/$dir/veil"
bench="$target/$dir/examples/portal_bench"
# KEEP=1 keeps the store (and reuses it on the next run with the same sizes; its codes are
# single use, so fresh ones are issued).
work="$root/bench/portal/work/$PATIENTS-$PER_PATIENT"
server=
if [ "${KEEP:-0}" = 1 ]; then trap 'kill "$server" 2>/dev/null || true' EXIT
else trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT; fi

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -f "$work/made" ]; then
  "$bench" codes "$work" "$SESSIONS"
else
  rm -rf "$work"
  mkdir -p "$work"
  t0=$(date +%s)
  "$bench" make "$work" "$PATIENTS" "$PER_PATIENT" "$SESSIONS"
  echo "store made in $(( $(date +%s) - t0 )) s"
  touch "$work/made"
fi
export VEIL_DB="$work/veil.db" VEIL_KEY_FILE="$work/bench.key"
"$veil" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "portal at" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out")
echo "portal: $url"
"$bench" load "$url" "$work/codes.txt" "$SECONDS_"
kill "$server"; wait "$server" 2>/dev/null || true
# The same store through the CLI: one patient's disclosures (best of 3).
patient=$(head -1 "$work/patients.txt")
best=
for _ in 1 2 3; do
  t0=$(date +%s.%N)
  "$veil" disclosures "$patient" --format json >/dev/null
  t=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.3f}')")
  best=$(python3 -c "print(min(float('$t'), float('${best:-1e9}')))")
done
echo "CLI veil disclosures (one patient, whole process): best ${best} s of 3"
echo "store: $PATIENTS patients, $((PATIENTS * PER_PATIENT)) ledger entries; build $PROFILE; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
