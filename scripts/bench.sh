#!/usr/bin/env bash
# De-identification benchmark: `veil deid` beside `cp -r`, the dicom-anonymization crate's `dcmanon`,
# dicognito and Kitware's dicom-anonymizer, on the same corpus of >= 2,000 files (>= 500 MB) made
# from real images (bench/make_corpus.py), all in one run. Prints a table (files/s, MB/s, peak RSS,
# files written, files still holding a planted identifier) and writes it to bench/results-deid.md.
#
#   ./scripts/bench.sh [N_FILES]        (default 2000)
#
# The page cache is warmed by reading the corpus once before the first tool, so every tool reads
# from memory; outputs go to the same disk. A peer that fails is reported in the table, not fatal.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=${1:-2000}
work="$root/bench/work"
corpus="$work/corpus"
mkdir -p "$work"

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
./scripts/fetch-testdata.sh >/dev/null
python3 -c 'import pydicom, numpy' 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy
python3 -c 'import dicognito' 2>/dev/null || pip install --quiet "dicognito==0.19.0"
command -v dicom-anonymizer >/dev/null || pip install --quiet "dicom-anonymizer==2.1.0"
if [ ! -x "$work/cargo-bin/bin/dcmanon" ]; then
  cargo install --quiet --locked dicom-anonymization@0.3.1 --root "$work/cargo-bin" \
    || cargo install --quiet dicom-anonymization@0.3.1 --root "$work/cargo-bin"
fi
cargo build --release --quiet -p veil
veil="$root/target/release/veil"

if [ ! -f "$work/corpus.$n.complete" ]; then
  rm -rf "$corpus"
  python3 bench/make_corpus.py "$corpus" "$n"
  touch "$work/corpus.$n.complete"
fi
# Kitware's dicom-anonymizer reads only the top level of a directory (os.listdir): it gets a flat
# directory of links to the same files.
if [ ! -d "$work/corpus-flat" ]; then
  mkdir -p "$work/corpus-flat"
  find "$corpus" -type f -name '*.dcm' -exec ln -s {} "$work/corpus-flat/" \;
fi
files=$(find "$corpus" -type f | wc -l)
bytes=$(du -sb "$corpus" | cut -f1)
mb=$(python3 -c "print(f'{$bytes/1e6:.0f}')")
cat $(find "$corpus" -type f) > /dev/null   # warm the page cache
[ -f "$work/bench.key" ] || "$veil" key new "$work/bench.key" >/dev/null

# Outputs of earlier repetitions are moved aside, not deleted, until the end. On ext4 without a
# journal (as here) the inode allocator skips inodes freed in the last 60-300 s, scanning inode
# tables to do so: a tool that creates files right after thousands were deleted pays for that
# scan (measured: half of a run's time in `recently_deleted`), and which tool pays depends on the
# order. Nothing is deleted while tools run; leftovers of an interrupted run are cleared first.
trash="$work/trash"
if [ -d "$trash" ]; then
  rm -rf "$trash"
  sleep 65
fi
mkdir -p "$trash"
discard() { for d in "$@"; do [ -e "$d" ] && mv "$d" "$trash/$(basename "$d").$RANDOM$RANDOM"; done; return 0; }

results=()
run() { # name, repetitions, output dir, command...  (best wall time of the repetitions)
  local name=$1 reps=$2 out=$3; shift 3
  local status=0 timefile="$work/time.$RANDOM" secs="" rss_kb=0 s r
  for _ in $(seq "$reps"); do
    discard "$out" "$out.quarantine"
    # Some tools want the output directory to exist, others create it: make it for those.
    [ "${make_out:-0}" = 1 ] && mkdir -p "$out"
    sync
    /usr/bin/time -f "%e %M" -o "$timefile" "$@" >"$work/log.$(echo "$name" | tr -c 'a-z0-9' '_')" 2>&1
    status=$?
    # /usr/bin/time prefixes "Command exited with non-zero status N" when the tool fails.
    read -r s r < <(tail -n 1 "$timefile")
    if [ -z "$secs" ] || python3 -c "import sys; sys.exit(0 if $s < $secs else 1)"; then secs=$s; fi
    [ "$r" -gt "$rss_kb" ] && rss_kb=$r
  done
  rm -f "$timefile"
  local written leaks
  written=$(find "$out" -type f -not -path '*/.veil/*' 2>/dev/null | wc -l)
  leaks=$(grep -rliaF -f "$work/planted.txt" --exclude-dir=.veil "$out" 2>/dev/null | wc -l)
  local fps mbps
  fps=$(python3 -c "print(f'{$files/max($secs,1e-9):.0f}')")
  mbps=$(python3 -c "print(f'{$bytes/1e6/max($secs,1e-9):.0f}')")
  local note=""
  [ "$status" -ne 0 ] && note="exit $status"
  results+=("| $name | $secs | $fps | $mbps | $((rss_kb / 1024)) | $written | $leaks | $note |")
  echo "  $name: ${secs}s, $fps files/s, $mbps MB/s, peak RSS $((rss_kb / 1024)) MB, $written written, $leaks with a planted value $note"
}

echo "corpus: $files files, $mb MB in $corpus (2 cores: $(nproc))"
run "cp -r" 3 "$work/out-cp" cp -r "$corpus" "$work/out-cp"
run "veil deid (verify on)" 3 "$work/out-veil" "$veil" deid --key "$work/bench.key" --out "$work/out-veil" --json "$corpus"
make_out=1 run "dcmanon (dicom-anonymization 0.3.1)" 3 "$work/out-dcmanon" "$work/cargo-bin/bin/dcmanon" anonymize -r --continue -i "$corpus" -o "$work/out-dcmanon"
run "dicognito 0.19.0" 1 "$work/out-dicognito" python3 -m dicognito --quiet --output-directory "$work/out-dicognito" "$corpus"
make_out=1 run "dicom-anonymizer 2.1.0 (Kitware; flat dir)" 1 "$work/out-kitware" dicom-anonymizer "$work/corpus-flat" "$work/out-kitware"

{
  echo "# De-identification benchmark"
  echo
  echo "Corpus: $files files, $mb MB, made from real CT and MR images by \`bench/make_corpus.py\` (40 patients × 5 studies × 2 series, planted identifiers in every file)."
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; page cache warm; \`sync\` before each run; outputs of earlier runs moved aside and deleted only at the end (ext4 without a journal slows file creation soon after mass deletion); best wall time of 3 runs for cp, veil and dcmanon (one run for the Python tools); peak RSS is the largest seen; command: \`./scripts/bench.sh $n\`; $(date -u +%Y-%m-%d)."
  echo
  echo "| tool | seconds | files/s | MB/s | peak RSS (MB) | files written | files with a planted value | note |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
  echo
  echo "\"Files with a planted value\": output files in which \`grep -F -i\` finds any of the $(wc -l < "$work/planted.txt") planted identifying values (names, MRN, phone, accession, institution, staff, original UIDs). cp copies them all by design."
} > bench/results-deid.md
rm -rf "$trash"
echo
cat bench/results-deid.md
