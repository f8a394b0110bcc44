#!/usr/bin/env bash
# Build drill's PostgreSQL (or MariaDB) sandbox image without any container
# registry:
#   mmdebstrap (Debian packages from the Debian mirror) | docker import
#
# Usage: scripts/build-image.sh [MAJOR]      MAJOR = 15 (default, bookworm)
#                                                   or 17 (trixie)
#        scripts/build-image.sh mariadb      MariaDB 10.11 (bookworm)
#
# The result, drill-postgres:MAJOR, is a drop-in for the parts of the official
# Docker Hub "postgres" image that drill uses (see
# docker/postgres/docker-entrypoint.sh): POSTGRES_PASSWORD / POSTGRES_USER /
# POSTGRES_DB / PGDATA, "docker run IMAGE -c fsync=off", en_US.UTF-8 locale,
# PATH with the server binaries (postgres, initdb, pg_ctl, pg_restore,
# pg_amcheck, psql, ...), gzip and zstd.
#
# "mariadb" builds drill-mariadb:10.11 (the major.minor of bookworm's
# mariadb-server), a drop-in for the parts of the official "mariadb" image
# that drill uses (see docker/mariadb/docker-entrypoint.sh):
# MARIADB_ROOT_PASSWORD / MARIADB_DATABASE / MARIADB_USER / MARIADB_PASSWORD
# (or MYSQL_*), data in /var/lib/mysql, "docker run IMAGE --opt=value" passed
# to mariadbd, listening on 0.0.0.0:3306 and /run/mysqld/mysqld.sock,
# ENV MARIADB_MAJOR / MARIADB_VERSION, LANG=C.UTF-8, the clients (mariadb,
# mariadb-dump, mariadb-binlog alias mysqlbinlog, mariadb-check, ...), gzip,
# zstd and tzdata.
#
# The image carries LABEL drill.image-recipe=<sha256 of this script and the
# entrypoint>; when an image with that tag and recipe already exists the
# build is skipped, so re-running is cheap. Any change to either file
# triggers a rebuild.
#
# Environment:
#   DRILL_IMAGE_REPO              image name (default drill-postgres)
#   DRILL_MARIADB_IMAGE_REPO      image name for mariadb (default drill-mariadb)
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
# which image: postgres or mariadb (set by main, inherited by the hooks)
entrypoint_src() { printf '%s/docker/%s/docker-entrypoint.sh' "$REPO_ROOT" "$1"; }

# -----------------------------------------------------------------------------
# mmdebstrap hooks. mmdebstrap runs them as separate processes; they re-enter
# this script so that the whole recipe lives (and is hashed) in one file.
# $2 is the root directory of the chroot being built (root mode: a real dir).
# -----------------------------------------------------------------------------
hook_setup_postgres() {
  local root=$1
  # Keep postgresql-common from creating (initdb-ing) a "main" cluster when
  # postgresql-$MAJOR is installed; the entrypoint creates PGDATA itself.
  # createcluster.conf has "include_dir '/etc/postgresql-common/createcluster.d'".
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  printf 'create_main_cluster = false\n' \
    >"$root/etc/postgresql-common/createcluster.d/50-drill-no-main-cluster.conf"
}

