#!/usr/bin/env bash
# Runs two veil binaries with one key and the default policy over one corpus of real files and
# says whether their outputs and quarantines are byte-identical: the check that a refactoring
# changed no behaviour. The corpus: pydicom's test files, deid-data's ultrasounds (stills and
# the greyscale cine), CTs and the demo's synthetic export (fetched by scripts/fetch-testdata.sh).
# Usage: scripts/compare-binaries.sh OLD_VEIL NEW_VEIL [WORK_DIR]
# Exit 0 when identical, 1 when not (diff printed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
old=$1; new=$2; work=${3:-$(mktemp -d)}
[ -d "$root/testdata/pydicom" ] || "$root/scripts/fetch-testdata.sh"
rm -rf "$work"; mkdir -p "$work/in"
cp "$root"/testdata/pydicom/*.dcm "$work/in/"
cp "$root"/testdata/deid-data/ultrasounds/*.dcm "$work/in/"
cp -r "$root/testdata/deid-data/humans" "$work/in/"
unzip -q -o "$root/testdata/deid-data/ultrasounds/GREYSCALE_CINE.zip" -d "$work/in/"
"$new" demo --dir "$work/demo" >/dev/null 2>&1 || true
cp -r "$work/demo/input" "$work/in/demo"
printf '%064x\n' 7 > "$work/k"; chmod 600 "$work/k"
for side in old new; do
  bin=$old; [ "$side" = new ] && bin=$new
  start=$(date +%s%N)
  "$bin" deid --key "$work/k" --out "$work/$side" "$work/in" > "$work/$side.txt" 2>&1 || true
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$side: $(find "$work/$side" -name '*.dcm' | wc -l) outputs in ${ms} ms"
done
status=0
diff -r --exclude=.veil "$work/old" "$work/new" && echo "output trees identical" || status=1
diff -r --exclude=.veil "$work/old.quarantine" "$work/new.quarantine" && echo "quarantines identical" || status=1
exit $status
