#!/usr/bin/env bash
# Benchmarks defacing-sized work on two real head series (built by scripts/faces/make-series.py
# --bench into bench/work/faces/ if missing):
#   bench-mr256   256 axial MR slices of 256x256 (pydeface's average head resampled to 1 mm)
#   bench-ct300   300 axial CT slices of 512x512 (InVesalius' Cranium resampled)
# and prints, for each, wall seconds and peak RSS (/usr/bin/time) of:
#   cp -r          copying the series (the floor: reading and writing the bytes)
#   pydeface mask  pydeface's mask application done with nibabel + numpy on the same volume as
#                  NIfTI (load volume, load the face mask already resampled to it, multiply, save
#                  .nii.gz). pydeface's registration step needs FSL (flirt), which no package
#                  registry here offers, so only its mask application is compared.
#   veil deid      VEIL_BIN deid --key K --out OUT --json SERIESDIR, with the written and
#                  quarantined counts from its report.
# Usage: scripts/bench-faces.sh [VEIL_BIN]   (default: target/release/veil, built if missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
veil=${1:-}
if [ -z "$veil" ]; then
  veil="$root/target/release/veil"
  [ -x "$veil" ] || cargo build --release -q -p veil
fi
if [ ! -x /usr/bin/time ]; then
  if [ "$(id -u)" = 0 ]; then s=""; else s="sudo"; fi
  $s apt-get update -qq && DEBIAN_FRONTEND=noninteractive $s apt-get install -y -qq time >/dev/null
fi
work="$root/bench/work/faces"
if [ ! -f "$work/bench-mr256/truth.json" ] || [ ! -f "$work/bench-ct300/truth.json" ]; then
  [ -f testdata/faces/src/Cranium.inv3 ] || bash scripts/faces/fetch.sh
  echo "bench-faces: building the bench series into $work" >&2
  python3 scripts/faces/make-series.py "$work" --cases bench-mr256,bench-ct300
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$veil" key new "$tmp/k" >/dev/null

# run NAME CMD...: prints "seconds rss_mib" of CMD (exit code ignored, stdout to $tmp/NAME.out)
run() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$tmp/$name.time" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || true
  awk '{printf "%8.2f %10.1f", $1, $2/1024}' "$tmp/$name.time" | tail -n1
}

cat >"$tmp/mask.py" <<'PY'
import sys
import nibabel as nib
import numpy as np
vol = nib.load(sys.argv[1])
mask = nib.load(sys.argv[2])
out = np.asanyarray(vol.dataobj) * np.asanyarray(mask.dataobj)
nib.save(nib.Nifti1Image(out, vol.affine, vol.header), sys.argv[3])
PY

echo "veil: $veil"
echo "pydeface: registration needs FSL (not in any registry here); only its mask application is timed."
for c in bench-mr256 bench-ct300; do
  s="$work/$c"
  n=$(ls "$s/dicom" | wc -l)
  mb=$(du -sm "$s/dicom" | cut -f1)
  sync
  echo
  echo "$c: $n files, $mb MB"
  printf '  %-34s %8s %10s  %s\n' step wall_s peak_MiB notes
  r=$(run cp cp -r "$s/dicom" "$tmp/copy-$c")
  printf '  %-34s %s\n' "cp -r" "$r"
  rm -rf "$tmp/copy-$c"
  r=$(run mask python3 "$tmp/mask.py" "$s/volume.nii.gz" "$s/facemask_keep.nii.gz" "$tmp/defaced-$c.nii.gz")
  printf '  %-34s %s  %s\n' "pydeface mask (nibabel+numpy)" "$r" "load, multiply, save .nii.gz"
  rm -f "$tmp/defaced-$c.nii.gz"
  r=$(run veil "$veil" deid --key "$tmp/k" --out "$tmp/out-$c" --json "$s/dicom")
  counts=$(python3 -c '
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    faces = "; ".join("%s, %.0f mL removed, brain %.0f mL, plan %.2f s" % (
        x["outcome"], x["measures"].get("removed_ml", 0), x["measures"].get("brain_ml", 0),
        x["measures"].get("seconds", 0)) for x in r.get("series", []))
    print("written %s, quarantined %s; %s" % (r.get("written"), r.get("quarantined"), faces))
except Exception as e:
    print("no JSON report (%s); stderr: %s" % (type(e).__name__, open(sys.argv[2]).read().strip()[:200]))
' "$tmp/veil.out" "$tmp/veil.err")
  printf '  %-34s %s  %s\n' "veil deid" "$r" "$counts"
  rm -rf "$tmp/out-$c" "$tmp/out-$c.quarantine"
done
