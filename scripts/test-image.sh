#!/usr/bin/env bash
# Smoke-test drill's PostgreSQL image (built by scripts/build-image.sh) the
# way drill uses it: start it like the official postgres image, connect over
# TCP from the host with a password and over the unix socket inside, check
# locale, tools and that extra server arguments (-c fsync=off) pass through.
#
# "mariadb" tests drill-mariadb:10.11 (scripts/build-image.sh mariadb) the
# same way: started like the official mariadb image, TCP logins through the
# port published on 127.0.0.1, a table created, filled and read through
# "docker exec -i ... mariadb" on the unix socket, mariadb-dump /
# mariadb-binlog / mariadb-check / gzip / zstd, the MYSQL_* aliases,
# MARIADB_RANDOM_ROOT_PASSWORD, extra mariadbd arguments, and the refusal
# to start without a root password.
#
# Usage: scripts/test-image.sh [MAJOR]     (default 15; image drill-postgres:MAJOR)
#        scripts/test-image.sh mariadb     (image drill-mariadb:10.11)
# Needs psql on the host (scripts/install-deps.sh) for PostgreSQL; the
# MariaDB test uses the host's mariadb client if there is one, else the
# image's own in a helper container on the host network. Removes its
# containers.
set -euo pipefail

PROG=test-image.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

