#!/usr/bin/env bash
# Free-text benchmark (issue 16): utility, leaks and speed of the allowlist cleaner, beside an
# earlier veil binary when one is given, all in one run.
#
#   scripts/bench-free-text.sh [BASE_VEIL] [N_FILES]
#
# 1. Utility: every Study and Series Description that >= 20 distinct patients use in the IDC
#    collections held out of the vocabulary build (reference/idc-holdout-descriptions.tsv, made
#    by scripts/gen-vocabulary.py) goes into a DICOM file (pydicom's CT_small.dcm); the share of
#    values that come out unchanged is reported.
# 2. Leaks: the adversarial free-text corpus (scripts/adversarial-free-text.py: 93 cases, 18
#    kinds, real images, four transfer syntaxes and six character sets): planted identifiers that
#    survive, and injected leaks `veil verify` misses without the sources.
# 3. Speed: `veil deid` wall time (median of 3) on two corpus shapes made of real images with
#    free text in their descriptions: CT 512x512 (~512 KB) and MR 64x64 (~9 KB), N_FILES each
#    (default 500).
# Prints a markdown table; BASE_VEIL adds a "before" column (e.g. a build of an earlier commit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${1:-}
n=${2:-500}
work="$root/target/bench-free-text"
rm -rf "$work"; mkdir -p "$work"
"$root/scripts/fetch-testdata.sh" >/dev/null
python3 -c 'import pydicom, numpy' 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy
cargo build --release --quiet -p veil --manifest-path "$root/Cargo.toml"
new="$root/target/release/veil"
printf '%064x\n' 7 >"$work/k"; chmod 600 "$work/k"

python3 - "$root" "$work" "$n" <<'PY'
import os, sys
import numpy as np
import pydicom
from pydicom.uid import generate_uid
root, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
td = os.path.join(root, "testdata", "pydicom")
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(root, "reference", "idc-holdout-descriptions.tsv")) if not l.startswith("#")]
os.makedirs(f"{work}/utility", exist_ok=True)
for i, (field, _, value) in enumerate(rows):
    d = pydicom.dcmread(os.path.join(td, "CT_small.dcm"))
    d.StudyDescription = ""; d.SeriesDescription = ""
    setattr(d, field, value)
    d.InstanceNumber = i + 1
    d.SOPInstanceUID = generate_uid(entropy_srcs=["utility", str(i)])
    d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
    d.save_as(f"{work}/utility/v{i:04d}.dcm")
texts = ["CT CHEST W/O CONTRAST follow up", "AX T1 POST GAD 5mm", "seen by Dr Quixley on 13.02.2019, call 0941 155769",
         "Abdomen routine 5.0 B30f", "patient reports pain since the fall, mother Rosalind called"]
for shape, src, k in (("ct512", "CT_small.dcm", 4), ("mr64", "MR_small.dcm", 1)):
    os.makedirs(f"{work}/{shape}", exist_ok=True)
    d0 = pydicom.dcmread(os.path.join(td, src))
    arr = d0.pixel_array
    if k > 1:
        d0.PixelData = np.kron(arr, np.ones((k, k), dtype=arr.dtype)).tobytes()
        d0.Rows, d0.Columns = arr.shape[0] * k, arr.shape[1] * k
    for i in range(n):
        d0.SOPInstanceUID = generate_uid(entropy_srcs=[shape, str(i)])
        d0.file_meta.MediaStorageSOPInstanceUID = d0.SOPInstanceUID
        d0.PatientID = f"P{i % 40:05d}"; d0.PatientName = f"Doe^Patient{i % 40}"
        d0.StudyDescription = texts[i % 5]; d0.ImageComments = texts[(i + 2) % 5]
        d0.InstanceNumber = i + 1
        d0.save_as(f"{work}/{shape}/f{i:05d}.dcm")
PY
python3 "$root/scripts/adversarial-free-text.py" make "$root/testdata/pydicom" "$root/testdata/charsets" "$work/adv" >/dev/null

utility() {  # VEIL -> share unchanged
  rm -rf "$work/u-out" "$work/u-out.quarantine"
  "$1" deid --key "$work/k" --out "$work/u-out" "$work/utility" >/dev/null 2>&1 || true
  python3 - "$root" "$work/u-out" <<'PY'
import glob, sys, pydicom
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1] + "/reference/idc-holdout-descriptions.tsv") if not l.startswith("#")]
got = {}
for f in glob.glob(sys.argv[2] + "/**/*.dcm", recursive=True):
    d = pydicom.dcmread(f); i = int(d.InstanceNumber) - 1
    got[i] = str(d.get(rows[i][0], ""))
same = sum(1 for i, (f, _, v) in enumerate(rows) if got.get(i) == v)
print(f"{same}/{len(rows)} ({100 * same / len(rows):.1f} %)")
PY
}

leaks() {  # VEIL -> "survivors cases / verifier misses"
  rm -rf "$work/a-out" "$work/a-out.quarantine" "$work/a-inj"
  "$1" deid --key "$work/k" --out "$work/a-out" "$work/adv/in" >/dev/null 2>&1 || true
  python3 "$root/scripts/adversarial-free-text.py" check "$work/adv" "$work/a-out" >"$work/check.json"
  python3 "$root/scripts/adversarial-free-text.py" inject "$work/adv" "$work/a-out" "$work/a-inj" >/dev/null
  "$1" verify --json "$work/a-inj" >"$work/verify.json" 2>/dev/null || true
  python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
c = json.load(open(f"{w}/check.json")); v = json.load(open(f"{w}/verify.json"))
leaking = len({s["file"] for s in c["survivors"]})
found = {f["file"].rsplit("/", 1)[-1] for f in v["findings"]}
injected = v["files_scanned"]
print(f"{leaking} of {c['cases']} cases leak ({c['released']} released); verifier misses {injected - len(found)} of {injected}")
PY
}

seconds() {  # VEIL DIR -> median wall seconds of 3 runs
  for r in 1 2 3; do
    rm -rf "$work/s-out" "$work/s-out.quarantine"
    s=$(date +%s%N); "$1" deid --key "$work/k" --out "$work/s-out" "$2" >/dev/null 2>&1 || true
    echo $(( ($(date +%s%N) - s) / 1000000 ))
  done | sort -n | sed -n 2p | awk '{printf "%.2f", $1/1000}'
}

cat "$work"/ct512/*.dcm "$work"/mr64/*.dcm >/dev/null   # warm the page cache
echo "| measure | veil now |${base:+ before |}"
echo "|---|---|${base:+---|}"
echo "| held-out IDC descriptions unchanged | $(utility "$new") |${base:+ $(utility "$base") |}"
echo "| adversarial free-text corpus | $(leaks "$new") |${base:+ $(leaks "$base") |}"
for shape in ct512 mr64; do
  echo "| deid $n $shape files, s (median of 3) | $(seconds "$new" "$work/$shape") |${base:+ $(seconds "$base" "$work/$shape") |}"
done
