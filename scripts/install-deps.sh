#!/usr/bin/env bash
# Install everything drill's tests and demo need on a Debian bookworm host:
#   - Debian packages (mmdebstrap, PostgreSQL 15 server+client, MariaDB
#     server+client for the MariaDB fixtures, zstd, gzip, OpenSSH
#     server+client for the sftp test, CA certificates, xmllint and
#     Prometheus' Python client for the tests of the JUnit and metrics files)
#   - restic 0.18 as /usr/local/bin/restic, taken from Debian trixie's restic
#     package WITHOUT adding trixie to the system's apt sources
# and verify that the Docker engine is reachable.
#
# Idempotent: when everything is already in place it only runs the checks
# (a few seconds). Must run as root (or via sudo).
#
# Environment:
#   DRILL_DEBIAN_MIRROR   Debian mirror for the trixie restic download
#                         (default http://deb.debian.org/debian)
#   DRILL_RESTIC_SERIES   restic version series to require (default 0.18)
set -euo pipefail

PROG=install-deps.sh
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }

MIRROR="${DRILL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RESTIC_SERIES="${DRILL_RESTIC_SERIES:-0.18}"
RESTIC_BIN=/usr/local/bin/restic
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
TRIXIE_APT=/var/cache/drill-apt-trixie
PG_MAJOR=15

# Debian packages we need. uidmap is deliberately absent: mmdebstrap runs in
# root mode here and does not need newuidmap/newgidmap.
PACKAGES=(
  mmdebstrap
  mount                      # mmdebstrap root mode mounts /proc, /sys, /dev
  debian-archive-keyring     # must contain the trixie key (see below)
  ca-certificates
  "postgresql-$PG_MAJOR"
  "postgresql-client-$PG_MAJOR"
  "postgresql-$PG_MAJOR-ip4r"  # an extension the sandbox image lacks (fixtures/ext-ip4r.sql)
  zstd
  gzip
  openssh-client
  openssh-server             # only installed, never enabled/started by us
  mariadb-server             # fixtures/generate-mariadb.sh runs its own throwaway
  mariadb-client             # mariadbd; the packaged service is never left enabled/running
  python3-prometheus-client  # tests parse the metrics file with Prometheus' own parser
  libxml2-utils              # xmllint: tests validate the JUnit XML against fixtures/junit/jenkins-junit.xsd
  chromium                   # tests render the history page in a real headless browser
  systemd                    # systemd-analyze: tests verify the generated units and calendars
)

if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (and sudo is not available)"
  log "not root; re-running with sudo"
  exec sudo --preserve-env=DRILL_DEBIAN_MIRROR,DRILL_RESTIC_SERIES -- "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive

