#!/usr/bin/env bash
# Benchmark of `veil risk` on the NCI Imaging Data Commons index (idc-index-data on PyPI, ~1.04M
# series as Parquet) beside pandas + pyarrow computing the same equivalence classes, plus the
# k = 5 and k = 11 searches; wall time and peak RSS from /usr/bin/time -v. Also writes the
# reports and plots used in docs/risk.md into docs/risk/. The data is downloaded into
# target/bench-data (not committed).
#
# Usage: scripts/bench-risk.sh [RUNS]     (default 3 runs of each measurement)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS="${1:-3}"
IDC_VERSION="${IDC_VERSION:-25.0.5}"
DATA="$ROOT/target/bench-data/idc-$IDC_VERSION"
PARQUET="$DATA/idc_index_data/idc_index.parquet"
OUT="$ROOT/target/bench-risk"
mkdir -p "$DATA" "$OUT"

if ! command -v /usr/bin/time >/dev/null; then
  apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
python3 -c 'import pandas, pyarrow' 2>/dev/null || pip install -q pandas pyarrow
if [ ! -f "$PARQUET" ]; then
  echo "fetching idc-index-data $IDC_VERSION ..."
  pip download -q --no-deps "idc-index-data==$IDC_VERSION" -d "$DATA/wheel"
  python3 -m zipfile -e "$DATA"/wheel/idc_index_data-*.whl "$DATA"
fi

cargo build --release -q -p veil --manifest-path "$ROOT/Cargo.toml"
VEIL="$ROOT/target/release/veil"

# Runs a command RUNS times; prints "best_wall_s max_rss_MB" (best of the runs, max RSS seen).
measure() {
  local best=999999 rss=0 i w r
  for i in $(seq "$RUNS"); do
    /usr/bin/time -v "$@" >"$OUT/last.out" 2>"$OUT/last.time"
    w=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(j=1;j<=n;j++) s=s*60+a[j]; print s}' "$OUT/last.time")
    r=$(awk -F': ' '/Maximum resident set size/{print int($2/1024)}' "$OUT/last.time")
    best=$(python3 -c "print(min($best, $w))")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  echo "$best $rss"
}

echo "== equivalence classes of the full IDC index ($RUNS runs each, best wall time) =="
read -r veil_s veil_mb < <(measure "$VEIL" risk "$PARQUET" --json)
cp "$OUT/last.out" "$OUT/veil.json"
read -r pd_s pd_mb < <(measure python3 "$ROOT/bench/risk/pandas_classes.py" "$PARQUET")
cp "$OUT/last.out" "$OUT/pandas.json"

python3 - "$OUT/veil.json" "$OUT/pandas.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["risk"]
p = json.load(open(sys.argv[2]))
same = all(v[a] == p[b] for a, b in [("records", "records"), ("classes", "classes"), ("k", "k"), ("unique_records", "unique_records")])
print(f"veil:   rows {v['input_rows']}, records {v['records']}, classes {v['classes']}, k {v['k']}, uniques {v['unique_records']}")
print(f"pandas: rows {p['rows']}, records {p['records']}, classes {p['classes']}, k {p['k']}, uniques {p['unique_records']} (read {p['read_s']} s, classes {p['classes_s']} s)")
print("same equivalence classes: " + ("yes" if same else "NO"))
if not same:
    sys.exit(1)
PY

echo "== k-target searches (max suppression 5%) =="
read -r k5_s k5_mb < <(measure "$VEIL" risk "$PARQUET" --target-k 5 --max-suppression 5% --json)
cp "$OUT/last.out" "$OUT/k5.json"
read -r k11_s k11_mb < <(measure "$VEIL" risk "$PARQUET" --target-k 11 --max-suppression 5% --json)
cp "$OUT/last.out" "$OUT/k11.json"

# The k = 11 search with distinct l = 2 on the collection (a disease cohort): once, it uses
# most of the 45 s branch-and-bound budget.
RUNS_SAVED=$RUNS; RUNS=1
read -r kl_s kl_mb < <(measure "$VEIL" risk "$PARQUET" --sensitive collection_id --target-k 11 --target-l 2 --max-suppression 5% --json)
cp "$OUT/last.out" "$OUT/k11-l2.json"
RUNS=$RUNS_SAVED

printf '\n| run | wall time (best of %s) | peak RSS |\n|---|---|---|\n' "$RUNS"
printf '| veil risk, full IDC index (measure: classes, risks, field importance, rare values) | %s s | %s MB |\n' "$veil_s" "$veil_mb"
printf '| pandas + pyarrow, same equivalence classes | %s s | %s MB |\n' "$pd_s" "$pd_mb"
printf '| veil risk --target-k 5 --max-suppression 5%% | %s s | %s MB |\n' "$k5_s" "$k5_mb"
printf '| veil risk --target-k 11 --max-suppression 5%% | %s s | %s MB |\n' "$k11_s" "$k11_mb"
printf '| veil risk --sensitive collection_id --target-k 11 --target-l 2 --max-suppression 5%% (1 run) | %s s | %s MB |\n' "$kl_s" "$kl_mb"

# Reports and plots for docs/risk.md.
DOCS="$ROOT/docs/risk"
mkdir -p "$DOCS"
for k in 5 11; do
  "$VEIL" risk "$PARQUET" --target-k "$k" --max-suppression 5% --population 330000000 --sensitive collection_id \
    --html "$OUT/idc-k$k.html" --write-policy "$OUT/idc-k$k.toml" >"$OUT/idc-k$k.txt"
done
"$VEIL" risk "$PARQUET" --population 330000000 --sensitive collection_id >"$OUT/idc-measure.txt"
"$VEIL" risk "$PARQUET" --sensitive collection_id --target-k 11 --target-l 2 --max-suppression 5% >"$OUT/idc-k11-l2.txt"
# The plots of docs/risk.md: the inline SVGs of the HTML reports, one file each.
python3 - "$OUT" "$DOCS" <<'PY'
import re, sys
out, docs = sys.argv[1], sys.argv[2]
names = ["class-sizes-measured", "class-sizes-after", "risk-by-record", "fields"]
for k in (5, 11):
    html = open(f"{out}/idc-k{k}.html", encoding="utf-8").read()
    for name, svg in zip(names, re.findall(r"<svg.*?</svg>", html, re.S)):
        if k == 11 and name in ("class-sizes-measured", "fields"):
            continue  # same as for k = 5
        stem = name if name in ("class-sizes-measured", "fields") else f"{name}-k{k}"
        open(f"{docs}/idc-{stem}.svg", "w", encoding="utf-8").write(svg + "\n")
PY
for f in idc-measure idc-k5 idc-k11 idc-k11-l2; do sed "s|$PARQUET|idc_index.parquet|" "$OUT/$f.txt" >"$DOCS/$f.txt"; done
echo "reports in $OUT (idc-measure.txt, idc-k5.*, idc-k11.*); plots and summaries in docs/risk/"
