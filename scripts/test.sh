#!/usr/bin/env bash
# Runs Veil's whole test suite on a fresh Debian machine (as root, as CI does) or a developer box:
#   1. installs the real peers the tests check outputs with (dcmtk, dicom3tools, GDCM, pydicom;
#      Orthanc through scripts/setup.d/gateway.sh),
#   2. runs every scripts/setup.d/*.sh (services and data other parts of the suite need),
#   3. fetches the real DICOM test data from PyPI (scripts/fetch-testdata.sh),
#   4. runs `cargo test --workspace`,
#   5. runs the lints: clippy with warnings denied, and the libraries' docs with warnings denied
#      (the design rules — the verifier links no engine crate, fault injection never reaches the
#      binary, no unused dependency — are tests of veil-app, run in step 4).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A fresh CI machine builds once: incremental state would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
disk_free() { df -h --output=avail . | tail -1 | tr -d ' '; }
echo "test.sh: disk free before the build: $(disk_free)"

need_apt=()
command -v dcmdump >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need_apt+=(dicom3tools)
command -v gdcmdump >/dev/null 2>&1 || need_apt+=(libgdcm-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c "import pydicom, numpy" 2>/dev/null || pip install --quiet "pydicom==3.0.2" numpy

for f in scripts/setup.d/*.sh; do
  [ -e "$f" ] || continue
  echo "test.sh: setup $(basename "$f")"
  # shellcheck disable=SC1090
  source "$f"
done

./scripts/fetch-testdata.sh
cargo test --workspace --no-fail-fast "$@"
echo "test.sh: disk free after the tests: $(disk_free) (target: $(du -sh target 2>/dev/null | cut -f1))"
echo "test.sh: lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --exclude veil --no-deps --quiet
