#!/usr/bin/env bash
# Build drill's PostgreSQL sandbox image without any container registry:
#   mmdebstrap (Debian packages from the Debian mirror) | docker import
#
# Usage: scripts/build-image.sh [MAJOR]      MAJOR = 15 (default, bookworm)
#                                                   or 17 (trixie)
#
# The result, drill-postgres:MAJOR, is a drop-in for the parts of the official
# Docker Hub "postgres" image that drill uses (see
# docker/postgres/docker-entrypoint.sh): POSTGRES_PASSWORD / POSTGRES_USER /
# POSTGRES_DB / PGDATA, "docker run IMAGE -c fsync=off", en_US.UTF-8 locale,
# PATH with the server binaries (postgres, initdb, pg_ctl, pg_restore,
# pg_amcheck, psql, ...), gzip and zstd.
#
# The image carries LABEL drill.image-recipe=<sha256 of this script and the
# entrypoint>; when an image with that tag and recipe already exists the
# build is skipped, so re-running is cheap. Any change to either file
# triggers a rebuild.
#
# Environment:
#   DRILL_IMAGE_REPO              image name (default drill-postgres)
#   DRILL_REBUILD=1               rebuild even when the recipe is unchanged
#   DRILL_DEBIAN_MIRROR           default http://deb.debian.org/debian
#   DRILL_DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   DRILL_SKIP_SMOKE_TEST=1       do not start a container to test the image
set -euo pipefail

PROG=build-image.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

SELF=$(readlink -f -- "${BASH_SOURCE[0]}")
REPO_ROOT=$(dirname -- "$(dirname -- "$SELF")")
ENTRYPOINT_SRC=$REPO_ROOT/docker/postgres/docker-entrypoint.sh

# -----------------------------------------------------------------------------
# mmdebstrap hooks. mmdebstrap runs them as separate processes; they re-enter
# this script so that the whole recipe lives (and is hashed) in one file.
# $2 is the root directory of the chroot being built (root mode: a real dir).
# -----------------------------------------------------------------------------
hook_setup() {
  local root=$1
  # Keep postgresql-common from creating (initdb-ing) a "main" cluster when
  # postgresql-$MAJOR is installed; the entrypoint creates PGDATA itself.
  # createcluster.conf has "include_dir '/etc/postgresql-common/createcluster.d'".
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  printf 'create_main_cluster = false\n' \
    >"$root/etc/postgresql-common/createcluster.d/50-drill-no-main-cluster.conf"
}

hook_customize() {
  local root=$1 in=(chroot "$1")
  : "${DRILL_PG_MAJOR:?}" "${DRILL_BUILD_STATE:?}"
  local major=$DRILL_PG_MAJOR

  # Locales: en_US.UTF-8 exactly like the official image; C.UTF-8 ships
  # precompiled with libc-bin and must keep working.
  "${in[@]}" localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
  local locales
  locales=$("${in[@]}" locale -a)
  grep -qx 'en_US.utf8' <<<"$locales" || die "hook: en_US.utf8 missing after localedef (have: $locales)"
  grep -qx 'C.utf8' <<<"$locales" || die "hook: C.utf8 locale missing (have: $locales)"
  local err
  err=$("${in[@]}" env -i LC_ALL=C.UTF-8 locale 2>&1 >/dev/null)
  [[ -z $err ]] || die "hook: LC_ALL=C.UTF-8 does not work: $err"
  err=$("${in[@]}" env -i LC_ALL=en_US.UTF-8 locale 2>&1 >/dev/null)
  [[ -z $err ]] || die "hook: LC_ALL=en_US.UTF-8 does not work: $err"

  # The entrypoint.
  install -D -m 0755 -o root -g root "$ENTRYPOINT_SRC" "$root/usr/local/bin/docker-entrypoint.sh"

  # No cluster must have been created by the package scripts; remove one if
  # it was anyway (e.g. a postgresql-common that ignores createcluster.d).
  if [[ -e $root/etc/postgresql/$major/main || -e $root/var/lib/postgresql/$major/main ]]; then
    log "hook: removing the Debian 'main' cluster created by postgresql-$major"
    rm -rf "$root/etc/postgresql/$major/main" "$root/var/lib/postgresql/$major/main"
  fi
  rm -f "$root/etc/postgresql-common/createcluster.d/50-drill-no-main-cluster.conf"

  # /run is emptied here instead of by mmdebstrap (--skip=cleanup/run) so
  # that the socket directory survives. Operate through chroot: /var/run is
  # an absolute symlink to /run.
  find "$root/run" -mindepth 1 -delete
  "${in[@]}" install -d -m 1777 /run/lock
  "${in[@]}" install -d -o postgres -g postgres -m 2777 /var/run/postgresql
  "${in[@]}" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data

  # Host-specific files copied in by mmdebstrap; Docker bind-mounts its own.
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  rm -rf "$root"/var/log/apt/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old

  # Sanity checks of the finished tree.
  local b
  for b in postgres initdb pg_ctl pg_restore pg_amcheck psql; do
    [[ -x $root/usr/lib/postgresql/$major/bin/$b ]] || die "hook: /usr/lib/postgresql/$major/bin/$b missing"
  done
  for b in gzip zstd setpriv bash; do
    "${in[@]}" sh -c "command -v $b" >/dev/null || die "hook: $b missing from the image"
  done
  # shellcheck disable=SC2016 # dpkg-query format, not a shell expansion
  "${in[@]}" dpkg-query -W -f='${Version}' "postgresql-$major" >"$DRILL_BUILD_STATE/pg-version"
}