TMPDIRS=()
POLICY_RC_CREATED=0
cleanup() {
  local d
  for d in "${TMPDIRS[@]}"; do rm -rf -- "$d"; done
  if [[ $POLICY_RC_CREATED -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

# apt-get with a few retries for flaky networks.
apt_retry() {
  local i
  for i in 1 2 3; do
    if apt-get "$@"; then return 0; fi
    log "apt-get $1 failed (attempt $i/3)"
    sleep $((i * 5))
  done
  return 1
}

is_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

sshd_running() { pgrep -x sshd >/dev/null 2>&1; }
# PIDs of running MariaDB servers, space-separated (empty when none).
mariadbd_pids() { pgrep -x 'mariadbd|mysqld' 2>/dev/null | tr '\n' ' ' || true; }

# --- 1. Debian packages ------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
  log "installing missing packages: ${missing[*]}"
  sshd_was_running=0
  sshd_running && sshd_was_running=1
  mariadbd_before=$(mariadbd_pids)

  # Keep package installs from starting services (sshd, the Debian
  # "main" PostgreSQL cluster): invoke-rc.d honours policy-rc.d exit 101.
  # An existing policy-rc.d (container images ship one) is left alone.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, created by drill %s\nexit 101\n' "$PROG" >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi

  apt_retry update -q || die "apt-get update failed"
  apt_retry install -q -y --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"

  if [[ $POLICY_RC_CREATED -eq 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=0
  fi

  # Do not leave an ssh daemon behind that we caused to start/enable.
  if [[ " ${missing[*]} " == *" openssh-server "* ]]; then
    # The package's postinst enables ssh.service for boot (symlinks only;
    # policy-rc.d stopped the start). Undo the enablement and, under a
    # running systemd, stop anything that came up anyway.
    if command -v systemctl >/dev/null 2>&1; then
      now=()
      [[ -d /run/systemd/system ]] && now=(--now)   # systemd is PID 1: also stop
      log "disabling ssh.service/ssh.socket enabled by the openssh-server package"
      systemctl disable "${now[@]}" ssh.service ssh.socket >/dev/null 2>&1 \
        || log "WARNING: 'systemctl disable ssh.service' failed; sshd may start at boot"
    fi
    if [[ $sshd_was_running -eq 0 ]] && sshd_running; then
      pid=""
      [[ -r /run/sshd.pid ]] && pid=$(cat /run/sshd.pid)
      if [[ -n $pid ]]; then
        log "stopping sshd (pid $pid) started by the openssh-server install"
        kill "$pid" || true
      else
        log "WARNING: an sshd is running that was not running before; not touching it"
      fi
    fi
  fi
  # The same for MariaDB: the mariadb-server package enables mariadb.service
  # (systemd symlinks, or sysv rc links) and tries to start it. Only our own
  # throwaway servers may run (fixtures/generate-mariadb.sh).
  if [[ " ${missing[*]} " == *" mariadb-server "* ]]; then
    if command -v systemctl >/dev/null 2>&1; then
      now=()
      [[ -d /run/systemd/system ]] && now=(--now)
      log "disabling mariadb.service enabled by the mariadb-server package"
      systemctl disable "${now[@]}" mariadb.service >/dev/null 2>&1 \
        || log "WARNING: 'systemctl disable mariadb.service' failed; MariaDB may start at boot"
    elif command -v update-rc.d >/dev/null 2>&1 && [[ -e /etc/init.d/mariadb ]]; then
      log "disabling the mariadb init script enabled by the mariadb-server package"
      update-rc.d mariadb disable >/dev/null 2>&1 \
        || log "WARNING: 'update-rc.d mariadb disable' failed; MariaDB may start at boot"
    fi
    # The packaged server writes /run/mysqld/mysqld.pid; any other mariadbd
    # (e.g. a fixture generator's) is not ours to stop.
    pid=""
    [[ -r /run/mysqld/mysqld.pid ]] && pid=$(cat /run/mysqld/mysqld.pid)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ " $mariadbd_before " != *" $pid "* ]]; then
      log "stopping mariadbd (pid $pid) started by the mariadb-server install"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then log "WARNING: mariadbd (pid $pid) is still running"; fi
    fi
  fi
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package $p is still not installed after apt-get install"
  done
else
  log "Debian packages already installed: ${PACKAGES[*]}"
fi

# --- 2. restic 0.18 from Debian trixie -------------------------------------
restic_ok() {
  [[ -x $RESTIC_BIN ]] || return 1
  local v
  v=$("$RESTIC_BIN" version 2>/dev/null) || return 1
  [[ $v =~ ^restic\ ${RESTIC_SERIES//./\\.}\.[0-9]+ ]]
}

if restic_ok; then
  log "restic already installed: $("$RESTIC_BIN" version)"
else
  log "installing restic $RESTIC_SERIES.x from Debian trixie into $RESTIC_BIN"
  # The bookworm debian-archive-keyring (>= 2023.3+deb12u1) carries the
  # trixie archive keys, so the trixie Release file is verified normally.
  # We do not fall back to [trusted=yes]; an old keyring is upgraded from
  # bookworm instead (the install above already pulled the newest one).
  [[ -r $KEYRING ]] || die "$KEYRING missing (package debian-archive-keyring)"
  if [[ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]]; then
    log "debian-archive-keyring lacks the trixie key; upgrading it from bookworm"
    apt_retry update -q || die "apt-get update failed"
    apt_retry install -q -y --no-install-recommends --only-upgrade debian-archive-keyring \
      || die "could not upgrade debian-archive-keyring"
    [[ -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] \
      || die "debian-archive-keyring still has no trixie key; cannot verify trixie"
  fi

  # Private apt state: its own sources list, package lists and cache, so the
  # system's apt configuration (/etc/apt, /var/lib/apt) is never touched and
  # nothing else is pulled from trixie.
  mkdir -p "$TRIXIE_APT/lists/partial" "$TRIXIE_APT/cache/archives/partial"
  printf 'deb [signed-by=%s] %s trixie main\n' "$KEYRING" "$MIRROR" >"$TRIXIE_APT/sources.list"
  if id _apt >/dev/null 2>&1; then
    chown _apt:root "$TRIXIE_APT/lists/partial" "$TRIXIE_APT/cache/archives/partial"
  fi
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$TRIXIE_APT/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$TRIXIE_APT/lists"
    -o "Dir::Cache=$TRIXIE_APT/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Get::List-Cleanup=true"
    # only Packages are needed; skip AppStream/Contents/translation indexes
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-large::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-large-hidpi::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
    -o "Acquire::Languages=none"
  )
  apt_retry "${APT_OPTS[@]}" update -q || die "apt-get update of the private trixie lists failed"

  work=$(mktemp -d /tmp/drill-restic.XXXXXX)
  TMPDIRS+=("$work")
  # apt downloads as the unprivileged _apt user; let it write here.
  if id _apt >/dev/null 2>&1; then chown _apt:root "$work"; fi
  (cd "$work" && apt_retry "${APT_OPTS[@]}" download -q restic) \
    || die "apt-get download restic (trixie) failed"
  deb=$(find "$work" -maxdepth 1 -name 'restic_*.deb' -print -quit)
  [[ -n $deb ]] || die "apt-get download produced no restic_*.deb"
  log "downloaded $(basename "$deb")"
  # The .deb holds usr/bin/restic (a Go binary linked only against libc,
  # Depends: libc6 >= 2.34; bookworm has 2.36) plus docs/man/completions.
  # Only the binary is installed; dpkg does not know about it.
  dpkg-deb -x "$deb" "$work/root"
  [[ -x $work/root/usr/bin/restic ]] || die "$(basename "$deb") has no usr/bin/restic"
  v=$("$work/root/usr/bin/restic" version) || die "the downloaded restic binary does not run"
  [[ $v =~ ^restic\ ${RESTIC_SERIES//./\\.}\. ]] \
    || die "trixie's restic is '$v', not $RESTIC_SERIES.x"
  install -D -m 0755 -o root -g root "$work/root/usr/bin/restic" "$RESTIC_BIN.new"
  mv -f "$RESTIC_BIN.new" "$RESTIC_BIN"
  restic_ok || die "$RESTIC_BIN does not report restic $RESTIC_SERIES.x after install"
  log "installed $("$RESTIC_BIN" version)"
  # The trixie package lists are only needed for this download.
  rm -rf "$TRIXIE_APT/lists" "$TRIXIE_APT/cache"
fi

# --- 3. verification ---------------------------------------------------------
fail=0
check() { # description, command...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then
    log "ok: $what"
  else
    printf '%s: ERROR: check failed: %s\n' "$PROG" "$what" >&2
    fail=1
  fi
}

path_restic=$(command -v restic || true)
if [[ -z $path_restic ]]; then
  printf '%s: ERROR: restic is not on PATH (%s)\n' "$PROG" "$PATH" >&2; fail=1
elif ! restic version 2>/dev/null | grep -Eq "^restic ${RESTIC_SERIES//./\\.}\."; then
  printf '%s: ERROR: "restic" on PATH is %s (%s), not %s.x; put /usr/local/bin first in PATH\n' \
    "$PROG" "$path_restic" "$(restic version 2>&1 | head -n1)" "$RESTIC_SERIES" >&2
  fail=1
else
  log "ok: $(restic version)"
fi
check "pg_dump --version ($(pg_dump --version 2>/dev/null || echo missing))" pg_dump --version
check "psql on PATH" psql --version
check "pg_restore on PATH" pg_restore --version
check "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" test -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb"
check "mmdebstrap" mmdebstrap --version
check "zstd" zstd --version
check "gzip" gzip --version
check "ssh/sftp client" test -x /usr/bin/sftp
check "sshd binary" test -x /usr/sbin/sshd
check "sftp-server" test -x /usr/lib/openssh/sftp-server
check "mariadbd ($(/usr/sbin/mariadbd --version 2>/dev/null || echo missing))" test -x /usr/sbin/mariadbd
check "mariadb-install-db" test -x /usr/bin/mariadb-install-db
check "mariadb client" mariadb --version
check "mariadb-dump ($(mariadb-dump --version 2>/dev/null || echo missing))" mariadb-dump --version
check "mariadb-binlog" mariadb-binlog --version

if ! command -v docker >/dev/null 2>&1; then
  printf '%s: ERROR: the docker CLI is not installed; drill needs a Docker engine\n' "$PROG" >&2
  fail=1
elif ! docker_err=$(docker info --format '{{.ServerVersion}}' 2>&1); then
  printf '%s: ERROR: the Docker engine is unreachable (is dockerd running? DOCKER_HOST=%s):\n%s\n' \
    "$PROG" "${DOCKER_HOST:-unset}" "$docker_err" >&2
  fail=1
else
  log "ok: Docker engine $docker_err reachable"
fi

[[ $fail -eq 0 ]] || die "verification failed (see above)"
log "all dependencies in place"