hook_customize_postgres() {
  local root=$1 in=(chroot "$1")
  : "${DRILL_PG_MAJOR:?}" "${DRILL_BUILD_STATE:?}"
  local major=$DRILL_PG_MAJOR
  local ENTRYPOINT_SRC
  ENTRYPOINT_SRC=$(entrypoint_src postgres)

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

hook_setup_mariadb() {
  local root=$1
  # As the official image does: a data directory that looks initialised
  # keeps mariadb-server's postinst from running mariadb-install-db (it
  # stops at an existing mysql/user.frm); the entrypoint initialises
  # /var/lib/mysql itself, and the customize hook empties it again.
  mkdir -p "$root/var/lib/mysql/mysql"
  : >"$root/var/lib/mysql/mysql/user.frm"
}

hook_customize_mariadb() {
  local root=$1 in=(chroot "$1")
  : "${DRILL_BUILD_STATE:?}"
  local conf=$root/etc/mysql err

  # LANG=C.UTF-8 like the official image; it ships precompiled with libc-bin.
  err=$("${in[@]}" env -i LC_ALL=C.UTF-8 locale 2>&1 >/dev/null)
  [[ -z $err ]] || die "hook: LC_ALL=C.UTF-8 does not work: $err"

  # The entrypoint.
  install -D -m 0755 -o root -g root "$(entrypoint_src mariadb)" "$root/usr/local/bin/docker-entrypoint.sh"

  # Listen on all interfaces: Debian's 50-server.cnf binds 127.0.0.1. Like
  # the official image, comment out bind-address (and log*/user lines, none
  # active in bookworm) in the packaged files; the drop-in below sets
  # 0.0.0.0 and, as there, no reverse DNS look-ups of clients.
  grep -Eq '^bind-address[[:space:]]*=[[:space:]]*127\.0\.0\.1' "$conf/mariadb.conf.d/50-server.cnf" \
    || die "hook: $conf/mariadb.conf.d/50-server.cnf no longer sets bind-address = 127.0.0.1; check the recipe"
  local f
  while IFS= read -r -d '' f; do
    sed -Ei 's/^(bind-address|log|user[[:space:]])/#&/' "$f"
  done < <(find "$conf" -name '*.cnf' -type f -print0)
  cat >"$conf/mariadb.conf.d/05-drill-docker.cnf" <<'EOF'
# drill's sandbox image (scripts/build-image.sh mariadb), as the official
# "mariadb" image: listen on all interfaces (Debian's bind-address = 127.0.0.1
# in 50-server.cnf is commented out) and do not resolve client host names.
[mariadb]
bind-address = 0.0.0.0
host-cache-size = 0
skip-name-resolve
EOF
  chmod 0644 "$conf/mariadb.conf.d/05-drill-docker.cnf"
  # Files mounted into /etc/mysql/conf.d override the packaged ones (the
  # official image reads conf.d last too; Debian reads it first).
  local cnf=$conf/mariadb.cnf
  if ! grep -qx '!includedir /etc/mysql/conf.d/' "$cnf" || ! grep -qx '!includedir /etc/mysql/mariadb.conf.d/' "$cnf"; then
    die "hook: $cnf lacks the expected !includedir lines"
  fi
  sed -i -e '\|^!includedir /etc/mysql/conf.d/$|d' \
    -e '\|^!includedir /etc/mysql/mariadb.conf.d/$|a !includedir /etc/mysql/conf.d/' "$cnf"
  [[ $(grep '^!includedir' "$cnf") == $'!includedir /etc/mysql/mariadb.conf.d/\n!includedir /etc/mysql/conf.d/' ]] \
    || die "hook: reordering the !includedir lines of $cnf failed"
  local defaults
  defaults=$("${in[@]}" mariadbd --print-defaults)
  [[ $defaults == *--bind-address=0.0.0.0* && $defaults != *--bind-address=127.0.0.1* && $defaults == *--skip-name-resolve* ]] \
    || die "hook: unexpected server defaults: $defaults"

  # An empty data directory (the entrypoint runs mariadb-install-db) and the
  # socket directory. /run is emptied here instead of by mmdebstrap
  # (--skip=cleanup/run) so that the socket directory survives; 1777 as in
  # the official image, for servers run under another uid.
  rm -rf "$root/var/lib/mysql"
  "${in[@]}" install -d -o mysql -g mysql -m 0755 /var/lib/mysql
  find "$root/run" -mindepth 1 -delete
  "${in[@]}" install -d -m 1777 /run/lock
  "${in[@]}" install -d -o mysql -g mysql -m 1777 /run/mysqld

  # Host-specific files copied in by mmdebstrap; Docker bind-mounts its own.
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  rm -rf "$root"/var/log/apt/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old

  # Sanity checks of the finished tree.
  local b
  for b in mariadbd mariadb-install-db mariadb-tzinfo-to-sql mariadb mariadb-dump mariadb-binlog \
    mysqlbinlog mariadb-check mariadb-admin gzip zstd setpriv bash; do
    "${in[@]}" sh -c "command -v $b" >/dev/null || die "hook: $b missing from the image"
  done
  [[ -d $root/usr/share/zoneinfo ]] || die "hook: /usr/share/zoneinfo missing (tzdata)"
  # shellcheck disable=SC2016 # dpkg-query format, not a shell expansion
  "${in[@]}" dpkg-query -W -f='${Version}' mariadb-server >"$DRILL_BUILD_STATE/mariadb-version"
}

case ${1:-} in
  __hook_setup) "hook_setup_${DRILL_IMAGE_KIND:?}" "$2"; exit 0 ;;
  __hook_customize) "hook_customize_${DRILL_IMAGE_KIND:?}" "$2"; exit 0 ;;
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"; exit 0 ;;
esac

# -----------------------------------------------------------------------------
# main
# -----------------------------------------------------------------------------
TARGET=${1:-15}
case $TARGET in
  15) KIND=postgres SUITE=bookworm ;;
  17) KIND=postgres SUITE=trixie ;;
  mariadb) KIND=mariadb SUITE=bookworm ;;
  *) die "unsupported image '$TARGET' (supported: PostgreSQL majors 15 = Debian bookworm and 17 = Debian trixie; mariadb = MariaDB 10.11, Debian bookworm)" ;;
