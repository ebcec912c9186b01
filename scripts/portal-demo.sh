#!/usr/bin/env bash
# The portal on the demo store, in one command: builds Veil, runs `veil demo` (synthetic export,
# de-identification, a consent-gated release into the ledger), adds a privacy-office account and
# prints its password and TOTP secret, prints a patient's one-time access code, and serves the
# portal on http://127.0.0.1:8080 until Ctrl-C. Extra arguments go to `veil serve`.
#
#   ./scripts/portal-demo.sh                 (DIR=veil-portal-demo LISTEN=127.0.0.1:8080)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-veil-portal-demo}
LISTEN=${LISTEN:-127.0.0.1:8080}
# shellcheck source=setup.d/pixels.sh
source scripts/setup.d/pixels.sh
cargo build --release --quiet -p veil
veil=${CARGO_TARGET_DIR:-target}/release/veil
"$veil" demo --dir "$DIR" >/dev/null
export VEIL_DB="$DIR/veil.db" VEIL_KEY_FILE="$DIR/demo.key"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
echo "Privacy office: sign in at http://$LISTEN/office/sign-in as 'officer', password $password"
VEIL_OFFICER_PASSWORD="$password" "$veil" portal officer add officer | sed 's/^/  /'
echo "Patient: sign in at http://$LISTEN/sign-in with code $("$veil" portal code MRN-40071233 2>/dev/null)"
exec "$veil" serve --listen "$LISTEN" "$@"
