#!/usr/bin/env bash
# Ledger appends from many writers at once (issue 22: the bottleneck of a Spark release), on
# PostgreSQL and, beside it in the same run, SQLite: 1 to 16 writers, each with its own
# connection, appending batches of 16 and 256 entries to one hash-chained ledger. Prints
# entries/s and commit latencies; results go to bench/ledger/results-writers.md.
#
#   ./scripts/bench-ledger-writers.sh [ENTRIES_PER_WRITER] [WRITERS] [BATCHES]
#   (defaults: 5000 "1,2,4,8,16" "16,256"; CI runs `... 200 1,4 16`)
# PostgreSQL comes from scripts/setup.d/postgres.sh (a throw-away local server, stopped when this
# script exits), switched to durable commits (fsync and synchronous_commit on, as a production
# ledger runs; the tests run with both off).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PER=${1:-5000}
WRITERS=${2:-1,2,4,8,16}
BATCHES=${3:-16,256}
# shellcheck disable=SC1091
source scripts/setup.d/postgres.sh
cargo build --release -q -p veil-store --example ledger_writers
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/ledger_writers"
work=$(mktemp -d /tmp/veil-ledger-writers.XXXXXX)
trap 'rm -rf "$work"' EXIT
db="veil_writers_$$"
psql "$VEIL_TEST_POSTGRES_URL" -q -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
pg="${VEIL_TEST_POSTGRES_URL%/*}/$db"
# The setup starts the server with fsync and synchronous_commit off on its command line, which
# no ALTER SYSTEM overrides: restart it with durable commits.
port=${VEIL_TEST_POSTGRES_URL##*:}; port=${port%%/*}
pg_restart=("$VEIL_PG_BIN/pg_ctl" -D "$VEIL_PG_DIR/data" -l "$VEIL_PG_DIR/log" -w -t 60 restart
  -o "-h 127.0.0.1 -p $port -k $VEIL_PG_DIR -c max_connections=200")
if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "${pg_restart[@]}" >/dev/null; else "${pg_restart[@]}" >/dev/null; fi
results="$root/bench/ledger/results-writers.md"
{
  echo "# Ledger appends from many writers"
  echo
  echo "\`./scripts/bench-ledger-writers.sh $PER $WRITERS $BATCHES\`, $(date -u +%Y-%m-%d), $(nproc) cores,"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg). Each writer appends $PER entries."
  echo
  echo "## PostgreSQL $(psql "$pg" -Atc 'SHOW server_version') (fsync $(psql "$pg" -Atc 'SHOW fsync'), synchronous_commit $(psql "$pg" -Atc 'SHOW synchronous_commit'))"
  echo
  "$bin" "$pg" "$PER" "$WRITERS" "$BATCHES"
  echo
  echo "## SQLite (WAL, one file)"
  echo
  "$bin" "$work/veil.db" "$PER" "$WRITERS" "$BATCHES"
} | tee "$results.tmp"
mv "$results.tmp" "$results"
psql "$VEIL_TEST_POSTGRES_URL" -q -c "DROP DATABASE IF EXISTS $db"
