#!/usr/bin/env bash
# Speed on several corpus shapes in one run (issue 19): for each shape built by
# bench/make_shapes.py from real files — small MR (64²), small CT (128²), 512² CT (native, RLE,
# JPEG-LS and JPEG 2000: the screen decodes compressed frames), SR documents, ultrasound stills
# and cines with burned-in text — `cp -r`, `veil deid` (default policy:
# verification and the burned-in text screen on), `veil deid` with the screen off (what the
# screen costs), and dcmanon (dicom-anonymization 0.3.1, which verifies nothing and reads no
# pixels), each the best wall time of REPS runs. Prints and writes bench/results-shapes.md: wall
# seconds, files/s, MB/s, CPU ms per file (user + system), peak RSS, files written.
#
#   ./scripts/bench-shapes.sh [SCALE] [REPS] [SHAPE...]   (default 1 = 3,566 files; 3 runs;
#                                                          every shape)
#
# Page cache warm (the corpus is read once first); outputs of earlier runs are moved aside, not
# deleted, until the end (see scripts/bench.sh for why).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scale=${1:-1}
reps=${2:-3}
shift 2 2>/dev/null || shift $#
only=("$@")
work="$root/bench/work"
corpus="$work/shapes-$scale"
mkdir -p "$work"

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v dcmcjpls >/dev/null && command -v gdcmconv >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq dcmtk libgdcm-tools >/dev/null; }
./scripts/fetch-testdata.sh >/dev/null
python3 -c 'import pydicom, numpy, openjpeg' 2>/dev/null \
  || pip install --quiet "pydicom==3.0.2" numpy "pylibjpeg==2.1.0" "pylibjpeg-openjpeg==2.6.0"
if [ ! -x "$work/cargo-bin/bin/dcmanon" ]; then
  cargo install --quiet --locked dicom-anonymization@0.3.1 --root "$work/cargo-bin" \
    || cargo install --quiet dicom-anonymization@0.3.1 --root "$work/cargo-bin"
fi
cargo build --release --quiet -p veil
veil="$root/target/release/veil"
dcmanon="$work/cargo-bin/bin/dcmanon"
[ -f "$work/bench.key" ] || "$veil" key new "$work/bench.key" >/dev/null
printf '[pixels]\nscreen = false\n' > "$work/no-screen.toml"

# Each shape is made once per scale (only those asked for: scale 10 of every shape is 5 GB); its
# marker names the generator's version, so a shape made by an older one is made again.
all_shapes=(mr64 ct128 ct512 ct512-rle ct512-jpegls ct512-j2k sr us-text us-cine)
missing=()
for s in "${only[@]:-${all_shapes[@]}}"; do
  [ -f "$corpus/.complete-3.$s" ] || missing+=("$s")