esac
(($# <= 1)) || die "usage: $PROG [15|17|mariadb]"

MIRROR=${DRILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DRILL_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ENTRYPOINT_SRC=$(entrypoint_src "$KIND")

# Per image: tag, packages, image config (docker import --change accepts only
# CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR and
# HEALTHCHECK), the metadata-only build steps on top (BUILD_STEPS, see below)
# and the smoke test.
case $KIND in
  postgres)
    MAJOR=$TARGET
    REPO=${DRILL_IMAGE_REPO:-drill-postgres}
    TAG=$REPO:$MAJOR
    WHAT=postgresql-$MAJOR
    INCLUDE="postgresql-$MAJOR,postgresql-client-$MAJOR,locales,util-linux,gzip,zstd"
    CHANGES=(
      --change "ENV PATH=/usr/lib/postgresql/$MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
      --change "ENV PG_MAJOR=$MAJOR"
      --change "ENV PGDATA=/var/lib/postgresql/data"
      --change "ENV LANG=en_US.utf8"
      --change 'ENTRYPOINT ["docker-entrypoint.sh"]'
      --change 'CMD ["postgres"]'
      --change "EXPOSE 5432"
    )
    # STOPSIGNAL SIGINT: postgres "fast" shutdown, as in the official image.
    # The engine rejects it in docker import --change ("stopsignal is not a
    # valid change command").
    BUILD_STEPS='STOPSIGNAL SIGINT'
    VERSION_FILE=pg-version
    SMOKE='postgres --version && pg_restore --version && locale -a | grep -qx en_US.utf8 && command -v docker-entrypoint.sh'
    export DRILL_PG_MAJOR=$MAJOR
    ;;
  mariadb)
    # The tag is bookworm's MariaDB major.minor; the build checks that the
    # installed mariadb-server is 1:$MARIADB_MAJOR.x.
    MARIADB_MAJOR=10.11
    REPO=${DRILL_MARIADB_IMAGE_REPO:-drill-mariadb}
    TAG=$REPO:$MARIADB_MAJOR
    WHAT=mariadb-server
    # tzdata: the time zone tables the entrypoint loads, as the official image
    INCLUDE="mariadb-server,mariadb-client,util-linux,tzdata,gzip,zstd"
    CHANGES=(
      --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
      --change "ENV MARIADB_MAJOR=$MARIADB_MAJOR"
      --change "ENV LANG=C.UTF-8"
      --change 'ENTRYPOINT ["docker-entrypoint.sh"]'
      --change 'CMD ["mariadbd"]'
      --change "EXPOSE 3306"
    )
    # MARIADB_VERSION (the full Debian version, as the official image sets
    # its own) is known only once the packages are installed. The default
    # SIGTERM is mariadbd's normal shutdown.
    BUILD_STEPS= # filled in after the import
    VERSION_FILE=mariadb-version
    # (mariadbd warns on stderr that --network none leaves no MAC address)
    SMOKE='mariadbd --version 2>/dev/null && mariadb --version && mariadb-dump --version && command -v docker-entrypoint.sh'
    ;;
esac

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
export DRILL_IMAGE_KIND=$KIND DRILL_BUILD_STATE

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
  --include="$INCLUDE"
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
CHANGES+=(--change "LABEL drill.image-recipe=$RECIPE")

log "building $TAG from Debian $SUITE ($WHAT) with mmdebstrap | docker import"
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
version=$(cat "$DRILL_BUILD_STATE/$VERSION_FILE" 2>/dev/null || true)
[[ -n $version ]] || die "the customize hook did not run to completion"
log "imported $import_id after $((SECONDS - start))s"

if [[ $KIND == mariadb ]]; then
  [[ $version == "1:$MARIADB_MAJOR."* ]] \
    || die "Debian $SUITE's mariadb-server is $version, not $MARIADB_MAJOR.x: update MARIADB_MAJOR (the tag) in $PROG"
  BUILD_STEPS="ENV MARIADB_VERSION=$version"
fi

# The image settings docker import cannot make (BUILD_STEPS): a metadata-only
# build on top of the local image; the classic builder needs no registry and
# no buildx. It adds no layer.
if ! new_id=$(printf 'FROM %s\n%s\n' "$import_id" "$BUILD_STEPS" \
  | DOCKER_BUILDKIT=0 docker build --quiet - 2>"$DRILL_BUILD_STATE/build.err"); then
  cat "$DRILL_BUILD_STATE/build.err" >&2
  die "docker build ($BUILD_STEPS) failed"
fi
[[ $new_id == sha256:* ]] || die "docker build returned no image id (got '$new_id')"
case $KIND in
  postgres)
    [[ $(docker image inspect --format '{{.Config.StopSignal}}' "$new_id") == SIGINT ]] \
      || die "the built image has no STOPSIGNAL SIGINT" ;;
  mariadb)
    docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$new_id" \
      | grep -qxF "MARIADB_VERSION=$version" || die "the built image has no ENV MARIADB_VERSION=$version" ;;
esac

if [[ ${DRILL_SKIP_SMOKE_TEST:-0} != 1 ]]; then
  out=$(docker run --rm --network none --entrypoint sh "$new_id" -c "$SMOKE" 2>&1) \
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
log "built $TAG ($WHAT $version, $((size / 1000000)) MB, recipe ${RECIPE:0:12}) in ${elapsed}s"
printf '%s\n' "$TAG"