case ${1:-} in
  __hook_setup) hook_setup "$2"; exit 0 ;;
  __hook_customize) hook_customize "$2"; exit 0 ;;
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; exit 0 ;;
esac

# -----------------------------------------------------------------------------
# main
# -----------------------------------------------------------------------------
MAJOR=${1:-15}
case $MAJOR in
  15) SUITE=bookworm ;;
  17) SUITE=trixie ;;
  *) die "unsupported PostgreSQL major '$MAJOR' (supported: 15 = Debian bookworm, 17 = Debian trixie)" ;;
esac
(($# <= 1)) || die "usage: $PROG [MAJOR]"

REPO=${DRILL_IMAGE_REPO:-drill-postgres}
TAG=$REPO:$MAJOR
MIRROR=${DRILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DRILL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

[[ -r $ENTRYPOINT_SRC ]] || die "entrypoint $ENTRYPOINT_SRC not found"
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap root mode); try: sudo $0 $*"
command -v mmdebstrap >/dev/null || die "mmdebstrap not installed; run scripts/install-deps.sh"
command -v docker >/dev/null || die "docker CLI not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is unreachable (docker info failed)"

RECIPE=$(cat -- "$SELF" "$ENTRYPOINT_SRC" | sha256sum | cut -d' ' -f1)

current=$(docker image inspect --format '{{index .Config.Labels "drill.image-recipe"}}' "$TAG" 2>/dev/null || true)
if [[ $current == "$RECIPE" && ${DRILL_REBUILD:-0} != 1 ]]; then
  log "$TAG is up to date (recipe ${RECIPE:0:12}); nothing to build"
  printf '%s\n' "$TAG"
  exit 0
fi
if [[ -n $current ]]; then
  log "$TAG exists with a different recipe (${current:0:12} != ${RECIPE:0:12}); rebuilding"
fi
old_id=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)

DRILL_BUILD_STATE=$(mktemp -d /tmp/drill-build-image.XXXXXX)
import_id="" new_id="" BUILD_OK=0
cleanup() {
  rm -rf -- "$DRILL_BUILD_STATE"
  # a failed build must not leave half-built images behind
  if [[ $BUILD_OK != 1 ]]; then
    local i
    for i in $new_id $import_id; do docker rmi -f "$i" >/dev/null 2>&1 || true; done
  fi
}
trap cleanup EXIT
export DRILL_PG_MAJOR=$MAJOR DRILL_BUILD_STATE

case $SUITE in
  bookworm | trixie)
    MIRRORS=(
      "deb $MIRROR $SUITE main"
      "deb $MIRROR $SUITE-updates main"
      "deb $SECURITY_MIRROR $SUITE-security main"
    ) ;;
esac

