#!/usr/bin/env bash
# Gathers the real head volumes the defacing tests are built from into testdata/faces/src/
# (never committed), and checks each against the SHA-256 pinned below:
#   mean_reg2mean.nii.gz, facemask.nii.gz   from the pydeface 2.1.0 wheel on PyPI (pip download)
#   Cranium.inv3                            Debian package invesalius-examples
#   ch2.nii.gz, ch2bet.nii.gz               Debian package mricron-data
# The Debian packages are installed by scripts/setup.d/faces.sh. Idempotent: a second run only
# re-checks the hashes.
set -euo pipefail
faces_root=$(cd "$(dirname "$0")/../.." && pwd)
src="$faces_root/testdata/faces/src"
cache="$faces_root/testdata/faces/.download"
mkdir -p "$src" "$cache"

PYDEFACE_VERSION=2.1.0
declare -A SHA=(
  [pydeface-2.1.0-py3-none-any.whl]=957aac1daaedd437a4191d450c4b2829e052351e33272b79ae978c9703edc99e
  [mean_reg2mean.nii.gz]=fdc13571d66293f9919648cd8de9a7b3491b12175e09336353d2c9ce0466ecb6
  [facemask.nii.gz]=8cba52c32c02e0cc28dd47606f6ef581b9c9804f1ae9d412da5a4addc57f0068
  [Cranium.inv3]=3b34f11f7c4f557f4c65cd6543c412a2f6ceb0cfecfd9c41184420e02d9b7e2a
  [ch2.nii.gz]=a009051127f64dc3dd554d5f5b589870ea72106d9642c21b4e7093e478cfc309
  [ch2bet.nii.gz]=592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1
)

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "${SHA[$(basename "$1")]}" ]; }

# pydeface's template and face mask
if ! ok "$src/mean_reg2mean.nii.gz" || ! ok "$src/facemask.nii.gz"; then
  whl="$cache/pydeface-$PYDEFACE_VERSION-py3-none-any.whl"
  if ! ok "$whl"; then
    rm -f "$whl"
    pip download --quiet --no-deps --only-binary=:all: -d "$cache" "pydeface==$PYDEFACE_VERSION" 2>/dev/null
  fi
  ok "$whl" || { echo "faces fetch: $whl missing or its SHA-256 differs from the pin" >&2; exit 1; }
  python3 - "$whl" "$src" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in ("mean_reg2mean.nii.gz", "facemask.nii.gz"):
        with open(os.path.join(sys.argv[2], n), "wb") as f:
            f.write(z.read("pydeface/data/" + n))
PY
fi

# Files from Debian packages: found with dpkg -L, copied in
copy_from_pkg() {
  local pkg=$1 name=$2 path
  ok "$src/$name" && return 0
  path=$(dpkg -L "$pkg" 2>/dev/null | grep "/$name\$" | head -n1 || true)
  [ -n "$path" ] && [ -f "$path" ] || { echo "faces fetch: $name not found (is $pkg installed?)" >&2; exit 1; }
  cp "$path" "$src/$name"
}
copy_from_pkg invesalius-examples Cranium.inv3
copy_from_pkg mricron-data ch2.nii.gz
copy_from_pkg mricron-data ch2bet.nii.gz

for f in mean_reg2mean.nii.gz facemask.nii.gz Cranium.inv3 ch2.nii.gz ch2bet.nii.gz; do
  ok "$src/$f" || { echo "faces fetch: SHA-256 of $src/$f differs from the pin" >&2; exit 1; }
done
