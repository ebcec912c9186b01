#!/usr/bin/env bash
# Fetches the real DICOM test data the suite runs on, from PyPI, into testdata/ (never committed):
#   testdata/pydicom/      pydicom's test_files (every transfer syntax and oddity)
#   testdata/charsets/     pydicom's charset_files (ISO 2022 Japanese and Korean, GB18030, ...)
#   testdata/deid-data/    synthetic-PHI CT/MR and images with burned-in text
# Pinned versions so that counts in tests and notes are reproducible. Safe to rerun.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/testdata"
dl="$dest/.download"
mkdir -p "$dl"

PYDICOM_VERSION=3.0.2
DEID_DATA_VERSION=0.0.20

if [ ! -f "$dest/.pydicom.complete" ]; then
  pip download --quiet --no-deps -d "$dl" "pydicom==$PYDICOM_VERSION"
  rm -rf "$dest/pydicom" "$dl/pydicom-unpacked"
  python3 - "$dl/pydicom-$PYDICOM_VERSION-py3-none-any.whl" "$dl/pydicom-unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("pydicom/data/test_files/"):
            z.extract(n, sys.argv[2])
PY
  mv "$dl/pydicom-unpacked/pydicom/data/test_files" "$dest/pydicom"
  touch "$dest/.pydicom.complete"
fi

if [ ! -f "$dest/.charsets.complete" ]; then
  pip download --quiet --no-deps -d "$dl" "pydicom==$PYDICOM_VERSION"
  rm -rf "$dest/charsets"
  python3 - "$dl/pydicom-$PYDICOM_VERSION-py3-none-any.whl" "$dest/charsets" <<'PY'
import os, sys, zipfile
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("pydicom/data/charset_files/") and not n.endswith("/"):
            with open(os.path.join(sys.argv[2], os.path.basename(n)), "wb") as f:
                f.write(z.read(n))
PY
  touch "$dest/.charsets.complete"
fi

if [ ! -f "$dest/.deid-data.complete" ]; then
  pip download --quiet --no-deps --no-build-isolation -d "$dl" "deid-data==$DEID_DATA_VERSION" 2>/dev/null \
    || pip download --quiet --no-deps -d "$dl" "deid-data==$DEID_DATA_VERSION"
  rm -rf "$dest/deid-data" "$dl/deid-unpacked"
  mkdir -p "$dl/deid-unpacked"
  tar xzf "$dl/deid-data-$DEID_DATA_VERSION.tar.gz" -C "$dl/deid-unpacked"
  mv "$dl/deid-unpacked/deid-data-$DEID_DATA_VERSION/deid_data/data" "$dest/deid-data"
  touch "$dest/.deid-data.complete"
fi

echo "test data: $(find "$dest/pydicom" -type f | wc -l) pydicom files, $(find "$dest/deid-data" -name '*.dcm' | wc -l) deid-data DICOM files in $dest"
