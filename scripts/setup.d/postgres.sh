# Sourced by scripts/test.sh: starts a throw-away PostgreSQL server for the store's tests and
# exports VEIL_TEST_POSTGRES_URL. Debian's `postgresql` package; initdb into a temp dir; runs as
# the unprivileged `postgres` user (or the current user when not root) on a free local port, trust
# authentication on 127.0.0.1 only. Idempotent: reuses a server this shell already started.
# Teardown: `veil_postgres_teardown` (also run on shell exit); leaving it running is harmless
# (temp dir, loopback only).

veil_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

veil_postgres_setup() {
  if [ -n "${VEIL_TEST_POSTGRES_URL:-}" ] && [ -n "${VEIL_PG_DIR:-}" ] && [ -d "$VEIL_PG_DIR" ]; then
    return 0
  fi
  local bin
  if ! bin=$(veil_pg_bin); then
    echo "postgres.sh: installing postgresql"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive sudo apt-get install -y -qq postgresql >/dev/null
    fi
    bin=$(veil_pg_bin) || { echo "postgres.sh: no initdb after install" >&2; return 1; }
  fi
  local run_as=()
  local owner
  owner=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /nonexistent --shell /usr/sbin/nologin postgres
    run_as=(runuser -u postgres --)
    owner=postgres
  fi
  VEIL_PG_DIR=$(mktemp -d /tmp/veil-pg.XXXXXX)
  chown "$owner" "$VEIL_PG_DIR"
  chmod 700 "$VEIL_PG_DIR"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  "${run_as[@]}" "$bin/initdb" -D "$VEIL_PG_DIR/data" -U veil --auth=trust -E UTF8 --no-locale >/dev/null
  "${run_as[@]}" "$bin/pg_ctl" -D "$VEIL_PG_DIR/data" -l "$VEIL_PG_DIR/log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $VEIL_PG_DIR -c fsync=off -c synchronous_commit=off -c max_connections=200" start >/dev/null
  "${run_as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U veil veil_test
  export VEIL_PG_DIR VEIL_PG_BIN="$bin"
  export VEIL_TEST_POSTGRES_URL="postgres://veil@127.0.0.1:$port/veil_test"
  echo "postgres.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data $VEIL_PG_DIR)"
}

veil_postgres_teardown() {
  if [ -n "${VEIL_PG_DIR:-}" ] && [ -d "$VEIL_PG_DIR/data" ]; then
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$VEIL_PG_BIN/pg_ctl" -D "$VEIL_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    else
      "$VEIL_PG_BIN/pg_ctl" -D "$VEIL_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$VEIL_PG_DIR"
  fi
  unset VEIL_PG_DIR VEIL_TEST_POSTGRES_URL
}

veil_postgres_setup
# Stop the server when the sourcing shell exits, unless the caller already set an EXIT trap.
if [ -z "$(trap -p EXIT)" ]; then
  trap veil_postgres_teardown EXIT
fi
