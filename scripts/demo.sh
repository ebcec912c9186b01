#!/usr/bin/env bash
# Builds Veil and runs its built-in demo on a fresh Debian machine. First installs what the demo
# needs, through the same setup script the tests use (scripts/setup.d/pixels.sh): Tesseract OCR
# and its English model (the pixel stage reads the text burned into the demo's ultrasound), cmake
# and g++ (they build the JPEG-LS codec). Then `veil demo`, which generates a synthetic export
# full of planted identifiers, de-identifies and verifies it, and prints what it did and where the
# output is. Extra arguments go to `veil demo` (e.g. --dir /tmp/veil-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=setup.d/pixels.sh
source scripts/setup.d/pixels.sh
cargo build --release --quiet -p veil
exec ./target/release/veil demo "$@"