done
if [ ${#missing[@]} -gt 0 ]; then
  for s in "${missing[@]}"; do rm -rf "${corpus:?}/$s"; done
  python3 bench/make_shapes.py "$corpus" "$scale" "${missing[@]}" 2>/dev/null
  for s in "${missing[@]}"; do touch "$corpus/.complete-3.$s"; done
fi
results=bench/results-shapes.md
# A run over some shapes only does not replace the table of all of them.
[ ${#only[@]} -gt 0 ] && results="$work/results-shapes-selected.md"

trash="$work/trash"
if [ -d "$trash" ]; then
  rm -rf "$trash"
  sleep 65
fi
mkdir -p "$trash"
discard() { for d in "$@"; do [ -e "$d" ] && mv "$d" "$trash/$(basename "$d").$RANDOM$RANDOM"; done; return 0; }

rows=()
run() { # shape, files, bytes, tool name, output dir, command...
  local shape=$1 files=$2 bytes=$3 name=$4 out=$5; shift 5
  local best="" cpu="" rss=0 status=0 t="$work/time.$RANDOM" s u sy r
  for _ in $(seq "$reps"); do
    discard "$out" "$out.quarantine"
    [ "${make_out:-0}" = 1 ] && mkdir -p "$out"
    sync
    /usr/bin/time -f "%e %U %S %M" -o "$t" "$@" >/dev/null 2>"$work/log.$shape"
    status=$?
    read -r s u sy r < <(tail -n 1 "$t")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $s < $best else 1)"; then
      best=$s
      cpu=$(python3 -c "print(f'{($u + $sy) * 1000 / $files:.2f}')")
    fi
    [ "$r" -gt "$rss" ] && rss=$r
  done
  rm -f "$t"
  local written
  written=$(find "$out" -type f -name '*.dcm' -not -path '*/.veil/*' 2>/dev/null | wc -l)
  [ "$written" = 0 ] && written=$(find "$out" -type f -not -path '*/.veil/*' 2>/dev/null | wc -l)
  local fps mbps note=""
  # /usr/bin/time counts in hundredths: a run under 10 ms reads 0.00 and is counted as 0.01 s.
  fps=$(python3 -c "print(f'{$files/max($best,0.01):,.0f}')")
  mbps=$(python3 -c "print(f'{$bytes/1e6/max($best,0.01):,.0f}')")
  python3 -c "import sys; sys.exit(0 if $best < 0.01 else 1)" && { best="<0.01"; fps="≥$fps"; mbps="≥$mbps"; }
  [ "$status" -ne 0 ] && note="exit $status"
  rows+=("| $shape | $name | $best | $fps | $mbps | $cpu | $((rss / 1024)) | $written | $note |")
  echo "  $shape / $name: ${best}s, $fps files/s, $mbps MB/s, $cpu CPU ms/file, peak $((rss / 1024)) MB, $written written $note"
}

for dir in "$corpus"/*/; do
  shape=$(basename "$dir")
  if [ ${#only[@]} -gt 0 ] && [[ ! " ${only[*]} " == *" $shape "* ]]; then continue; fi
  files=$(find "$dir" -type f -name '*.dcm' | wc -l)
  bytes=$(du -sb "$dir" | cut -f1)
  cat $(find "$dir" -type f) >/dev/null
  echo "$shape: $files files, $((bytes / 1000000)) MB"
  run "$shape" "$files" "$bytes" "cp -r" "$work/out-cp" cp -r "$dir" "$work/out-cp"
  run "$shape" "$files" "$bytes" "veil deid" "$work/out-veil" "$veil" deid --key "$work/bench.key" --out "$work/out-veil" --json "$dir"
  run "$shape" "$files" "$bytes" "veil deid, screen off" "$work/out-veil-ns" "$veil" deid --key "$work/bench.key" --policy "$work/no-screen.toml" --out "$work/out-veil-ns" --json "$dir"
  make_out=1 run "$shape" "$files" "$bytes" "dcmanon 0.3.1" "$work/out-dcmanon" "$dcmanon" anonymize -r --continue -i "$dir" -o "$work/out-dcmanon"
done

{
  echo "# Speed by corpus shape"
  echo
  echo "Corpora from real files by \`bench/make_shapes.py\` (scale $scale); machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; page cache warm; best wall time of $reps runs, CPU (user + system) of that run, largest peak RSS; command: \`./scripts/bench-shapes.sh $scale $reps\`; $(date -u +%Y-%m-%d)."
  echo
  echo "| shape | tool | seconds | files/s | MB/s | CPU ms/file | peak RSS (MB) | files written | note |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "The ct512-* rows are the ct512 files compressed losslessly: the screen decodes their frames (native frames are read from the source bytes), so \"veil deid\" minus \"screen off\" on them is what the decode and the screen cost per transfer syntax."
  echo
  echo "\`veil deid\` verifies every output and screens every image for burned-in text (ultrasounds are flagged and always read by OCR); dcmanon does neither. Files written by veil fewer than the input: held back with a reason (see the run report)."
} > "$results"
rm -rf "$trash"
echo
cat "$results"
