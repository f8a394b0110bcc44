#!/usr/bin/env bash
# Smoke-test drill's PostgreSQL image (built by scripts/build-image.sh) the
# way drill uses it: start it like the official postgres image, connect over
# TCP from the host with a password and over the unix socket inside, check
# locale, tools and that extra server arguments (-c fsync=off) pass through.
#
# Usage: scripts/test-image.sh [MAJOR]     (default 15; image drill-postgres:MAJOR)
# Needs psql on the host (scripts/install-deps.sh). Removes its containers.
set -euo pipefail

PROG=test-image.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

MAJOR=${1:-15}
IMAGE=${DRILL_IMAGE_REPO:-drill-postgres}:$MAJOR
PASSWORD=secret-$RANDOM$RANDOM
USER_=drill_sandbox

docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; run scripts/build-image.sh $MAJOR"
command -v psql >/dev/null || die "psql not installed on the host; run scripts/install-deps.sh"

CONTAINERS=()
cleanup() {
  local c
  for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# Sets $c (not echoed: a $(...) subshell would lose the CONTAINERS entry
# that the EXIT trap needs to remove the container on failure).
start_ctr() { # extra args for postgres...
  c=$(docker run -d --rm -e POSTGRES_PASSWORD="$PASSWORD" -e POSTGRES_USER="$USER_" \
    -p 127.0.0.1::5432 "$IMAGE" "$@") || die "docker run $IMAGE $* failed"
  CONTAINERS+=("$c")
}

host_port() {
  docker port "$1" 5432/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1
}

# psql over TCP from the host, as drill connects
hpsql() { # ctr sql
  local port; port=$(host_port "$1")
  PGPASSWORD=$PASSWORD PGCONNECT_TIMEOUT=3 psql -X -h 127.0.0.1 -p "$port" -U "$USER_" -d "$USER_" \
    -v ON_ERROR_STOP=1 -At -c "$2"
}

wait_ready() { # ctr
  local deadline=$((SECONDS + 60)) t0=$SECONDS
  until hpsql "$1" 'select 1' >/dev/null 2>&1; do
    if ! docker inspect "$1" >/dev/null 2>&1; then die "container exited during start-up"; fi
    if ((SECONDS >= deadline)); then
      docker logs "$1" >&2 || true
      die "PostgreSQL in $1 not reachable over TCP within 60s"
    fi
    sleep 0.5
  done
  log "ready over TCP after $((SECONDS - t0))s"
}

expect() { # description expected actual
  if [[ $3 == "$2" ]]; then log "ok: $1 = $3"; else die "$1: expected '$2', got '$3'"; fi
}

# 1. standard start, TCP with password from the host
t0=$SECONDS
start_ctr
log "started ${c:0:12} from $IMAGE"
wait_ready "$c"
log "ok: $(hpsql "$c" 'select version()')"
if ((MAJOR < 16)); then # the lc_collate setting was removed in PostgreSQL 16
  expect "lc_collate" en_US.UTF-8 "$(hpsql "$c" 'SHOW lc_collate')"
fi
expect "datcollate" en_US.UTF-8 "$(hpsql "$c" 'select datcollate from pg_database where datname = current_database()')"
expect "lc_messages" en_US.UTF-8 "$(hpsql "$c" 'SHOW lc_messages')"
expect "server_encoding" UTF8 "$(hpsql "$c" 'SHOW server_encoding')"
expect "current_user" "$USER_" "$(hpsql "$c" 'select current_user')"
expect "superuser" on "$(hpsql "$c" "select rolsuper from pg_roles where rolname = current_user" | sed 's/^t$/on/')"
expect "fsync (default)" on "$(hpsql "$c" 'SHOW fsync')"
# wrong password must be rejected over TCP
if PGPASSWORD=wrong PGCONNECT_TIMEOUT=3 psql -X -h 127.0.0.1 -p "$(host_port "$c")" -U "$USER_" -d "$USER_" \
  -c 'select 1' >/dev/null 2>&1; then
  die "a wrong password was accepted over TCP"
fi
log "ok: wrong password rejected over TCP"

# 2. unix socket inside the container, as the postgres OS user
expect "unix socket psql" 1 "$(docker exec -u postgres "$c" psql -X -At -U "$USER_" -d postgres -c 'select 1')"
for tool in pg_restore pg_amcheck pg_dump psql; do
  v=$(docker exec "$c" "$tool" --version) || die "$tool --version failed in the container"
  [[ $v == *"PostgreSQL) $MAJOR."* ]] || die "$tool reports '$v', expected PostgreSQL $MAJOR"
  log "ok: $v"
done
for tool in gzip zstd; do
  docker exec "$c" "$tool" --version >/dev/null 2>&1 || die "$tool missing in the container"
  log "ok: $tool present"
done
expect "database list contains $USER_" "$USER_" "$(docker exec -u postgres "$c" psql -X -At -U "$USER_" -d postgres -c "select datname from pg_database where datname = '$USER_'")"
expect "PID 1 is postgres" postgres "$(docker exec "$c" cat /proc/1/comm)"
expect "PID 1 user" postgres "$(docker exec "$c" sh -c 'stat -c %U /proc/1')"
if docker logs "$c" 2>&1 | grep -qF "$PASSWORD"; then die "the password appears in the container log"; fi
log "ok: password not in the container log"
t_stop=$SECONDS
docker stop "$c" >/dev/null
log "ok: docker stop took $((SECONDS - t_stop))s (STOPSIGNAL $(docker image inspect -f '{{.Config.StopSignal}}' "$IMAGE"))"

# 3. extra server arguments pass through
start_ctr -c fsync=off -c max_connections=42
wait_ready "$c"
expect "fsync with -c fsync=off" off "$(hpsql "$c" 'SHOW fsync')"
expect "max_connections with -c max_connections=42" 42 "$(hpsql "$c" 'SHOW max_connections')"
docker rm -f "$c" >/dev/null

# 4. a missing password is refused like the official image
if out=$(docker run --rm "$IMAGE" 2>&1); then
  die "container started without POSTGRES_PASSWORD"
fi
[[ $out == *"superuser password is not specified"* ]] || die "unexpected error without password: $out"
log "ok: refuses to start without POSTGRES_PASSWORD"

log "all image tests passed for $IMAGE in $((SECONDS - t0))s"
