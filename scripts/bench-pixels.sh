#!/usr/bin/env bash
# Benchmarks the pixel stage (issue 5) on a mixed corpus made of real files: the deid-data
# images (ultrasound stills and cines with burned-in text, CT, secondary captures) and
# pydicom's test images (every transfer syntax). Prints, side by side:
#   scan-only   decode + text-likeness pre-filter + templates, no OCR      (veil pixels scan --no-ocr)
#   OCR         the same plus Tesseract on the frames the pre-filter picks and the text lines
#               found in their pixels (veil pixels scan)
#   OCR only    the same without the pixel text lines (--no-pixel-lines), for comparison
#   redaction   veil deid on the flagged files: detect, fill, re-encode, write
# as frames/s, and the share of the corpus (files, frames) that needed OCR.
# Usage: scripts/bench-pixels.sh [VEIL_BINARY]   (default: builds target/release/veil)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
veil=${1:-}
if [ -z "$veil" ]; then
  cargo build --release -q -p veil
  veil="$root/target/release/veil"
fi
[ -d testdata/deid-data ] || scripts/fetch-testdata.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus="$work/corpus"
mkdir -p "$corpus/deid" "$corpus/pydicom" "$corpus/cines"
cp -r testdata/deid-data/. "$corpus/deid/"
find "$corpus/deid" -name '*.zip' -delete
for z in testdata/deid-data/ultrasounds/*.zip; do unzip -q -o "$z" -d "$corpus/cines"; done
cp testdata/pydicom/*.dcm "$corpus/pydicom/"

summary() { python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(json.dumps(s))'; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

t0=$(date +%s.%N)
scan_only=$("$veil" pixels scan --json --no-ocr "$corpus" | summary) || true
t1=$(date +%s.%N)
ocr=$("$veil" pixels scan --json "$corpus" | summary) || true
t2=$(date +%s.%N)
"$veil" pixels scan --json --no-pixel-lines "$corpus" >/dev/null || true
t2b=$(date +%s.%N)
"$veil" key new "$work/k" >/dev/null
"$veil" deid --key "$work/k" --out "$work/out" --json "$corpus" > "$work/deid.json" 2>/dev/null || true
t3=$(date +%s.%N)
frames_released=$(python3 - "$work/out" <<'PY'
import sys, pathlib, pydicom
n = 0
for p in pathlib.Path(sys.argv[1]).rglob("*.dcm"):
    d = pydicom.dcmread(p, stop_before_pixels=True)
    seq = d.get("DeidentificationMethodCodeSequence") or []
    if any(getattr(i, "CodeValue", "") == "113101" for i in seq):
        n += int(getattr(d, "NumberOfFrames", 1) or 1)
print(n)
PY
)

frames=$(field "$scan_only" frames)
files=$(field "$scan_only" files)
frames_ocr=$(field "$ocr" frames_ocr)
python3 - "$frames" "$frames_ocr" "$files" "$t0" "$t1" "$t2" "$t3" "$frames_released" "$ocr" "$t2b" <<'PY'
import sys, json
frames, frames_ocr, files = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0, t1, t2, t3 = map(float, sys.argv[4:8])
cleaned = int(sys.argv[8])
ocr = json.loads(sys.argv[9])
t2b = float(sys.argv[10])
print(f"corpus: {files} files, {frames} frames (deid-data incl. 2 cines + pydicom test files)")
print(f"{'mode':<12} {'seconds':>8} {'frames':>8} {'frames/s':>9}")
print(f"{'scan-only':<12} {t1-t0:8.1f} {frames:8d} {frames/(t1-t0):9.1f}")
print(f"{'OCR':<12} {t2-t1:8.1f} {frames:8d} {frames/(t2-t1):9.1f}   ({frames_ocr} frames OCR'd: {frames_ocr/(t2-t1):.2f} OCR frames/s)")
print(f"{'OCR only':<12} {t2b-t2:8.1f} {frames:8d} {frames/(t2b-t2):9.1f}   (--no-pixel-lines: Tesseract's words alone, for comparison)")
print(f"{'redaction':<12} {t3-t2b:8.1f} {cleaned:8d} {cleaned/max(t3-t2b,1e-9):9.1f}   (veil deid, whole corpus; frames of outputs with Clean Pixel Data)")
print(f"share needing OCR: {frames_ocr}/{frames} frames = {100*frames_ocr/max(frames,1):.1f} %; "
      f"files with text to remove: {ocr['files_with_text_to_remove']}, undecodable: {ocr['undecodable']}")
PY