CONTAINERS=()
cleanup() {
  local c
  for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

expect() { # description expected actual
  if [[ $3 == "$2" ]]; then log "ok: $1 = $3"; else die "$1: expected '$2', got '$3'"; fi
}

# -----------------------------------------------------------------------------
# MariaDB
# -----------------------------------------------------------------------------
MARIADB_MAJOR=10.11 # keep in step with scripts/build-image.sh

# Sets $c, like start_ctr below. The root password reaches docker run
# through the environment, not argv.
m_start() { # root-password env... -- extra mariadbd args...
  local -a envs=()
  while (($#)) && [[ $1 != -- ]]; do envs+=(-e "$1"); shift; done
  shift
  c=$(docker run -d --rm "${envs[@]}" -p 127.0.0.1::3306 "$IMAGE" "$@") \
    || die "docker run $IMAGE $* failed"
  CONTAINERS+=("$c")
}

m_port() {
  docker port "$1" 3306/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n1
}

# mariadb over TCP to the port published on 127.0.0.1, as a client on the
# host connects (the temporary server of the entrypoint listens on the
# socket only, so a TCP answer means the final server)
m_tcp() { # ctr user password database sql
  local port; port=$(m_port "$1")
  local -a args=(--protocol=tcp -h 127.0.0.1 -P "$port" -u "$2" --connect-timeout=3 --batch --skip-column-names)
  [[ -z $4 ]] || args+=(--database="$4")
  if [[ -n $HOST_MARIADB ]]; then
    MYSQL_PWD=$3 "$HOST_MARIADB" --no-defaults "${args[@]}" -e "$5"
  else
    MYSQL_PWD=$3 docker run --rm -i --network host -e MYSQL_PWD --entrypoint mariadb "$IMAGE" \
      --no-defaults "${args[@]}" -e "$5"
  fi
}

m_wait_ready() { # ctr password
  local deadline=$((SECONDS + 60)) t0=$SECONDS
  until m_tcp "$1" root "$2" "" 'SELECT 1' >/dev/null 2>&1; do
    if ! docker inspect "$1" >/dev/null 2>&1; then die "container exited during start-up"; fi
    if ((SECONDS >= deadline)); then
      docker logs "$1" >&2 || true
      die "MariaDB in $1 not reachable over TCP within 60s"
    fi
    sleep 0.5
  done
  log "ready over TCP after $((SECONDS - t0))s"
}

# mariadb inside the container on the unix socket, as "docker exec" users do
m_exec() { # ctr password database  (SQL on stdin)
  docker exec -i "$1" mariadb -uroot -p"$2" --batch --skip-column-names "$3"
}

test_mariadb() {
  IMAGE=${DRILL_MARIADB_IMAGE_REPO:-drill-mariadb}:$MARIADB_MAJOR
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; run scripts/build-image.sh mariadb"
  HOST_MARIADB=$(command -v mariadb || true)
  log "TCP client: ${HOST_MARIADB:-mariadb of the image, in a container on the host network}"
  # quote, backslash, double quote and backtick exercise the entrypoint's escaping
  local pw="se'c\\r\"e\`t-$RANDOM$RANDOM" upw="user-$RANDOM$RANDOM" db=drill_sandbox user=drill_user
  local t0=$SECONDS v out

  expect "image ENV MARIADB_MAJOR" "$MARIADB_MAJOR" \
    "$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed -n 's/^MARIADB_MAJOR=//p')"
  v=$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed -n 's/^MARIADB_VERSION=//p')
  [[ $v == "1:$MARIADB_MAJOR."* ]] || die "image ENV MARIADB_VERSION is '$v', expected 1:$MARIADB_MAJOR.x"
  log "ok: image ENV MARIADB_VERSION = $v"

  # 1. standard start: root password, database, user
  MARIADB_ROOT_PASSWORD=$pw MARIADB_DATABASE=$db MARIADB_USER=$user MARIADB_PASSWORD=$upw \
    m_start MARIADB_ROOT_PASSWORD MARIADB_DATABASE MARIADB_USER MARIADB_PASSWORD --
  log "started ${c:0:12} from $IMAGE"
  m_wait_ready "$c" "$pw"
  v=$(m_tcp "$c" root "$pw" "" 'SELECT VERSION()')
  [[ $v == "$MARIADB_MAJOR."*-MariaDB* ]] || die "server version '$v', expected $MARIADB_MAJOR.x-MariaDB"
  log "ok: server version $v"
  expect "current_user() over TCP" 'root@%' "$(m_tcp "$c" root "$pw" "" 'SELECT CURRENT_USER()')"
  expect "bind_address" 0.0.0.0 "$(m_tcp "$c" root "$pw" "" 'SELECT @@bind_address')"
  out=$(m_tcp "$c" root "$pw" "" 'SHOW GRANTS')
  # shellcheck disable=SC2016 # backticks quote SQL identifiers here
  [[ $out == *'GRANT ALL PRIVILEGES ON *.* TO `root`@`%`'*'WITH GRANT OPTION'* ]] \
    || die "root@'%' lacks ALL PRIVILEGES WITH GRANT OPTION: $out"
  log "ok: root@'%' has ALL PRIVILEGES WITH GRANT OPTION"
  if m_tcp "$c" root wrong "" 'SELECT 1' >/dev/null 2>&1; then
    die "a wrong root password was accepted over TCP"
  fi
  log "ok: wrong password rejected over TCP"

  # 2. the unix socket inside the container: create, insert, select
  out=$(m_exec "$c" "$pw" "$db" <<<"CREATE TABLE drill_check (id INT PRIMARY KEY, name VARCHAR(20)) ENGINE=InnoDB;
INSERT INTO drill_check VALUES (1, 'one'), (2, 'two');
SELECT id, name FROM drill_check ORDER BY id;") || die "docker exec -i $c mariadb failed"
  expect "docker exec -i mariadb (socket): create, insert, select" $'1\tone\n2\ttwo' "$out"
  expect "current_user() on the socket" root@localhost "$(m_exec "$c" "$pw" "$db" <<<'SELECT CURRENT_USER()')"
  expect "socket" /run/mysqld/mysqld.sock "$(m_exec "$c" "$pw" "$db" <<<'SELECT @@socket')"
  if docker exec -i "$c" mariadb -uroot -pwrong -e 'SELECT 1' >/dev/null 2>&1; then
    die "a wrong root password was accepted on the socket"
  fi
  log "ok: wrong password rejected on the socket"

  # 3. MARIADB_USER: all privileges on MARIADB_DATABASE, nothing else
  expect "$user reads $db over TCP" 2 "$(m_tcp "$c" "$user" "$upw" "$db" 'SELECT COUNT(*) FROM drill_check')"
  expect "$user's databases" "$db"$'\ninformation_schema' \
    "$(m_tcp "$c" "$user" "$upw" "" 'SELECT schema_name FROM information_schema.schemata ORDER BY schema_name')"

  # 4. tools
  out=$(docker exec "$c" mariadb-dump -uroot -p"$pw" --skip-dump-date "$db") || die "mariadb-dump failed"
  # shellcheck disable=SC2016 # backticks quote SQL identifiers here
  [[ $out == *'CREATE TABLE `drill_check`'* && $out == *"(2,'two')"* ]] || die "unexpected mariadb-dump output: $out"
  log "ok: mariadb-dump dumps $db"
  out=$(docker exec "$c" mariadb-check -uroot -p"$pw" "$db") || die "mariadb-check failed"
  expect "mariadb-check $db" "$db.drill_check"$'\t'OK "$(tr -s ' ' '\t' <<<"$out")"
  v=$(docker exec "$c" sh -c 'mariadb-binlog --version || mysqlbinlog --version') || die "mariadb-binlog / mysqlbinlog missing"
  log "ok: $v"
  for v in gzip zstd; do
    docker exec "$c" "$v" --version >/dev/null 2>&1 || die "$v missing in the container"
    log "ok: $v present"
  done
  expect "PID 1 is mariadbd" mariadbd "$(docker exec "$c" cat /proc/1/comm)"
  expect "PID 1 user" mysql "$(docker exec "$c" sh -c 'stat -c %U /proc/1')"
  if docker logs "$c" 2>&1 | grep -qF -e "$pw" -e "$upw"; then die "a password appears in the container log"; fi
  log "ok: passwords not in the container log"
  local t_stop=$SECONDS
  docker stop "$c" >/dev/null
  log "ok: docker stop took $((SECONDS - t_stop))s"

  # 5. the MYSQL_* names, extra mariadbd arguments
  MYSQL_ROOT_PASSWORD=$pw MYSQL_DATABASE=legacy_db \
    m_start MYSQL_ROOT_PASSWORD MYSQL_DATABASE -- --innodb-flush-log-at-trx-commit=0 --skip-log-bin --max-connections=42
  m_wait_ready "$c" "$pw"
  expect "MYSQL_DATABASE created" legacy_db \
    "$(m_tcp "$c" root "$pw" "" "SELECT schema_name FROM information_schema.schemata WHERE schema_name = 'legacy_db'")"
  expect "innodb_flush_log_at_trx_commit with --innodb-flush-log-at-trx-commit=0" 0 \
    "$(m_tcp "$c" root "$pw" "" 'SELECT @@innodb_flush_log_at_trx_commit')"
  expect "max_connections with --max-connections=42" 42 "$(m_tcp "$c" root "$pw" "" 'SELECT @@max_connections')"
  expect "log_bin with --skip-log-bin" 0 "$(m_tcp "$c" root "$pw" "" 'SELECT @@log_bin')"
  docker rm -f "$c" >/dev/null

  # 6. MARIADB_RANDOM_ROOT_PASSWORD: printed once, then used
  MARIADB_RANDOM_ROOT_PASSWORD=yes m_start MARIADB_RANDOM_ROOT_PASSWORD --
  local deadline=$((SECONDS + 60)) rpw=
  until rpw=$(docker logs "$c" 2>/dev/null | sed -n 's/^GENERATED ROOT PASSWORD: //p') && [[ -n $rpw ]]; do
    ((SECONDS < deadline)) || die "no GENERATED ROOT PASSWORD line in the log within 60s"
    sleep 0.5
  done
  m_wait_ready "$c" "$rpw"
  log "ok: MARIADB_RANDOM_ROOT_PASSWORD generated a working root password"
  docker rm -f "$c" >/dev/null

  # 7. other commands run as they are; no password refuses to start
  v=$(docker run --rm --network none "$IMAGE" mariadb --version) || die "docker run $IMAGE mariadb --version failed"
  log "ok: docker run IMAGE mariadb --version: $v"
  if out=$(docker run --rm --network none "$IMAGE" 2>&1); then
    die "container started without a root password"
  fi
  [[ $out == *"password option is not specified"* ]] || die "unexpected error without a root password: $out"
  log "ok: refuses to start without MARIADB_ROOT_PASSWORD"

  log "all image tests passed for $IMAGE in $((SECONDS - t0))s"
}

if [[ ${1:-} == mariadb ]]; then
  (($# == 1)) || die "usage: $PROG [MAJOR|mariadb]"
  test_mariadb
  exit 0
fi

# -----------------------------------------------------------------------------
# PostgreSQL
# -----------------------------------------------------------------------------
MAJOR=${1:-15}
IMAGE=${DRILL_IMAGE_REPO:-drill-postgres}:$MAJOR
PASSWORD=secret-$RANDOM$RANDOM
USER_=drill_sandbox

docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; run scripts/build-image.sh $MAJOR"
command -v psql >/dev/null || die "psql not installed on the host; run scripts/install-deps.sh"

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
