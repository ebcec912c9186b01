#!/usr/bin/env bash
# Peer audit (issue 4): runs dicognito, Kitware's dicom-anonymizer, pydicom deid (default recipe),
# GDCM's gdcmanon (PS3.15 basic profile) and Veil on the same planted-identifier corpus, checks
# every output with `veil verify --against` and with grep for the planted values, and prints a
# table of findings per tool and category. Writes the table to bench/audit/results.md.
#
#   ./scripts/audit-peers.sh [N_REAL]      (N_REAL real CT/MR slices beside the demo export; default 80)
#
# Works on a fresh Debian machine as root: installs libgdcm-tools, openssl, python3-venv and the
# C/C++ tools Veil's build needs with apt-get, and the Python peers at pinned versions into a
# venv under the work directory. Environment: VEIL_BIN=path uses that veil binary instead of
# building one (`cargo build --release -p veil`); VEIL_AUDIT_WORK=dir moves the work directory
# (default bench/work/audit, git-ignored). Rerunning rebuilds the corpus and every output.
# Exit status: 0 when Veil's rows are clean (no finding, no planted value, nothing held back by
# its own in-pipeline verifier), 1 otherwise or when a step failed; the peers' findings are what
# the audit measures and do not change it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n_real=${1:-80}
work=${VEIL_AUDIT_WORK:-$root/bench/work/audit}
mkdir -p "$work"
# Pinned peers (PyPI) and their common dependencies.
py_pins=("dicognito==0.19.0" "dicom-anonymizer==2.1.0" "deid==0.4.13" "pydicom==3.0.2" "numpy==2.4.6")

die() { echo "audit-peers: $*" >&2; exit 1; }

apt_need=()
command -v gdcmanon >/dev/null 2>&1 || apt_need+=(libgdcm-tools)
command -v openssl >/dev/null 2>&1 || apt_need+=(openssl)
command -v python3 >/dev/null 2>&1 || apt_need+=(python3)
command -v git >/dev/null 2>&1 || apt_need+=(git)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_need+=(python3-venv)
if [ -z "${VEIL_BIN:-}" ]; then
  command -v cmake >/dev/null 2>&1 || apt_need+=(cmake)   # the JPEG-LS codec in Veil's build
  command -v g++ >/dev/null 2>&1 || apt_need+=(g++)
fi
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "audit-peers: installing ${apt_need[*]} (apt-get)"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends "${apt_need[@]}" >/dev/null; } \
    || die "apt-get could not install ${apt_need[*]}; install them and rerun"
fi
command -v gdcmanon >/dev/null 2>&1 || die "gdcmanon is missing after installing libgdcm-tools"

venv="$work/venv"
stamp="$venv/.pins"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "${py_pins[*]}" ]; then
  echo "audit-peers: installing ${py_pins[*]} into $venv (pip)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${py_pins[@]}" \
    || die "pip could not install ${py_pins[*]}; see the message above"
  echo "${py_pins[*]}" > "$stamp"
fi
for mod in dicognito dicomanonymizer deid pydicom numpy; do
  "$venv/bin/python" -c "import $mod" 2>/dev/null \
    || die "python module $mod does not import in $venv; delete $venv and rerun"
done

# The real images come from pydicom's test files (testdata/, fetched from PyPI with the venv's pip).
PATH="$venv/bin:$PATH" ./scripts/fetch-testdata.sh >/dev/null \
  || die "scripts/fetch-testdata.sh failed (pydicom's test files are needed for the real images)"

if [ -n "${VEIL_BIN:-}" ]; then
  veil=$VEIL_BIN
else
  command -v cargo >/dev/null 2>&1 || die "cargo is missing: install the Rust toolchain, or set VEIL_BIN to a veil binary"
  echo "audit-peers: cargo build --release -p veil"
  cargo build --release --quiet -p veil || die "cargo build --release -p veil failed"
  veil="$root/target/release/veil"
fi
[ -x "$veil" ] || die "no veil binary at $veil"

exec "$venv/bin/python" bench/audit/audit.py --veil "$veil" --work "$work" \
  --python "$venv/bin/python" --results bench/audit/results.md --real "$n_real"
