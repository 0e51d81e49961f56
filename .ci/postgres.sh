#!/usr/bin/env bash
# Throwaway PostgreSQL cluster on 127.0.0.1 for the tests.
#   .ci/postgres.sh start DIR   -> installs Debian's postgresql if missing, starts a cluster
#                                  in DIR (owned by the postgres user), prints its URL
#   .ci/postgres.sh stop DIR    -> stops it
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

case "$cmd" in
start)
  if ! bin=$(find_bin); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bin=$(find_bin)
  fi
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  chown postgres "$dir"
  chmod 700 "$dir"
  run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  run "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null
  run "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=on" start >/dev/null
  run "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres taskfsm_test
  echo "postgresql://postgres@127.0.0.1:$port/taskfsm_test"
  ;;
stop)
  bin=$(find_bin) || exit 0
  [ -d "$dir/data" ] || exit 0
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  else
    "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  fi
  ;;
*) echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
