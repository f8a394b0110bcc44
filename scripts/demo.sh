#!/usr/bin/env bash
# The demo: a real drill, end to end, on Pagila and the five seed systems
# (PostgreSQL) and a MariaDB dump with two binlog increments.
#
#   1. scripts/setup.sh    Debian packages, restic 0.18, the offline
#                          PostgreSQL and MariaDB images, the fixture dumps
#   2. cargo build         the drill binary
#   3. restic              a fresh repository in demo/repo with one snapshot
#                          holding the dumps under /dumps/
#   4. drill               restore every dump into its own sandbox, run the
#                          shipped checks, write the report under reports/
#
# Exits with drill's exit code (0 = the drill passed).
set -euo pipefail
cd "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/.."

log() { printf 'demo.sh: %s\n' "$*" >&2; }

scripts/setup.sh
log "building drill"
cargo build --release --locked

log "backing up the fixture dumps with restic into demo/repo"
rm -rf demo
mkdir -p demo/stage/dumps
for f in frame-postgres.sql index-postgres.sql.gz hive-postgres.sql \
         mysrt-postgres.sql.zst blueprint-postgres.dump pagila.dump; do
  cp "fixtures/dumps/$f" demo/stage/dumps/
done
# MariaDB: the nightly full dump and the binlog increments since.
cp fixtures/dumps/mariadb/gym-full.sql.gz fixtures/dumps/mariadb/increments/incremental_*.sql \
  demo/stage/dumps/
( umask 077; head -c 32 /dev/urandom | base64 > demo/restic-password )
export RESTIC_REPOSITORY="$PWD/demo/repo" RESTIC_PASSWORD_FILE="$PWD/demo/restic-password"
restic init --quiet
( cd demo/stage && restic backup --quiet --host demo dumps )
restic snapshots --compact
unset RESTIC_REPOSITORY RESTIC_PASSWORD_FILE

log "running: target/release/drill --config examples/demo.toml --tier local"
rc=0
target/release/drill --config examples/demo.toml --tier local \
  --junit reports/junit.xml --metrics reports/drill.prom || rc=$?
log "drill exited with $rc; reports are in reports/ (JSON, Markdown, HTML, history.csv, junit.xml, drill.prom)"
log "rendering the history page: target/release/drill --config examples/demo.toml report"
target/release/drill --config examples/demo.toml report
exit $rc
