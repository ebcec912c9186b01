#!/usr/bin/env bash
# Builds Veil and runs its built-in demo on a fresh Debian machine: installs the C/C++ build tools
# the JPEG-LS codec needs (cmake, g++) if they are missing, then `veil demo`, which generates a
# synthetic export full of planted identifiers, de-identifies and verifies it, and prints what it
# did and where the output is. Extra arguments go to `veil demo` (e.g. --dir /tmp/veil-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  echo "demo.sh: installing ${need[*]} (needed to build the JPEG-LS codec)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet -p veil
exec ./target/release/veil demo "$@"
