#!/usr/bin/env bash
# Ledger benchmark (issue 6), all in one run, on SQLite:
#   1. ledger appends/s as `veil release` makes them (intent line, rename of a real file into
#      place, entries committed in batches), beside one transaction per entry (how releases
#      recorded before batching) and bulk batches that fill the ledger to TOTAL entries;
#      and the transparency log over it (Merkle tree build, inclusion and consistency proofs);
#   2. `veil ledger verify` of the TOTAL-entry chain (best of REPS): chain, checkpoints, the
#      Merkle root at every signed tree head, and the consent registry against the log;
#   3. `veil release` beside plain `veil deid` on the same corpus of real images (best of REPS
#      each, interleaved), and the release's overhead.
# Targets: >= 10,000 appends/s within releases; verify of 1M entries < 5 s; inclusion proof < 1 ms.
# Results go to bench/ledger/results.md. The machine is shared: the load average is printed.
#
#   ./scripts/bench-ledger.sh            (TOTAL=1000000 RELEASE_APPENDS=100000 N=2000 REPS=3)
set -euo pipefail
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
TOTAL=${TOTAL:-1000000}
RELEASE_APPENDS=${RELEASE_APPENDS:-100000}
SINGLE=${SINGLE:-5000}
N=${N:-2000}
REPS=${REPS:-3}
work="$root/bench/ledger/work"
mkdir -p "$work"

cargo build --release -q -p veil-store --example ledger_bench
cargo build --release -q -p veil
veil="$root/target/release/veil"

# Outputs of repetitions are moved aside and deleted at the end: on this machine's ext4 the inode
# allocator is slow right after thousands of files were deleted, which would bias later runs.
trash="$work/trash"
rm -rf "$trash" "$work/run"
mkdir -p "$trash" "$work/run"
discard() { for d in "$@"; do [ -e "$d" ] && mv "$d" "$trash/$(basename "$d").$RANDOM$RANDOM"; done; return 0; }
cleanup() { rm -rf "$trash" "$work/run"; }
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
secs() { # wall seconds of a command, its output discarded; exit codes 0 and 3 are success
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || rc=$?
  t1=$(date +%s.%N)
  if [ "$rc" != 0 ] && [ "$rc" != 3 ]; then echo "bench-ledger: failed (exit $rc): $*" >&2; exit 1; fi
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}
min() { python3 -c "import sys; print(min(sys.argv[1:], key=float))" "$@"; }

load_before=$(load)
echo "load before: $load_before"
# 1. Appends.
db="$work/run/ledger.db"
appends=$(target/release/examples/ledger_bench "$db" "$work/run" "$RELEASE_APPENDS" "$SINGLE" "$TOTAL")
echo "$appends"

# 2. Verify, through the binary (no key: signatures are checked against each checkpoint's key).
vt=(); vcpu=()
for _ in $(seq "$REPS"); do
  vt+=("$(secs "$veil" ledger verify --db "$db")")
  /usr/bin/time -f "%U %S" -o "$work/run/cpu" "$veil" ledger verify --db "$db" >/dev/null
  vcpu+=("$(python3 -c "import sys; u, s = open(sys.argv[1]).read().split()[-2:]; print(f'{float(u) + float(s):.2f}')" "$work/run/cpu")")
done
"$veil" ledger verify --db "$db" | head -1
verify_best=$(min "${vt[@]}")
verify_line="veil ledger verify, $TOTAL entries: best ${verify_best} s wall of ${vt[*]}; CPU (user+sys, 2 threads) ${vcpu[*]} s"
echo "$verify_line"

# 3. Release against deid, on the deid benchmark's corpus (made here if it is not there).
if [ -f "$root/bench/work/corpus.$N.complete" ]; then
  corpus="$root/bench/work/corpus"
else
  corpus="$work/corpus"
  if [ ! -f "$work/corpus.$N.complete" ]; then
    python3 -c 'import pydicom, numpy' 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy
    ./scripts/fetch-testdata.sh >/dev/null
    rm -rf "$corpus"
    python3 bench/make_corpus.py "$corpus" "$N" >/dev/null
    touch "$work/corpus.$N.complete"
  fi
fi
files=$(find "$corpus" -type f -name '*.dcm' | wc -l)
cat $(find "$corpus" -type f -name '*.dcm') >/dev/null   # warm the page cache
key="$work/run/bench.key"
"$veil" key new "$key" >/dev/null 2>&1
dt=(); rt=()
for i in $(seq "$REPS"); do
  out="$work/run/deid"; discard "$out" "$out.quarantine"; sync
  dt+=("$(secs "$veil" deid --key "$key" --out "$out" "$corpus")")
  out="$work/run/release"; rdb="$work/run/release-$i.db"; discard "$out" "$out.quarantine"
  "$veil" recipient add lab --purpose internal-research --db "$rdb" --key "$key" >/dev/null
  sync
  rt+=("$(secs "$veil" release --db "$rdb" --key "$key" --recipient lab --purpose internal-research --out "$out" "$corpus")")
done
written_d=$(find "$work/run/deid" -type f -not -path '*/.veil/*' | wc -l)
written_r=$(find "$work/run/release" -type f -not -path '*/.veil/*' | wc -l)
recorded=$("$veil" ledger verify --db "$work/run/release-$REPS.db" | sed -n 's/^ledger intact: \([0-9]*\) entries.*/\1/p')
deid_best=$(min "${dt[@]}"); rel_best=$(min "${rt[@]}")
table=$(python3 - "$files" "$deid_best" "$rel_best" "$written_d" "$written_r" "$recorded" "${dt[*]}" "${rt[*]}" <<'EOF'
import sys
files, d, r = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
wd, wr, rec, dall, rall = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8]
print("| command | seconds (best) | files/s | files written | ledger entries | all runs (s) |")
print("|---|---|---|---|---|---|")
print(f"| veil deid | {d:.2f} | {files/d:.0f} | {wd} | - | {dall} |")
print(f"| veil release | {r:.2f} | {files/r:.0f} | {wr} | {rec} | {rall} |")
print()
print(f"release overhead over deid: {100*(r-d)/d:+.0f}% ({r-d:+.2f} s for {files} files)")
EOF
)
echo "$table"
load_after=$(load)
echo "load after: $load_after"

{
  echo "# Ledger benchmark"
  echo
  echo "\`./scripts/bench-ledger.sh\` (TOTAL=$TOTAL RELEASE_APPENDS=$RELEASE_APPENDS SINGLE=$SINGLE N=$N REPS=$REPS), $(date -u +%Y-%m-%d), $(nproc) cores shared with other work (load average before: $load_before; after: $load_after), SQLite, release build."
  echo
  echo '```'
  echo "$appends"
  echo "$verify_line"
  echo '```'
  echo
  echo "Release against plain deid on $files files of the deid benchmark corpus (real CT/MR images, bench/make_corpus.py), best of $REPS, interleaved:"
  echo
  echo "$table"
  echo
  echo "Targets: >= 10,000 appends/s within releases; verify of 1M entries < 5 s; inclusion proof < 1 ms."
} > bench/ledger/results.md
