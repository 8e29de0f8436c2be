#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests, CI and benchmarks: exactly what CI runs.
#
#   bash scripts/pg.sh start            start one; prints `export ...` lines for eval:
#                                       eval "$(bash scripts/pg.sh start)"
#   bash scripts/pg.sh stop [DIR]       stop it and delete its files
#                                       (DIR defaults to $ABSTRACTRT_TEST_PG_DIR)
#   bash scripts/pg.sh run -- CMD...    start, run CMD with ABSTRACTRT_TEST_PG_URL set, stop
#                                       (also when CMD fails); exits with CMD's exit code
#
# The server: PostgreSQL 15 from Debian's `postgresql` package (installed with apt-get when
# /usr/lib/postgresql/15/bin is missing), `initdb` into a fresh temporary folder, listening
# on a free port of 127.0.0.1 only, password (scram-sha-256) authentication with a random
# password, so tests can also check what a wrong one does. PostgreSQL refuses to run as
# root: as root the server runs as the `postgres` user (created if missing).
#
# Environment: PG_BIN (server binaries), ABSTRACTRT_PG_FSYNC=off (faster, for throw-away
# runs that never crash the server itself; default: PostgreSQL's defaults, fsync on),
# ABSTRACTRT_PG_OPTS (more server options, e.g. "-c shared_preload_libraries=pg_stat_statements").
set -euo pipefail

PG_USER=abstractrt  # the database superuser initdb creates (not an OS user)
PG_DB=abstractrt

log() { printf 'pg.sh: %s\n' "$*" >&2; }

find_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then echo /usr/lib/postgresql/15/bin; return; fi
  if [ "$(id -u)" != 0 ]; then
    log "PostgreSQL 15 server binaries not found in /usr/lib/postgresql/15/bin;"
    log "install them with: sudo apt-get install -y postgresql  (or set PG_BIN)"
    exit 1
  fi
  log "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then echo /usr/lib/postgresql/15/bin; return; fi
  local any
  any=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$any" ]; then log "apt-get installed no PostgreSQL server binaries"; exit 1; fi
  echo "$any"
}

# The OS user the server runs as: ourselves, or (as root) an unprivileged one.
server_user() {
  if [ "$(id -u)" != 0 ]; then id -un; return; fi
  if ! id postgres >/dev/null 2>&1; then
    log "creating the system user postgres"
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres >&2
  fi
  echo postgres
}

as_user() {
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd_start() {
  local bin user dir port password url
  bin=$(find_bin)
  user=$(server_user)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/abstractrt-pg.XXXXXX")
  chmod 0700 "$dir"
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown -R "$user" "$dir"
  as_user "$user" "$bin/initdb" -D "$dir/data" -U "$PG_USER" --pwfile="$dir/pwfile" \
    -A scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { log "initdb failed:"; cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
  rm -f "$dir/pwfile"
  local opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir -c max_connections=200"
  opts="$opts ${ABSTRACTRT_PG_OPTS:-}"
  if [ "${ABSTRACTRT_PG_FSYNC:-on}" = off ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  # The port is free when we look; another process may take it before the server binds,
  # so try a few.
  local tries=0
  while :; do
    port=$(free_port)
    if as_user "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port $opts" start >/dev/null 2>&1; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
      log "the server did not start:"; tail -20 "$dir/server.log" >&2 || true
      rm -rf "$dir"; exit 1
    fi
  done
  url="postgresql://$PG_USER:$password@127.0.0.1:$port/$PG_DB"
  PGPASSWORD=$password "$bin/psql" -q -h 127.0.0.1 -p "$port" -U "$PG_USER" -d postgres \
    -c "CREATE DATABASE $PG_DB" >/dev/null
  printf 'PG_BIN=%s\nPG_USER_OS=%s\nPG_PORT=%s\n' "$bin" "$user" "$port" >"$dir/state"
  [ "$(id -u)" = 0 ] && chown "$user" "$dir/state"
  log "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') on 127.0.0.1:$port, files in $dir"
  printf 'export ABSTRACTRT_TEST_PG_URL=%q\nexport ABSTRACTRT_TEST_PG_DIR=%q\n' "$url" "$dir"
}

cmd_stop() {
  local dir=${1:-${ABSTRACTRT_TEST_PG_DIR:-}}
  if [ -z "$dir" ] || [ ! -f "$dir/state" ]; then
    log "no server to stop (give its folder, or set ABSTRACTRT_TEST_PG_DIR)"; exit 1
  fi
  local PG_BIN PG_USER_OS PG_PORT
  # shellcheck disable=SC1091
  . "$dir/state"
  as_user "$PG_USER_OS" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
    || as_user "$PG_USER_OS" "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 \
    || true
  rm -rf "$dir"
  log "stopped the server on port $PG_PORT"
}

cmd_run() {
  [ "${1:-}" = "--" ] && shift
  if [ $# -eq 0 ]; then log "usage: pg.sh run -- CMD..."; exit 2; fi
  local exports
  exports=$(cmd_start)
  eval "$exports"
  # Stop the server however CMD ends (failure, Ctrl-C, a kill of this script).
  trap 'cmd_stop "$ABSTRACTRT_TEST_PG_DIR"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local rc=0
  "$@" || rc=$?
  exit "$rc"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) log "usage: pg.sh start | stop [DIR] | run -- CMD..."; exit 2 ;;
esac