MMDEBSTRAP=(
  mmdebstrap
  --mode=root
  --variant=apt
  --format=tar
  --include="postgresql-$MAJOR,postgresql-client-$MAJOR,locales,util-linux,gzip,zstd"
  --aptopt='Acquire::Retries "3"'
  --aptopt='Acquire::Languages "none"'
  # keep the image small: no docs (but keep copyrights), man pages or
  # message translations (locale.alias is needed by localedef)
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --setup-hook="\"$SELF\" __hook_setup \"\$1\""
  --customize-hook="\"$SELF\" __hook_customize \"\$1\""
  --skip=cleanup/run
  "$SUITE" -
  "${MIRRORS[@]}"
)

# Image config. docker import --change accepts only CMD, ENTRYPOINT, ENV,
# EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR (and HEALTHCHECK); the engine
# rejects "STOPSIGNAL" ("stopsignal is not a valid change command"), so that
# one is set by a metadata-only build step below.
CHANGES=(
  --change "ENV PATH=/usr/lib/postgresql/$MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --change "ENV PG_MAJOR=$MAJOR"
  --change "ENV PGDATA=/var/lib/postgresql/data"
  --change "ENV LANG=en_US.utf8"
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]'
  --change 'CMD ["postgres"]'
  --change "EXPOSE 5432"
  --change "LABEL drill.image-recipe=$RECIPE"
)

log "building $TAG from Debian $SUITE (postgresql-$MAJOR) with mmdebstrap | docker import"
start=$SECONDS
# mmdebstrap runs in its own session (setsid): on failure it sends SIGHUP to
# its whole process group, which would otherwise also kill this script and
# whatever started it. docker import prints the new image id; pipefail makes
# a failing mmdebstrap fail the pipeline even if docker import accepted the
# truncated stream, and the EXIT trap then deletes that image.
set +e
import_id=$(setsid --wait "${MMDEBSTRAP[@]}" | docker import "${CHANGES[@]}" --message "drill $TAG recipe $RECIPE" -)
status=$?
set -e
[[ $status -eq 0 ]] || die "mmdebstrap | docker import failed (exit $status)"
[[ $import_id == sha256:* ]] || die "docker import returned no image id (got '$import_id')"
pg_version=$(cat "$DRILL_BUILD_STATE/pg-version" 2>/dev/null || true)
[[ -n $pg_version ]] || die "the customize hook did not run to completion"
log "imported $import_id after $((SECONDS - start))s"

# STOPSIGNAL SIGINT (postgres "fast" shutdown, as in the official image):
# a metadata-only build on top of the local image; the classic builder needs
# no registry and no buildx. It adds no layer.
if ! new_id=$(printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$import_id" \
  | DOCKER_BUILDKIT=0 docker build --quiet - 2>"$DRILL_BUILD_STATE/build.err"); then
  cat "$DRILL_BUILD_STATE/build.err" >&2
  die "docker build (STOPSIGNAL step) failed"
fi
[[ $new_id == sha256:* ]] || die "docker build returned no image id (got '$new_id')"
[[ $(docker image inspect --format '{{.Config.StopSignal}}' "$new_id") == SIGINT ]] \
  || die "the built image has no STOPSIGNAL SIGINT"

if [[ ${DRILL_SKIP_SMOKE_TEST:-0} != 1 ]]; then
  out=$(docker run --rm --network none --entrypoint sh "$new_id" -c \
    'postgres --version && pg_restore --version && locale -a | grep -qx en_US.utf8 && command -v docker-entrypoint.sh' 2>&1) \
    || die "smoke test of the new image failed: $out"
  log "smoke test ok: $(head -n1 <<<"$out")"
fi

docker tag "$new_id" "$TAG"
BUILD_OK=1
if [[ -n $old_id && $old_id != "$new_id" ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || log "note: could not remove the previous image $old_id (in use?)"
fi

elapsed=$((SECONDS - start))
size=$(docker image inspect --format '{{.Size}}' "$TAG")
log "built $TAG (postgresql-$MAJOR $pg_version, $((size / 1000000)) MB, recipe ${RECIPE:0:12}) in ${elapsed}s"
printf '%s\n' "$TAG"
