#!/usr/bin/env bash
# One-stop set-up for drill's demo and tests on a Debian bookworm host:
#   1. scripts/install-deps.sh   Debian packages, restic 0.18, Docker check
#   2. scripts/build-image.sh 15, 17 and mariadb: drill-postgres:15 and :17,
#      drill-mariadb:10.11 (each skipped when up to date); after a fresh
#      build, scripts/test-image.sh exercises it
#   3. fixtures/generate.sh      test fixtures (only if present and executable)
# Idempotent: when everything is in place it takes a few seconds.
# Prints one summary line per step with its elapsed time.
set -euo pipefail

PROG=setup.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

SCRIPTS=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
REPO_ROOT=$(dirname -- "$SCRIPTS")
PG_MAJORS=(15 17)
MARIADB_TAG=10.11 # bookworm's MariaDB major.minor, as in build-image.sh
export LC_NUMERIC=C   # "." in $EPOCHREALTIME

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (and sudo is not available)"
  log "not root; re-running with sudo"
  exec sudo --preserve-env -- "$0" "$@"
fi

SUMMARY=()
run_step() { # name command...
  local name=$1; shift
  local t0=$EPOCHREALTIME rc=0
  log "--- $name: $*"
  "$@" || rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 0)); then
    SUMMARY+=("ok      $name (${secs}s)")
    log "ok: $name (${secs}s)"
  else
    SUMMARY+=("FAILED  $name (${secs}s, exit $rc)")
    print_summary
    die "step '$name' failed (exit $rc) after ${secs}s"
  fi
}
print_summary() {
  local l
  for l in "${SUMMARY[@]}"; do log "$l"; done
}

T0=$EPOCHREALTIME
run_step install-deps "$SCRIPTS/install-deps.sh"

# build_image IMAGE TARGET: scripts/build-image.sh TARGET, which makes IMAGE;
# scripts/test-image.sh TARGET when that changed the image.
build_image() {
  local image=$1 target=$2 before after
  before=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  run_step "build-image $target" "$SCRIPTS/build-image.sh" "$target"
  after=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
  if [[ $before != "$after" ]]; then
    run_step "test-image $target (new image)" "$SCRIPTS/test-image.sh" "$target"
  else
    SUMMARY+=("skipped test-image $target (image unchanged)")
  fi
}

# drill-postgres:15 is the tests' default sandbox; :17 holds the newer
# pg_dump the version tests dump with (and the {major} template picks).
for major in "${PG_MAJORS[@]}"; do
  build_image "${DRILL_IMAGE_REPO:-drill-postgres}:$major" "$major"
done
# drill-mariadb:10.11: the MariaDB sandbox
build_image "${DRILL_MARIADB_IMAGE_REPO:-drill-mariadb}:$MARIADB_TAG" mariadb

GEN=$REPO_ROOT/fixtures/generate.sh
if [[ -f $GEN && -x $GEN ]]; then
  run_step fixtures "$GEN"
elif [[ -e $GEN ]]; then
  die "$GEN exists but is not executable (chmod +x it)"
else
  SUMMARY+=("skipped fixtures (fixtures/generate.sh not present)")
fi

print_summary
log "done in $(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')s"
