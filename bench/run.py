#!/usr/bin/env python3
"""drill's restore benchmark: how close a drill comes to PostgreSQL's own
ingest speed, and how little memory drill needs while it streams.

It builds a dataset (`pgbench -i` at --scale, plus Pagila, in one database),
dumps it (plain and custom format) and a smaller one (--small-scale), backs
the dumps up with restic into a fresh repository (one snapshot), then
measures, alternating within each round, --reps rounds, medians reported:

  A  `drill run` of that snapshot: sandbox, restore, one cheap SQL check,
     report, sandbox removed (wall time of the whole command)
  B  the pipeline an operator would write by hand, in a container started
     the same way (same image, memory, CPUs, server settings):
       docker run … ; wait for TCP ; createdb ;
       restic dump --no-lock latest DUMP | docker exec -i C psql -X -q -v ON_ERROR_STOP=1
       (pg_restore --exit-on-error for custom) ; the same check ; docker rm
  C  the ingest limit: the same, but the dump is copied into the container
     first (not timed) and loaded from the file there with `psql -f`
     (`pg_restore --jobs` for custom)

Scenarios: one plain dump (A, A without restore tuning, B, C); one custom
dump (A streamed, A with pg_restore --jobs, B, C); a small plain dump (A, B:
drill's memory at a second scale); a snapshot of three databases (A with
parallelism 2 and 1, against the sum of B over the three); a MariaDB dump
(`mariadb-dump` of --mariadb-rows rows, in the MariaDB image: A, B =
`restic dump | docker exec -i C mariadb`, C = `mariadb < file` inside); a
PostgreSQL physical backup (`physical`, in its own repository, one
snapshot of `/backups`): a throwaway PostgreSQL 15 cluster on the host
(fixtures/lib.sh, socket only) with `archive_mode = on`, `pgbench -i` at
--physical-scale, `pg_basebackup -F tar -z -X stream -c fast` into
`backups/auth_db/base_1`, the archive pruned to it (`pg_archivecleanup`),
then pgbench until --physical-wal-mib of WAL follow the base backup's
start. A: `drill run` (`format = "basebackup"`, `target = "latest"`); B:
the point-in-time recovery by hand in a container of the same image and
caps started idle (`--entrypoint sleep`): `restic dump` of base.tar.gz and
pg_wal.tar.gz into `docker exec -i … tar -xz` in PGDATA, pg_verifybackup,
`restic dump` of the WAL directory into `tar -x` in the container,
recovery.signal, `pg_ctl start` with `restore_command = 'cp …'`, poll
`pg_is_in_recovery()`, the same check, `docker rm`. The ledger
(`ledger`, its own repository): --ledger-nights nightly `pg_dump`s of a
pgbench database, one row changed before every third; `drill
verify-history` from an empty ledger (restores, wall time, a second call)
against a plain `drill run` of one snapshot.

Newer scenarios (bench/notes.md, "Method: …", says how each is measured):
`parallel`: the plain dump loaded over several psql sessions
(`sandbox.restore_jobs`: 1, "auto", and --plain-jobs) with the
sandbox's cpus at 2 and at 1, against B and C at 2; with --chunks also a
sweep of the COPY chunk size (DRILL_COPY_CHUNK_BYTES). `dumpall`: a
`pg_dumpall` script of three databases (small.sql loaded into a, b and c of
a scratch cluster, dumped by pg_dumpall): A with restore_jobs auto and 1, B
(as superuser `drill_sandbox`, as drill's sandboxes, since the script
creates `postgres`), C. `start`: sandbox start to ready (the report's
`sandbox_seconds`) of a `drill run` of a tiny dump, --starts times per
variant, for --image and --mariadb-image: cold (DRILL_SANDBOX_TEMPLATES=0),
from the template (the default), and --baseline. `bisect`: `drill
bisect` over the 12-night fixture history (fixtures/dumps/history, its
own repository) from an empty ledger, this build against --baseline. The
physical scenario also gives WAL segments per second of replay.

drill's peak RSS is what drill reports (`peak_rss_bytes`, getrusage
RUSAGE_SELF), cross-checked against VmHWM sampled from /proc while it runs.

Results are printed and written to --out (bench/results.md) with the
machine described. This is a script, not a test: nothing here asserts a
time. Usage (as root, on the Debian machine the tests run on):

    scripts/setup.sh && bench/run.py                 # ~1 GB dump, 3 rounds
    bench/run.py --scale 5 --small-scale 2 --reps 1  # a quick look
    bench/run.py --only start,bisect --baseline OLD/target/release/drill
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DRILL = REPO / "target" / "release" / "drill"
PAGILA = REPO / "fixtures" / "pagila"
PASSWORD = "bench-only-password"
CHECK = "select count(*) from pgbench_branches"
MARIADB_CHECK = "select count(*) from visits"
# The physical scenario's tree in its snapshot (restic backs `backups` up
# from work/stage/physical).
PHYSICAL_DIR = "/backups/auth_db"
PHYSICAL_BASE = f"{PHYSICAL_DIR}/base_1"
PHYSICAL_WAL = f"{PHYSICAL_DIR}/wal"
# Server settings drill starts a recovery with (src/restore/physical.rs)
# that matter for speed, for the hand-run recovery.
PHYSICAL_SETTINGS = ["archive_mode=off", "fsync=off", "shared_buffers=128MB", "hot_standby=on"]


def parse_sizes(text):
    """`256K,1M,4M` (or bytes) as [(label, bytes)]."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    got = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", part, re.I)
        if not m:
            sys.exit(f"bench: not a size: {part!r} (e.g. 256K, 1M, 4194304)")
        n = int(m[1]) * units[m[2].upper()]
        got.append((f"{m[1]} {m[2].upper()}iB" if m[2] else f"{n} B", n))
    return got


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    """Run a shell command, failing loudly."""
    kw.setdefault("check", True)
    return subprocess.run(cmd, shell=True, executable="/bin/bash", **kw)


def out(cmd):
    return sh(cmd, capture_output=True, text=True).stdout.strip()


def mib(b):
    return b / (1024 * 1024)


def lsn(text):
    """A WAL location (`X/Y`) as a byte position."""
    hi, lo = text.strip().split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def tuning(memory_bytes):
    """The settings drill starts a tuned sandbox with
    (src/sandbox/mod.rs `restore_tuning`), for the hand-run containers."""
    mwm = min(max(memory_bytes // 8 // (1024 * 1024), 64), 1024)
    return [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "wal_level=minimal",
        "max_wal_senders=0",
        "max_wal_size=4GB",
        "checkpoint_timeout=30min",
        f"maintenance_work_mem={mwm}MB",
    ]


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work).resolve()
        self.memory = args.memory_gib * 1024**3
        self.env = dict(os.environ)
        self.env["RESTIC_REPOSITORY"] = str(self.work / "repo")
        self.env["RESTIC_PASSWORD_FILE"] = str(self.work / "restic-password")
        # The physical scenario's repository: one snapshot of /backups, so
        # `latest` there is it (the dumps' repository gets a snapshot per
        # scenario that adds dumps).
        self.penv = dict(self.env, RESTIC_REPOSITORY=str(self.work / "repo-physical"))
        self.results = {}
        self.scenario_when = {}
        self.argv = sys.argv[1:]

    # ---------------------------------------------------------------- data

    def container(self, name, tuned=True, cpus=None, user="postgres"):
        """Start a container like drill's sandbox (`cpus`: another CPU cap
        than --cpus; `user`: its superuser, `drill_sandbox` as drill's for
        a pg_dumpall script, which creates `postgres`); return seconds to
        ready (accepting TCP connections, i.e. the final server, not the
        entrypoint's temporary one)."""
        sh(f"docker rm -f -v {name} >/dev/null 2>&1 || true")
        started = time.monotonic()
        settings = " ".join(f"-c {s}" for s in tuning(self.memory)) if tuned else ""
        shm = min(256 * 1024**2, self.memory // 4)
        sh(
            f"docker run -d --name {name} -e POSTGRES_PASSWORD={PASSWORD} -e POSTGRES_USER={user} "
            f"--memory {self.memory} --memory-swap {self.memory} --cpus {cpus or self.args.cpus} "
            # The data directory on a volume of its own, as the official
            # image's VOLUME gives every container (drill's sandboxes from a
            # template have one too); not on the container's own layer,
            # which is fuse-overlayfs on some hosts and 3x slower to write.
            f"--mount type=volume,dst=/var/lib/postgresql/data "
            f"--shm-size {shm} {self.args.image} postgres {settings} >/dev/null"
        )
        while True:
            r = sh(
                f"docker exec {name} pg_isready -q -h 127.0.0.1 -U {user}",
                check=False,
            )
            if r.returncode == 0:
                return time.monotonic() - started
            if time.monotonic() - started > 120:
                sys.exit(f"bench: container {name} not ready in 120 s")
            time.sleep(0.1)

    def init_repository(self):
        """The work directory's restic repository, created when missing."""
        if (self.work / "repo").exists():
            return
        (self.work / "stage" / "dumps").mkdir(parents=True, exist_ok=True)
        (self.work / "restic-password").write_text(PASSWORD + "\n")
        os.chmod(self.work / "restic-password", 0o600)
        sh("restic init --quiet", env=self.env)

    def build_dataset(self):
        stamp = self.work / "stage" / f".scale-{self.args.scale}-{self.args.small_scale}"
        only = set(self.args.only.split(",")) if self.args.only else None
        if only and only <= {"mariadb", "physical", "ledger", "start", "bisect"}:
            self.work.mkdir(parents=True, exist_ok=True)
            if "mariadb" in only:
                self.init_repository()
            return
        if stamp.exists():
            log(f"dataset of scale {self.args.scale}/{self.args.small_scale} already in {self.work}")
            return
        shutil.rmtree(self.work, ignore_errors=True)
        dumps = self.work / "stage" / "dumps"
        dumps.mkdir(parents=True)
        gen = "drill-bench-gen"
        self.container(gen)
        psql = f"docker exec -i {gen} psql -X -q -v ON_ERROR_STOP=1 -U postgres"
        for db, scale in (("bench", self.args.scale), ("small", self.args.small_scale)):
            log(f"pgbench -i -s {scale} and Pagila into database {db}")
            sh(f"docker exec {gen} createdb -U postgres {db}")
            sh(f"docker exec {gen} pgbench -i -q -s {scale} -U postgres {db}")
            sh(f"{psql} -d {db} < {PAGILA / 'pagila-schema.sql'} >/dev/null")
            sh(f"{psql} -d {db} < {PAGILA / 'pagila-data.sql'} >/dev/null")
        log("pg_dump: bench.sql, bench.dump, small.sql")
        sh(f"docker exec {gen} pg_dump -U postgres bench > {dumps / 'bench.sql'}")
        sh(f"docker exec {gen} pg_dump -U postgres -Fc bench > {dumps / 'bench.dump'}")
        sh(f"docker exec {gen} pg_dump -U postgres small > {dumps / 'small.sql'}")
        sh(f"docker rm -f -v {gen} >/dev/null")
        # The three databases of the multi-database snapshot: the small
        # dump under three names (restic stores its content once).
        for i in (1, 2, 3):
            os.link(dumps / "small.sql", dumps / f"multi-{i}.sql")
        (self.work / "restic-password").write_text(PASSWORD + "\n")
        os.chmod(self.work / "restic-password", 0o600)
        log("restic init + backup")
        sh("restic init --quiet", env=self.env)
        sh(f"cd {self.work / 'stage'} && restic backup --quiet --host bench dumps", env=self.env)
        stamp.touch()

    def mariadb_container(self, name, tuned=True):
        """Start a MariaDB container like drill's sandbox (same image,
        caps and server settings); return seconds to ready over TCP."""
        sh(f"docker rm -f -v {name} >/dev/null 2>&1 || true")
        started = time.monotonic()
        settings = "--max-allowed-packet=1073741824"
        if tuned:
            settings += (" --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --skip-log-bin"
                         f" --innodb-buffer-pool-size={max(self.memory // 2, 128 * 1024**2)}")
        sh(
            f"docker run -d --name {name} -e MARIADB_ROOT_PASSWORD={PASSWORD} "
            f"--memory {self.memory} --memory-swap {self.memory} --cpus {self.args.cpus} "
            f"{self.args.mariadb_image} {settings} >/dev/null"
        )
        while True:
            r = sh(f"{self.mariadb(name)} --protocol=TCP -h127.0.0.1 -e 'select 1' >/dev/null 2>&1", check=False)
            if r.returncode == 0:
                return time.monotonic() - started
            if time.monotonic() - started > 120:
                sys.exit(f"bench: container {name} not ready in 120 s")
            time.sleep(0.1)

    @staticmethod
    def mariadb(name, stdin=False):
        return f"docker exec {'-i ' if stdin else ''}-e MYSQL_PWD={PASSWORD} {name} mariadb -uroot"

    def build_mariadb(self):
        """gym-bench.sql: `mariadb-dump --databases gym` of a table of
        --mariadb-rows face-recognition visits, in a second snapshot that
        holds every dump."""
        dump = self.work / "stage" / "dumps" / "gym-bench.sql"
        stamp = self.work / "stage" / f".mariadb-{self.args.mariadb_rows}"
        if stamp.exists():
            return
        gen = "drill-bench-mgen"
        self.mariadb_container(gen)
        log(f"{self.args.mariadb_rows} rows into MariaDB database gym")
        sh(
            f"{self.mariadb(gen, stdin=True)} <<'SQL'\n"
            "CREATE DATABASE gym; USE gym;\n"
            "CREATE TABLE visits (id INT PRIMARY KEY, member_id INT NOT NULL, seen_at DATETIME NOT NULL,"
            " camera VARCHAR(32) NOT NULL, confidence DECIMAL(5,4) NOT NULL, note VARCHAR(100),"
            " KEY (member_id), KEY (seen_at)) ENGINE=InnoDB;\n"
            f"INSERT INTO visits SELECT seq, seq % 5000, '2026-01-01' + INTERVAL seq SECOND,"
            f" CONCAT('cam-', seq % 12), (seq % 10000) / 10000, MD5(seq) FROM seq_1_to_{self.args.mariadb_rows};\n"
            "SQL"
        )
        log("mariadb-dump --single-transaction --routines --triggers --events --databases gym")
        sh(f"docker exec -e MYSQL_PWD={PASSWORD} {gen} mariadb-dump -uroot --single-transaction"
           f" --routines --triggers --events --databases gym > {dump}")
        sh(f"docker rm -f -v {gen} >/dev/null")
        sh(f"cd {self.work / 'stage'} && restic backup --quiet --host bench dumps", env=self.env)
        stamp.touch()

    def run_b_mariadb(self, file):
        """The hand-run MariaDB pipeline, timed from `docker run` to `docker rm`."""
        c = "drill-bench-mb"
        started = time.monotonic()
        ready = self.mariadb_container(c)
        load = time.monotonic()
        sh(
            f"set -o pipefail; restic dump --quiet --no-lock latest /dumps/{file} "
            f"| {self.mariadb(c, stdin=True)} --binary-mode --max-allowed-packet=1073741824",
            env=self.env,
        )
        load = time.monotonic() - load
        n = out(f"{self.mariadb(c)} -N -D gym -e '{MARIADB_CHECK}'")
        assert int(n) >= 1, n
        sh(f"docker rm -f -v {c} >/dev/null")
        return {"wall": time.monotonic() - started, "ready": ready, "load": load}

    def run_c_mariadb(self, file):
        """The MariaDB ingest limit: the dump already in the container."""
        c = "drill-bench-mc"
        started = time.monotonic()
        ready = self.mariadb_container(c)
        paused = time.monotonic()
        sh(
            f"set -o pipefail; restic dump --quiet --no-lock latest /dumps/{file} "
            f"| docker exec -i {c} sh -c 'cat > /tmp/dump'",
            env=self.env,
        )
        paused = time.monotonic() - paused
        load = time.monotonic()
        sh(f"docker exec -e MYSQL_PWD={PASSWORD} {c} sh -c 'mariadb -uroot --binary-mode"
           " --max-allowed-packet=1073741824 < /tmp/dump'")
        load = time.monotonic() - load
        n = out(f"{self.mariadb(c)} -N -D gym -e '{MARIADB_CHECK}'")
        assert int(n) >= 1, n
        sh(f"docker rm -f -v {c} >/dev/null")
        return {"wall": time.monotonic() - started - paused, "ready": ready, "load": load}

    # ---------------------------------------------------------------- physical

    def build_physical(self):
        """work/stage/physical/backups/auth_db: one base backup
        (`pg_basebackup -F tar -z -X stream -c fast` of a pgbench cluster of
        --physical-scale) and the WAL archive from its start on, with
        --physical-wal-mib of WAL after it; backed up with restic into
        work/repo-physical (one snapshot). facts.json beside it: sizes and
        the base backup's start LSN."""
        a = self.args
        out_dir = self.work / "stage" / "physical"
        stamp = self.work / "stage" / f".physical-{a.physical_scale}-{a.physical_wal_mib}"
        if stamp.exists():
            log(f"physical dataset of scale {a.physical_scale}, {a.physical_wal_mib} MiB WAL already in {self.work}")
            return
        shutil.rmtree(out_dir, ignore_errors=True)
        shutil.rmtree(self.work / "repo-physical", ignore_errors=True)
        out_dir.mkdir(parents=True)
        if not (self.work / "restic-password").exists():
            (self.work / "restic-password").write_text(PASSWORD + "\n")
            os.chmod(self.work / "restic-password", 0o600)
        # The cluster in a temp dir (its socket path must stay short), the
        # backups in the work dir; fixtures/lib.sh's helpers run initdb and
        # pg_ctl as the `postgres` OS user when root.
        script = r'''
set -euo pipefail
source "$FIXTURES/lib.sh"
CLUSTER_DIR="$(mktemp -d /tmp/drill-bench-pg.XXXXXX)"
CLUSTER_USER=postgres
trap 'cleanup_clusters; rm -rf "$CLUSTER_DIR"' EXIT
B="$OUT/backups"
ARCHIVE="$B/auth_db/wal"
mkdir -p "$ARCHIVE"
[[ $EUID -ne 0 ]] || chown "$PG_OS_USER": "$ARCHIVE"
as_server_user test -w "$ARCHIVE" || die "$PG_OS_USER cannot write $ARCHIVE"
cluster_init "$CLUSTER_DIR" postgres
cat >>"$CLUSTER_DIR/data/postgresql.conf" <<CONF

# drill bench: physical
wal_level = replica
archive_mode = on
archive_command = 'cp %p $ARCHIVE/%f'
max_wal_senders = 4
timezone = 'UTC'
log_timezone = 'UTC'
CONF
cluster_run "$CLUSTER_DIR" full_page_writes=on
psql_ -c 'CREATE DATABASE bench' >/dev/null
log "physical: pgbench -i -s $SCALE"
pg_env "$PG_BIN/pgbench" -i -q -s "$SCALE" bench 2>&1 | tail -n 1 >&2
psql_value -c 'SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database' >&2
log "physical: pg_basebackup -F tar -z -X stream -c fast -> backups/auth_db/base_1"
pg_env "$PG_BIN/pg_basebackup" -D "$B/auth_db/base_1" -F tar -z -X stream -c fast --no-sync --label=base_1
START_LSN="$(tar -xzOf "$B/auth_db/base_1/base.tar.gz" backup_label | sed -n 's/^START WAL LOCATION: \([0-9A-F/]*\) .*/\1/p')"
START_SEGMENT="$(tar -xzOf "$B/auth_db/base_1/base.tar.gz" backup_label | sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\))$/\1/p')"
[[ -n "$START_LSN" && -n "$START_SEGMENT" ]] || die "no START WAL LOCATION in base_1's backup_label"
# The archive as an operator keeps it: nothing older than the oldest base
# backup (pg_archivecleanup with the backup's history file, once archived).
for _ in $(seq 1 3000); do
    HISTORY="$(cd "$ARCHIVE" && ls "$START_SEGMENT".*.backup 2>/dev/null || true)"
    [[ -z "$HISTORY" ]] || break
    sleep 0.1
done
[[ -n "$HISTORY" ]] || die "the backup history file of $START_SEGMENT was not archived in 300 s"
"$PG_BIN/pg_archivecleanup" "$ARCHIVE" "$HISTORY"
log "physical: base backup from $START_LSN ($START_SEGMENT); pgbench until $WAL_MIB MiB of WAL follow it"
after() { psql_value -c "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$START_LSN')::bigint"; }
PGBENCH_SECONDS=0
while (( $(after) < WAL_MIB * 1024 * 1024 )); do
    pg_env "$PG_BIN/pgbench" -n -M prepared -c 2 -j 2 -T 10 bench 2>/dev/null | grep -E '^tps' >&2 || true
    PGBENCH_SECONDS=$(( PGBENCH_SECONDS + 10 ))
done
WAL_AFTER="$(after)"
LAST="$(psql_value -c 'SELECT pg_walfile_name(pg_switch_wal())')"
log "physical: $WAL_AFTER bytes of WAL after the base backup's start ($PGBENCH_SECONDS s of pgbench); waiting for the archiver"
for _ in $(seq 1 1200); do
    if [[ -f "$ARCHIVE/$LAST" ]] && ! compgen -G "$CLUSTER_DIR/data/pg_wal/archive_status/*.ready" >/dev/null; then
        break
    fi
    sleep 0.1
done
[[ -f "$ARCHIVE/$LAST" ]] || die "$LAST was not archived in 120 s"
psql_value -c 'SELECT failed_count, last_failed_wal FROM pg_stat_archiver' \
    | grep -qx '0|' || die "the archiver failed: $(psql_value -c 'TABLE pg_stat_archiver')"
cluster_stop "$CLUSTER_DIR"
cluster_forget "$CLUSTER_DIR"
[[ $EUID -ne 0 ]] || chown -R "$(id -u):$(id -g)" "$B"
printf '{"server": "%s", "start_lsn": "%s", "start_segment": "%s", "switched_segment": "%s", "wal_after_base": %s, "pgbench_seconds": %s}\n' \
    "$("$PG_BIN/postgres" --version | awk '{print $3}')" "$START_LSN" "$START_SEGMENT" "$LAST" "$WAL_AFTER" "$PGBENCH_SECONDS" \
    >"$OUT/generated.json"
'''
        env = dict(os.environ, FIXTURES=str(REPO / "fixtures"), OUT=str(out_dir),
                   SCALE=str(a.physical_scale), WAL_MIB=str(a.physical_wal_mib))
        sh(script, env=env)
        facts = json.loads((out_dir / "generated.json").read_text())
        base = out_dir / "backups" / "auth_db" / "base_1"
        wal = [f for f in (out_dir / "backups" / "auth_db" / "wal").iterdir() if len(f.name) == 24]
        facts.update({
            "scale": a.physical_scale,
            "base_tar_gz": (base / "base.tar.gz").stat().st_size,
            # What lands in PGDATA: base.tar's size (its files and headers).
            "base_tar": int(out(f"gzip -dc {base / 'base.tar.gz'} | wc -c")),
            "pg_wal_tar_gz": (base / "pg_wal.tar.gz").stat().st_size,
            "archive_segments": len(wal),
            # Not always the segment pg_switch_wal closed: with archiving
            # on, a clean shutdown may switch once more (ShutdownXLOG).
            "last_segment": max(f.name for f in wal),
            "archive_bytes": sum(f.stat().st_size for f in wal),
        })
        (out_dir / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
        log("restic init + backup (repo-physical)")
        sh("restic init --quiet", env=self.penv)
        sh(f"cd {out_dir} && restic backup --quiet --host bench backups", env=self.penv)
        stamp.touch()

    def physical_facts(self):
        return json.loads((self.work / "stage" / "physical" / "facts.json").read_text())

    def run_b_physical(self):
        """The point-in-time recovery by hand, timed from `docker run` to
        `docker rm`: a container of the image started idle with the
        sandbox's caps, the base backup and its WAL streamed into PGDATA,
        pg_verifybackup, the WAL archive streamed into the container,
        recovery with restore_command = cp, poll until it ends."""
        c = "drill-bench-pb"
        a = self.args
        sh(f"docker rm -f -v {c} >/dev/null 2>&1 || true")
        shm = min(256 * 1024**2, self.memory // 4)
        as_pg = f"docker exec -u postgres {c}"
        as_pg_in = f"docker exec -i -u postgres {c}"
        dump = "set -o pipefail; restic dump --quiet --no-lock latest"
        phase = {}
        started = time.monotonic()
        sh(
            f"docker run -d --name {c} --memory {self.memory} --memory-swap {self.memory} --cpus {a.cpus} "
            f"--shm-size {shm} --entrypoint sleep {a.image} infinity >/dev/null"
        )
        phase["ready"] = time.monotonic() - started
        t = time.monotonic()
        sh(f"{dump} {PHYSICAL_BASE}/base.tar.gz | {as_pg_in} sh -c 'tar -xz -C \"$PGDATA\"'", env=self.penv)
        sh(f"{dump} {PHYSICAL_BASE}/pg_wal.tar.gz | {as_pg_in} sh -c 'tar -xz -C \"$PGDATA/pg_wal\"'", env=self.penv)
        phase["base"] = time.monotonic() - t
        t = time.monotonic()
        sh(f"{dump} {PHYSICAL_BASE}/backup_manifest | {as_pg_in} sh -c 'cat > /tmp/backup_manifest'", env=self.penv)
        sh(f"{as_pg} sh -c 'pg_verifybackup --no-parse-wal --quiet --manifest-path=/tmp/backup_manifest \"$PGDATA\"'")
        phase["verify"] = time.monotonic() - t
        t = time.monotonic()
        strip = len(PHYSICAL_WAL.strip("/").split("/"))
        sh(f"{dump} {PHYSICAL_WAL} | {as_pg_in} sh -c 'mkdir -p /tmp/wal && tar -x -C /tmp/wal --strip-components={strip}'",
           env=self.penv)
        phase["wal_fetch"] = time.monotonic() - t
        t = time.monotonic()
        settings = " ".join(f"-c {s}" for s in PHYSICAL_SETTINGS)
        sh(f"{as_pg} sh -c 'touch \"$PGDATA/recovery.signal\"'")
        sh(f"{as_pg} pg_ctl -W -l /tmp/postgres.log -o \"{settings} -c restore_command='cp /tmp/wal/%f %p'\" start >/dev/null")
        polls = 0
        while True:
            r = sh(f"{as_pg} psql -X -A -t -q -d postgres -c 'select pg_is_in_recovery()'",
                   check=False, capture_output=True, text=True)
            if r.stdout.strip() == "f":
                break
            polls += 1
            # Still running? (pg_ctl status: 3 without a postmaster; checked
            # now and then, and not before the server had time to start.)
            if (polls % 20 == 0 and time.monotonic() - t > 5
                    and sh(f"{as_pg} pg_ctl status >/dev/null", check=False).returncode == 3):
                sys.exit("bench: the hand-run recovery's server stopped:\n"
                         + out(f"docker exec {c} tail -n 20 /tmp/postgres.log"))
            if time.monotonic() - t > 3 * 3600:
                sys.exit(f"bench: hand-run recovery in {c} not done in 3 h")
            time.sleep(0.25)
        phase["replay"] = time.monotonic() - t
        replay_lsn = out(f"{as_pg} psql -X -A -t -q -d postgres -c 'select pg_last_wal_replay_lsn()'")
        segment = int(out(f"{as_pg} psql -X -A -t -q -d postgres -c "
                          "\"select setting from pg_settings where name = 'wal_segment_size'\""))
        n = out(f"{as_pg} psql -X -A -t -q -d bench -c '{CHECK}'")
        assert int(n) >= 1, n
        sh(f"docker rm -f -v {c} >/dev/null")
        phase["wall"] = time.monotonic() - started
        start = self.physical_facts()["start_lsn"]
        phase["wal_bytes"] = lsn(replay_lsn) - lsn(start)
        # Segments replayed, counted as drill counts them
        # (src/restore/physical.rs): the base backup's start segment to the
        # one holding the last byte replayed.
        phase["wal_segments"] = (lsn(replay_lsn) - 1) // segment - lsn(start) // segment + 1
        phase["restore"] = phase["base"] + phase["verify"] + phase["wal_fetch"] + phase["replay"]
        return phase

    def build_ledger(self):
        """work/stage/ledger: --ledger-nights nightly `pg_dump`s of a
        pgbench database (scale --ledger-scale) in a container of --image,
        the data changed (one row) before every third night's dump (nights
        1, 4, 7, …); the other nights are real re-dumps of unchanged data.
        Each night is one snapshot of `/dumps/ledger.sql` in
        work/repo-ledger, a day apart."""
        a = self.args
        stamp = self.work / "stage" / f".ledger-{a.ledger_scale}-{a.ledger_nights}"
        if stamp.exists():
            log(f"ledger history of {a.ledger_nights} nights already in {self.work}")
            return
        stage = self.work / "stage" / "ledger"
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(self.work / "repo-ledger", ignore_errors=True)
        (stage / "dumps").mkdir(parents=True)
        if not (self.work / "restic-password").exists():
            (self.work / "restic-password").write_text(PASSWORD + "\n")
            os.chmod(self.work / "restic-password", 0o600)
        lenv = dict(self.env, RESTIC_REPOSITORY=str(self.work / "repo-ledger"))
        sh("restic init --quiet", env=lenv)
        c = "drill-bench-ledger-source"
        self.container(c)
        try:
            sh(f"docker exec {c} createdb -U postgres bench")
            sh(f"docker exec {c} pgbench -q -i -s {a.ledger_scale} -U postgres bench >/dev/null 2>&1")
            for night in range(1, a.ledger_nights + 1):
                if night % 3 == 1:
                    sh(f"docker exec {c} psql -X -q -U postgres -d bench -c "
                       f"'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = {night}'")
                sh(f"docker exec {c} pg_dump -U postgres bench > {stage / 'dumps' / 'ledger.sql'}")
                when = datetime.datetime(2026, 1, 1, 3) + datetime.timedelta(days=night - 1)
                sh(f"cd {stage} && restic backup --quiet --host bench --time '{when:%Y-%m-%d %H:%M:%S}' dumps", env=lenv)
                log(f"ledger: night {night} backed up")
        finally:
            sh(f"docker rm -f -v {c} >/dev/null")
        self.sizes["ledger.sql"] = (stage / "dumps" / "ledger.sql").stat().st_size
        stamp.touch()

    def config_ledger(self, name):
        """A drill config under work/NAME for the ledger history: one
        database, the cheap check, its own reports (so its own ledger)."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "checks").mkdir(parents=True)
        (d / "drill.toml").write_text(
            'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "checks"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo-ledger"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            f'image = "{self.args.image}"\nmemory = "{self.args.memory_gib}GiB"\ncpus = {self.args.cpus:.1f}\n\n'
            '[[databases]]\nname = "bench"\npath = "/dumps/ledger.sql"\nformat = "plain"\ndbname = "bench"\n'
        )
        (d / "checks" / "bench-branches.toml").write_text(
            f'kind = "sql"\ndatabase = "bench"\nquery = "{CHECK}"\n[expect]\nmin = 1\n'
        )
        return d

    def run_verify_history(self):
        """`drill verify-history` over the whole ledger history from an
        empty ledger; its wall time and summary."""
        conf = self.config_ledger("ledger-verify")
        started = time.monotonic()
        p = subprocess.run(
            [str(DRILL), "--config", str(conf / "drill.toml"), "verify-history", "--tier", "bench", "--json"],
            capture_output=True, text=True,
        )
        wall = time.monotonic() - started
        if p.returncode != 0:
            sys.exit(f"bench: verify-history exited with {p.returncode}:\n{p.stderr}")
        r = json.loads(p.stdout)
        started = time.monotonic()
        again = subprocess.run(
            [str(DRILL), "--config", str(conf / "drill.toml"), "verify-history", "--tier", "bench", "--json"],
            capture_output=True, text=True,
        )
        again_wall = time.monotonic() - started
        return {"wall": wall, "snapshots": len(r["snapshots"]) if isinstance(r.get("snapshots"), list) else r["snapshots"],
                "restores": r["restores"], "verified": r["verified"], "inherited": r["inherited"],
                "again_wall": again_wall, "again_restores": json.loads(again.stdout)["restores"]}

    def run_one_snapshot(self):
        """A plain `drill run` of the newest snapshot: the time one
        verification costs without the ledger."""
        return self.run_a(self.config_ledger("ledger-run"))

    # ---------------------------------------------------------------- dumpall

    def build_dumpall(self):
        """dumpall.sql: `pg_dumpall` of a cluster holding three copies of
        the small dataset (`small.sql` loaded into databases a, b and c),
        in a new snapshot of the dumps' repository."""
        dump = self.work / "stage" / "dumps" / "dumpall.sql"
        stamp = self.work / "stage" / f".dumpall-{self.args.small_scale}"
        if stamp.exists():
            return
        gen = "drill-bench-dagen"
        self.container(gen)
        psql = f"docker exec -i {gen} psql -X -q -v ON_ERROR_STOP=1 -U postgres"
        try:
            for db in ("a", "b", "c"):
                log(f"dumpall: small.sql into database {db}")
                sh(f"docker exec {gen} createdb -U postgres {db}")
                sh(f"{psql} -o /dev/null -d {db} < {self.work / 'stage' / 'dumps' / 'small.sql'}")
            log("pg_dumpall: dumpall.sql")
            sh(f"docker exec {gen} pg_dumpall -U postgres > {dump}")
        finally:
            sh(f"docker rm -f -v {gen} >/dev/null")
        sh(f"cd {self.work / 'stage'} && restic backup --quiet --host bench dumps", env=self.env)
        stamp.touch()

    # ---------------------------------------------------------------- start

    def build_start(self):
        """work/repo-start: one snapshot of two tiny fixture dumps (a plain
        pg_dump of 9 KiB, fixtures/dumps/roles/shop.sql, and the MariaDB
        fixture's mysqldump, fixtures/dumps/mariadb/gym-full.sql.gz), so
        that a drill run is mostly its sandbox."""
        stamp = self.work / "stage" / ".start"
        if stamp.exists():
            return
        stage = self.work / "stage" / "start"
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(self.work / "repo-start", ignore_errors=True)
        (stage / "dumps").mkdir(parents=True)
        if not (self.work / "restic-password").exists():
            (self.work / "restic-password").write_text(PASSWORD + "\n")
            os.chmod(self.work / "restic-password", 0o600)
        shutil.copy(REPO / "fixtures" / "dumps" / "roles" / "shop.sql", stage / "dumps" / "shop.sql")
        shutil.copy(REPO / "fixtures" / "dumps" / "mariadb" / "gym-full.sql.gz", stage / "dumps" / "gym-full.sql.gz")
        senv = dict(self.env, RESTIC_REPOSITORY=str(self.work / "repo-start"))
        sh("restic init --quiet", env=senv)
        sh(f"cd {stage} && restic backup --quiet --host bench dumps", env=senv)
        stamp.touch()

    def config_start(self, name, kind):
        """A drill config under work/NAME restoring the tiny dump of `kind`
        (`postgresql`: shop.sql in --image; `mariadb`: gym-full.sql.gz in
        --mariadb-image), with a `select 1` check."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "checks").mkdir(parents=True)
        text = (
            'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "checks"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo-start"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            f'memory = "{self.args.memory_gib}GiB"\ncpus = {self.args.cpus:.1f}\n\n'
        )
        if kind == "mariadb":
            db = "gym"
            text += (f'[[databases]]\nname = "gym"\nkind = "mariadb"\npath = "/dumps/gym-full.sql.gz"\n'
                     f'image = "{self.args.mariadb_image}"\n')
        else:
            db = "shop"
            text += (f'[[databases]]\nname = "shop"\npath = "/dumps/shop.sql"\nformat = "plain"\n'
                     f'image = "{self.args.image}"\n')
        (d / "checks" / f"{db}-one.toml").write_text(
            f'kind = "sql"\ndatabase = "{db}"\nquery = "select 1"\n[expect]\nmin = 1\n'
        )
        (d / "drill.toml").write_text(text)
        return d

    def run_start(self, conf, env=None, drill=None):
        """One `drill run` of a tiny dump: its sandbox's start to ready as
        the report gives it (`restore.sandbox_seconds`), and its wall."""
        m = self.run_a(conf, drill, env)
        return {"wall": m["wall"], "ready": m["ready"], "template_notes": m.get("template_notes", [])}

    # ---------------------------------------------------------------- bisect

    def build_bisect(self):
        """work/repo-bisect: the 12-night history of tests/bisect.rs, one
        snapshot per night of fixtures/dumps/history/frame-night-NN.sql as
        /dumps/frame-postgres.sql (a pg_dumpall of the frame fixture; night
        8 shifts one journal line by 0.01 and later nights keep it), taken
        nightly at 03:00 UTC from 2026-11-02."""
        stamp = self.work / "stage" / ".bisect"
        if stamp.exists():
            return
        stage = self.work / "stage" / "bisect"
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(self.work / "repo-bisect", ignore_errors=True)
        (stage / "dumps").mkdir(parents=True)
        if not (self.work / "restic-password").exists():
            (self.work / "restic-password").write_text(PASSWORD + "\n")
            os.chmod(self.work / "restic-password", 0o600)
        benv = dict(self.env, RESTIC_REPOSITORY=str(self.work / "repo-bisect"))
        sh("restic init --quiet", env=benv)
        history = REPO / "fixtures" / "dumps" / "history"
        for night in range(1, 13):
            src = history / f"frame-night-{night:02}.sql"
            if not src.is_file():
                sys.exit(f"bench: {src} is missing: run fixtures/generate.sh")
            shutil.copy(src, stage / "dumps" / "frame-postgres.sql")
            sh(f"cd {stage} && restic backup --quiet --host bench --time '2026-11-{night + 1:02} 03:00:00' dumps", env=benv)
        stamp.touch()

    def config_bisect(self, name):
        """A drill config under work/NAME for the history, as
        tests/bisect.rs writes it: the six fixture databases (the snapshots
        hold frame's; bisect is told `--database frame`), the shipped
        checks, a reports dir of its own (so an empty ledger: bisect takes
        the verdicts the ledger holds without a restore)."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        text = (
            f'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "{REPO / "checks"}"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo-bisect"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            f'image = "{self.args.image}"\nmemory = "{self.args.memory_gib}GiB"\ncpus = {self.args.cpus:.1f}\n'
        )
        for db, path, fmt in (
            ("frame", "frame-postgres.sql", "pg_dumpall"),
            ("index", "index-postgres.sql.gz", "pg_dumpall"),
            ("hive", "hive-postgres.sql", "plain"),
            ("mysrt", "mysrt-postgres.sql.zst", "plain"),
            ("blueprint", "blueprint-postgres.dump", "custom"),
            ("pagila", "pagila.dump", "custom"),
        ):
            text += f'\n[[databases]]\nname = "{db}"\npath = "/dumps/{path}"\nformat = "{fmt}"\n'
        (d / "drill.toml").write_text(text)
        return d

    def run_bisect(self, drill=None):
        """`drill bisect --database frame --json` over the history from an
        empty ledger: wall time, restores, what it found."""
        conf = self.config_bisect("bisect-before" if drill else "bisect")
        started = time.monotonic()
        p = subprocess.run(
            [str(drill or DRILL), "--config", str(conf / "drill.toml"), "bisect", "--tier", "bench",
             "--database", "frame", "--json"],
            capture_output=True, text=True,
        )
        wall = time.monotonic() - started
        try:
            r = json.loads(p.stdout)
        except ValueError:
            sys.exit(f"bench: bisect exited with {p.returncode} and printed no record:\n{p.stderr}")
        if r.get("outcome") != "found":
            sys.exit(f"bench: bisect exited with {p.returncode}, outcome {r.get('outcome')}:\n{p.stderr}")
        first = (r.get("first_invalid") or {}).get("time", "")
        return {"wall": wall, "restores": r.get("restores"), "diff_restores": r.get("diff_restores"),
                "tested": len(r.get("tested", [])), "first_invalid": first[:10]}

    def size(self, name):
        return (self.work / "stage" / "dumps" / name).stat().st_size

    # ---------------------------------------------------------------- A

    def config(self, name, databases, roles=None, **sandbox):
        """A drill config under work/NAME for `databases`
        [(name, file, format[, dbname])] (dbname `bench` unless given),
        each with the cheap check; `roles` is written as each database's
        `roles` (drill finds them itself; a build from before role
        discovery needs them); `sandbox`: [sandbox] keys over the
        defaults (values as TOML: `restore_jobs='"auto"'`, `cpus=1.0`)."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "checks").mkdir(parents=True)
        settings = {
            "image": f'"{self.args.image}"',
            "memory": f'"{self.args.memory_gib}GiB"',
            "cpus": f"{self.args.cpus:.1f}",
        }
        settings.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in sandbox.items()})
        text = (
            'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "checks"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        for db, file, fmt, *dbname in databases:
            text += (
                f'\n[[databases]]\nname = "{db}"\npath = "/dumps/{file}"\n'
                f'format = "{fmt}"\ndbname = "{dbname[0] if dbname else "bench"}"\n'
            )
            if roles is not None:
                text += "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]\n"
            (d / "checks" / f"{db}-branches.toml").write_text(
                f'kind = "sql"\ndatabase = "{db}"\nquery = "{CHECK}"\n[expect]\nmin = 1\n'
            )
        (d / "drill.toml").write_text(text)
        return d

    def config_mariadb(self, name, file):
        """A drill config under work/NAME for the MariaDB dump `file`, with
        the cheap check."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "checks").mkdir(parents=True)
        text = (
            'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "checks"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            f'memory = "{self.args.memory_gib}GiB"\ncpus = {self.args.cpus:.1f}\n\n'
            f'[[databases]]\nname = "gym"\nkind = "mariadb"\npath = "/dumps/{file}"\n'
            f'image = "{self.args.mariadb_image}"\n'
        )
        (d / "checks" / "gym-visits.toml").write_text(
            f'kind = "sql"\ndatabase = "gym"\nquery = "{MARIADB_CHECK}"\n[expect]\nmin = 1\n'
        )
        (d / "drill.toml").write_text(text)
        return d

    def config_physical(self, name):
        """A drill config under work/NAME for the physical backup: the
        base backups under /backups/auth_db, its WAL archive, target
        latest, the cheap check."""
        d = self.work / "conf" / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "checks").mkdir(parents=True)
        text = (
            'timezone = "UTC"\nreports_dir = "reports"\nchecks_dir = "checks"\n\n'
            f'[tiers.bench]\nrepository = "{self.work / "repo-physical"}"\n'
            f'password_file = "{self.work / "restic-password"}"\n\n[sandbox]\n'
            f'image = "{self.args.image}"\nmemory = "{self.args.memory_gib}GiB"\ncpus = {self.args.cpus:.1f}\n\n'
            f'[[databases]]\nname = "bench"\npath = "{PHYSICAL_DIR}"\nformat = "basebackup"\n'
            f'wal = "{PHYSICAL_WAL}"\ntarget = "latest"\nimage = "{self.args.image}"\ndbname = "bench"\n'
        )
        (d / "checks" / "bench-branches.toml").write_text(
            f'kind = "sql"\ndatabase = "bench"\nquery = "{CHECK}"\n[expect]\nmin = 1\n'
        )
        (d / "drill.toml").write_text(text)
        return d

    def run_a(self, conf, drill=None, env=None):
        """`drill run` once (`drill`: another build; `env`: variables set
        for it, e.g. DRILL_COPY_CHUNK_BYTES); the wall time, what the
        report says, and the VmHWM seen from outside."""
        reports = conf / "reports"
        before = set(reports.glob("*.json")) if reports.exists() else set()
        started = time.monotonic()
        p = subprocess.Popen(
            [str(drill or DRILL), "--config", str(conf / "drill.toml"), "--tier", "bench", "--no-notify"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, **(env or {})),
        )
        hwm = [0]

        def sample():
            while p.poll() is None:
                try:
                    for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            hwm[0] = max(hwm[0], int(line.split()[1]) * 1024)
                except OSError:
                    pass
                time.sleep(0.2)

        t = threading.Thread(target=sample)
        t.start()
        _, err = p.communicate()
        wall = time.monotonic() - started
        t.join()
        if p.returncode != 0:
            sys.exit(f"bench: drill exited with {p.returncode}:\n{err}")
        (report_path,) = set(reports.glob("*.json")) - before
        r = json.loads(report_path.read_text())
        dbs = r["databases"]
        bad = [d["name"] for d in dbs if d["restore"].get("error")]
        if bad:
            sys.exit(f"bench: drill's restore of {bad} did not pass: {[d['restore']['error'] for d in dbs]}")
        rec = dbs[0]["restore"].get("recovery")
        if rec:
            # A physical restore: its phases and the WAL it replayed.
            return {
                "wall": wall,
                "rto": r["rto_seconds"],
                "restore": dbs[0]["restore"]["seconds"],
                "ready": dbs[0]["restore"]["sandbox_seconds"],
                "base": rec["base_seconds"],
                "wal_fetch": rec["wal_fetch_seconds"],
                "replay": rec["replay_seconds"],
                "wal_bytes": rec["wal_bytes"],
                "wal_segments": rec["wal_segments"],
                "data_loss": rec.get("data_loss_seconds"),
                "bytes": dbs[0]["restore"]["bytes"],
                "restored_bytes": dbs[0]["restore"]["restored_bytes"],
                "rss": r["peak_rss_bytes"],
                "hwm": hwm[0],
            }
        return {
            "wall": wall,
            "rto": r["rto_seconds"],
            "restore": sum(d["restore"]["seconds"] for d in dbs),
            "ready": statistics.mean(d["restore"]["sandbox_seconds"] for d in dbs),
            "bytes": sum(d["restore"]["bytes"] for d in dbs),
            "restored_bytes": sum(d["restore"]["restored_bytes"] for d in dbs),
            "rss": r["peak_rss_bytes"],
            "hwm": hwm[0],
            # How plain scripts were loaded (`restore.sessions`: several
            # psql sessions; absent for one, and from older builds).
            "sessions": [d["restore"].get("sessions") for d in dbs],
            # What the run said about sandbox templates (a build failed, …).
            "template_notes": [w for w in r.get("warnings", []) + [n for d in dbs for n in d["restore"].get("notes", [])]
                               if "template" in w],
        }

    # ---------------------------------------------------------------- B, C

    @staticmethod
    def hand_target(fmt):
        """Superuser, database loaded into and database checked, by hand:
        a pg_dumpall script (the dumpall scenario) runs as drill's
        superuser `drill_sandbox` from `postgres` and creates databases a,
        b, c (checked in c); a dump of one database goes into `bench`,
        created first."""
        if fmt == "pg_dumpall":
            return "drill_sandbox", "postgres", "c"
        return "postgres", "bench", "bench"

    def run_b(self, file, fmt, tuned=True, cpus=None):
        """The hand-run pipeline, timed from `docker run` to `docker rm`."""
        c = "drill-bench-b"
        user, into, check_db = self.hand_target(fmt)
        started = time.monotonic()
        ready = self.container(c, tuned, cpus, user)
        if into != "postgres":
            sh(f"docker exec {c} createdb -U {user} {into}")
        load = time.monotonic()
        tool = (
            f"pg_restore --exit-on-error -U {user} -d {into}"
            if fmt == "custom"
            else f"psql -X -q -v ON_ERROR_STOP=1 -o /dev/null -U {user} -d {into}"
        )
        sh(
            f"set -o pipefail; restic dump --quiet --no-lock latest /dumps/{file} "
            f"| docker exec -i {c} {tool}",
            env=self.env,
        )
        load = time.monotonic() - load
        n = out(f"docker exec {c} psql -X -U {user} -d {check_db} -Atc '{CHECK}'")
        assert int(n) >= 1, n
        sh(f"docker rm -f -v {c} >/dev/null")
        return {"wall": time.monotonic() - started, "ready": ready, "load": load}

    def run_c(self, file, fmt, jobs=1, cpus=None):
        """The ingest limit: the dump already in the container. Timed: the
        start to ready, the load from the file, the check, the removal."""
        c = "drill-bench-c"
        user, into, check_db = self.hand_target(fmt)
        started = time.monotonic()
        ready = self.container(c, cpus=cpus, user=user)
        if into != "postgres":
            sh(f"docker exec {c} createdb -U {user} {into}")
        paused = time.monotonic()
        sh(
            f"set -o pipefail; restic dump --quiet --no-lock latest /dumps/{file} "
            f"| docker exec -i {c} sh -c 'cat > /tmp/dump'",
            env=self.env,
        )
        paused = time.monotonic() - paused
        load = time.monotonic()
        if fmt == "custom":
            sh(f"docker exec {c} pg_restore --exit-on-error --jobs={jobs} -U {user} -d {into} /tmp/dump")
        else:
            sh(f"docker exec {c} psql -X -q -v ON_ERROR_STOP=1 -o /dev/null -U {user} -d {into} -f /tmp/dump")
        load = time.monotonic() - load
        n = out(f"docker exec {c} psql -X -U {user} -d {check_db} -Atc '{CHECK}'")
        assert int(n) >= 1, n
        sh(f"docker rm -f -v {c} >/dev/null")
        return {"wall": time.monotonic() - started - paused, "ready": ready, "load": load}

    # ---------------------------------------------------------------- run

    def measure(self, scenario, runs, reps=None):
        """`runs` is [(label, fn)]; each round runs every one in turn,
        starting one further along each round, so no variant always runs
        right after the same other one (removing a sandbox of a large
        restore keeps the disk busy for a while). `reps`: rounds other
        than --reps."""
        got = {label: [] for label, _ in runs}
        self.results[scenario] = got
        self.scenario_when[scenario] = self.when
        for r in range(reps or self.args.reps):
            for label, fn in runs[r % len(runs):] + runs[: r % len(runs)]:
                m = fn()
                got[label].append(m)
                log(f"{scenario} round {r + 1}: {label} {m['wall']:.1f} s")
                self.save()
        return got

    def save(self):
        """Every figure so far, for `--render` (work/results.json)."""
        raw = {"argv": self.argv, "machine": self.machine_lines, "sizes": self.sizes,
               "when": self.when, "results": self.results, "scenario_when": self.scenario_when}
        (self.work / "results.json").write_text(json.dumps(raw, indent=1))

    def run(self):
        a = self.args
        self.machine_lines = self.machine()
        self.sizes = {
            f: self.size(f)
            for f in ("bench.sql", "bench.dump", "small.sql", "dumpall.sql")
            if (self.work / "stage" / "dumps" / f).exists()
        }
        self.when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        if a.only and (self.work / "results.json").exists():
            # The scenarios not run now keep their earlier figures.
            self.load()
            self.when = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
            self.argv = self.argv + ["+", *sys.argv[1:]]
        plain = self.config("plain", [("bench", "bench.sql", "plain")])
        plain_raw = self.config("plain-untuned", [("bench", "bench.sql", "plain")], tuning=False)
        custom1 = self.config("custom-stream", [("bench", "bench.dump", "custom")], restore_jobs=1)
        customj = self.config("custom-jobs", [("bench", "bench.dump", "custom")], restore_jobs=a.jobs)
        customa = self.config("custom-auto", [("bench", "bench.dump", "custom")])
        small = self.config("small", [("small", "small.sql", "plain")])
        multi = [(f"m{i}", f"multi-{i}.sql", "plain") for i in (1, 2, 3)]
        multi2 = self.config("multi-par2", multi, parallelism=2)
        multi1 = self.config("multi-par1", multi, parallelism=1)
        only = set(a.only.split(",")) if a.only else None
        want = lambda s: only is None or s in only  # noqa: E731

        if want("plain"):
            self.measure("plain", [
                ("A", lambda: self.run_a(plain)),
                ("B", lambda: self.run_b("bench.sql", "plain")),
                ("C", lambda: self.run_c("bench.sql", "plain")),
                ("A untuned", lambda: self.run_a(plain_raw)),
                ("B untuned", lambda: self.run_b("bench.sql", "plain", tuned=False)),
            ])
        if want("custom"):
            self.measure("custom", [
                ("A stream", lambda: self.run_a(custom1)),
                (f"A jobs={a.jobs}", lambda: self.run_a(customj)),
                ("A auto", lambda: self.run_a(customa)),
                ("B", lambda: self.run_b("bench.dump", "custom")),
                (f"C jobs={a.jobs}", lambda: self.run_c("bench.dump", "custom", a.jobs)),
            ])
        if want("small"):
            self.measure("small", [
                ("A", lambda: self.run_a(small)),
                ("B", lambda: self.run_b("small.sql", "plain")),
            ])
        if want("roles") and a.baseline:
            # What role discovery costs: this build finding the roles itself
            # against a build from before it, told them in `roles`.
            plain_roles = self.config("plain-roles", [("bench", "bench.sql", "plain")], roles=["postgres"])
            small_roles = self.config("small-roles", [("small", "small.sql", "plain")], roles=["postgres"])
            self.measure("roles", [
                ("A discovers", lambda: self.run_a(plain)),
                ("A before (roles listed)", lambda: self.run_a(plain_roles, a.baseline)),
            ])
            self.measure("roles-small", [
                ("A discovers", lambda: self.run_a(small)),
                ("A before (roles listed)", lambda: self.run_a(small_roles, a.baseline)),
            ])
        if want("mariadb"):
            self.build_mariadb()
            self.sizes["gym-bench.sql"] = self.size("gym-bench.sql")
            mconf = self.config_mariadb("mariadb", "gym-bench.sql")
            self.measure("mariadb", [
                ("A", lambda: self.run_a(mconf)),
                ("B", lambda: self.run_b_mariadb("gym-bench.sql")),
                ("C", lambda: self.run_c_mariadb("gym-bench.sql")),
            ])
        if want("physical"):
            self.build_physical()
            self.sizes["physical"] = self.physical_facts()
            pconf = self.config_physical("physical")
            self.measure("physical", [
                ("A", lambda: self.run_a(pconf)),
                ("B", self.run_b_physical),
            ])
        if want("ledger"):
            self.build_ledger()
            self.measure("ledger", [
                ("verify-history", self.run_verify_history),
                ("drill run (one snapshot)", self.run_one_snapshot),
            ])
        if want("multi"):
            self.measure("multi", [
                ("A parallelism=2", lambda: self.run_a(multi2)),
                ("A parallelism=1", lambda: self.run_a(multi1)),
                ("B", lambda: self.sum_b(multi)),
            ])
        if want("parallel"):
            # The plain dump over several psql sessions (restore_jobs) against
            # one, with the sandbox's two CPUs and with one; B and C with two.
            # With one CPU "auto" is one session, so the several-session run
            # there names its number (--plain-jobs).
            bench_sql = [("bench", "bench.sql", "plain")]
            par = {
                (jobs, cpus): self.config(f"parallel-{jobs}-cpus{cpus:.0f}", bench_sql,
                                          restore_jobs=f'"{jobs}"' if jobs == "auto" else jobs, cpus=f"{cpus:.1f}")
                for jobs, cpus in (("1", 2.0), ("auto", 2.0), (str(a.plain_jobs), 2.0), ("1", 1.0),
                                   (str(a.plain_jobs), 1.0))
            }
            self.measure("parallel", [
                ("A 1 session, cpus 2", lambda: self.run_a(par["1", 2.0])),
                # The same, every table's rows WAL-logged (no WAL-skipping
                # transaction): what skipping the WAL gains.
                ("A 1 session, WAL logged, cpus 2",
                 lambda: self.run_a(par["1", 2.0], env={"DRILL_WAL_SKIP_BYTES": "0"})),
                ("A auto, cpus 2", lambda: self.run_a(par["auto", 2.0])),
                (f"A {a.plain_jobs} sessions, cpus 2", lambda: self.run_a(par[str(a.plain_jobs), 2.0])),
                ("A 1 session, cpus 1", lambda: self.run_a(par["1", 1.0])),
                (f"A {a.plain_jobs} sessions, cpus 1", lambda: self.run_a(par[str(a.plain_jobs), 1.0])),
                ("B", lambda: self.run_b("bench.sql", "plain", cpus=2.0)),
                ("C", lambda: self.run_c("bench.sql", "plain", cpus=2.0)),
            ])
            if a.chunks:
                # COPY chunk size (DRILL_COPY_CHUNK_BYTES), restore_jobs auto,
                # two CPUs.
                chunked = par["auto", 2.0]
                self.measure("parallel-chunks", [
                    (f"A auto, chunk {label}", lambda n=n: self.run_a(chunked, env={"DRILL_COPY_CHUNK_BYTES": str(n)}))
                    for label, n in parse_sizes(a.chunks)
                ])
        if want("dumpall"):
            self.build_dumpall()
            self.sizes["dumpall.sql"] = self.size("dumpall.sql")
            abc = [("all", "dumpall.sql", "pg_dumpall", "c")]
            da = self.config("dumpall-auto", abc, restore_jobs='"auto"')
            d1 = self.config("dumpall-1", abc, restore_jobs=1)
            self.measure("dumpall", [
                ("A auto", lambda: self.run_a(da)),
                ("A 1 session", lambda: self.run_a(d1)),
                ("B", lambda: self.run_b("dumpall.sql", "pg_dumpall")),
                ("C", lambda: self.run_c("dumpall.sql", "pg_dumpall")),
            ])
        if want("start"):
            self.build_start()
            for kind, image in (("postgresql", a.image), ("mariadb", a.mariadb_image)):
                conf = self.config_start(f"start-{kind}", kind)
                # The template is made by the first templated start; that
                # one is not counted (its sandbox_seconds is kept apart).
                first = self.run_start(conf)
                log(f"start {image}: first templated start {first['ready']:.2f} s (template built or found)"
                    + (f"; {first['template_notes']}" if first["template_notes"] else ""))
                self.sizes.setdefault("start_first", {})[kind] = first["ready"]
                runs = [
                    ("cold (DRILL_SANDBOX_TEMPLATES=0)", lambda c=conf: self.run_start(c, {"DRILL_SANDBOX_TEMPLATES": "0"})),
                    ("template (default)", lambda c=conf: self.run_start(c)),
                ]
                if a.baseline:
                    runs.append(("before (--baseline)", lambda c=conf: self.run_start(c, drill=a.baseline)))
                self.measure(f"start-{kind}", runs, reps=a.starts)
        if want("bisect"):
            self.build_bisect()
            runs = [("this build", self.run_bisect)]
            if a.baseline:
                runs.append(("before (--baseline)", lambda: self.run_bisect(a.baseline)))
            self.measure("bisect", runs)

    def sum_b(self, dbs):
        parts = [self.run_b(f, fmt) for _, f, fmt in dbs]
        return {
            "wall": sum(p["wall"] for p in parts),
            "ready": statistics.mean(p["ready"] for p in parts),
            "load": sum(p["load"] for p in parts),
        }

    # ---------------------------------------------------------------- report

    @staticmethod
    def sessions_lines(runs):
        """How each A variant loaded its script: the report's
        `restore.sessions` of its first run."""
        got = []
        for label, rs in runs.items():
            ss = [x for x in rs[0].get("sessions") or [] if x] if "sessions" in rs[0] else None
            if ss is None:
                continue
            if not ss:
                got.append(f"- {label}: one psql session")
                continue
            for x in ss:
                got.append(
                    f"- {label}: {x['jobs']} sessions allowed, at most {x['widest']} at once, {x['groups']} groups;"
                    f" the dump's MiB per session {', '.join(f'{mib(b):.0f}' for b in x['bytes'])};"
                    f" {x['added_bytes'] / 1024:.1f} KiB added (state, chunk headers, WAL-skipping transactions);"
                    f" {x.get('wal_skipped_tables', 0)} tables loaded skipping WAL"
                    + (f"; to one session after: {'; '.join(x['serial_because'])}" if x.get("serial_because") else "")
                )
        return ["Sessions (the report's `restore.sessions`, first run):", "", *got, ""] if got else []

    def targets(self, med):
        """The issue's targets, each with its figure and met / NOT MET."""
        r = self.results
        rows = []

        def row(target, figure, met):
            """`met`: True/False against a target; None for a figure that is
            only measured."""
            status = "measured" if met is None else ("met" if met else "NOT MET")
            rows.append(f"| {target} | {figure} | {status} |")

        def have(s, *labels):
            return s in r and all(r[s].get(x) for x in labels)

        if have("plain", "A", "B"):
            x = med(r["plain"]["A"], "wall") / med(r["plain"]["B"], "wall")
            row("A/B ≤ 1.05, one plain dump", f"{x:.3f}", x <= 1.05)
        if have("plain", "A", "C"):
            x = med(r["plain"]["A"], "wall") / med(r["plain"]["C"], "wall")
            row("A/C (for information: the ingest limit)", f"{x:.3f}", True)
        for s, what in (("plain", "large dump"), ("small", "small dump")):
            if have(s, "A"):
                m = max(max(x["rss"], x["hwm"]) for x in r[s]["A"])
                row(f"drill peak RSS ≤ 64 MiB, {what} ({mib(self.sizes['bench.sql' if s == 'plain' else 'small.sql']):.0f} MiB)",
                    f"{mib(m):.1f} MiB", m <= 64 * 1024**2)
        if have("multi", "A parallelism=2", "B"):
            a2, b = med(r["multi"]["A parallelism=2"], "wall"), med(r["multi"]["B"], "wall")
            row("three databases: A (parallelism 2) below the sum of the B's", f"{a2:.1f} s vs {b:.1f} s", a2 < b)
        if have("custom", "A stream") and any(k.startswith("A jobs") for k in r.get("custom", {})):
            jobs = next(k for k in r["custom"] if k.startswith("A jobs"))
            st, jb = med(r["custom"]["A stream"], "wall"), med(r["custom"][jobs], "wall")
            auto = med(r["custom"]["A auto"], "wall") if r["custom"].get("A auto") else None
            row(f"custom dump: pg_restore --jobs used when it beats streaming ({jobs} vs stream; auto)",
                f"{jb:.1f} s vs {st:.1f} s" + (f"; auto {auto:.1f} s" if auto else ""),
                auto is None or auto <= min(st, jb) * 1.05)
        for sc, what in (("roles", "large"), ("roles-small", "small")):
            if have(sc, "A discovers", "A before (roles listed)"):
                d, b = med(r[sc]["A discovers"], "wall"), med(r[sc]["A before (roles listed)"], "wall")
                row(f"role discovery, measured ({what} plain dump: A discovering vs a build before it)",
                    f"{d:.1f} s vs {b:.1f} s ({(d / b - 1) * 100:+.1f}%)", True)
        if have("mariadb", "A", "B"):
            x = med(r["mariadb"]["A"], "wall") / med(r["mariadb"]["B"], "wall")
            row(f"MariaDB: A/B ({mib(self.sizes.get('gym-bench.sql', 0)):.0f} MiB mariadb-dump)", f"{x:.3f}", x <= 1.05)
        if have("mariadb", "A", "C"):
            x = med(r["mariadb"]["A"], "wall") / med(r["mariadb"]["C"], "wall")
            row("MariaDB: A/C (for information: the ingest limit)", f"{x:.3f}", True)
        if have("mariadb", "A"):
            m = max(max(x["rss"], x["hwm"]) for x in r["mariadb"]["A"])
            row("drill peak RSS ≤ 64 MiB, MariaDB dump", f"{mib(m):.1f} MiB", m <= 64 * 1024**2)
        if have("physical", "A", "B"):
            f = self.sizes.get("physical", {})
            x = med(r["physical"]["A"], "wall") / med(r["physical"]["B"], "wall")
            row(f"physical: A/B (base backup {mib(f.get('base_tar', 0)):.0f} MiB, "
                f"{mib(med(r['physical']['A'], 'wal_bytes')):.0f} MiB of WAL replayed)", f"{x:.3f}", x <= 1.05)
        if have("physical", "A"):
            m = max(max(x["rss"], x["hwm"]) for x in r["physical"]["A"])
            row("drill peak RSS ≤ 64 MiB, physical backup", f"{mib(m):.1f} MiB", m <= 64 * 1024**2)
        p = r.get("parallel", {})
        par = "A auto, cpus 2"
        if have("parallel", par, "C"):
            x = med(p[par], "wall") / med(p["C"], "wall")
            row("parallel psql sessions: A (auto, 2 CPUs)/C ≤ 0.80 (C: one `psql -f` of the file in the sandbox)",
                f"{x:.3f}", x <= 0.80)
        if have("parallel", par, "B"):
            x = med(p[par], "wall") / med(p["B"], "wall")
            row("parallel psql sessions: A (auto, 2 CPUs)/B ≤ 0.80", f"{x:.3f}", x <= 0.80)
        if have("parallel", par, "C"):
            ar, cl = med(p[par], "restore"), med(p["C"], "load")
            row("parallel psql sessions, restore phase only, for information (A auto's `restore.seconds` vs C's"
                " `psql -f`: the walls also hold the sandboxes' starts, A's from a template)",
                f"{ar:.1f} s vs {cl:.1f} s ({ar / cl:.3f})", None)
        multi_a = [k for k in p if k.startswith("A") and not k.startswith("A 1 session") and p[k]]
        if multi_a:
            m = max(max(x["rss"], x["hwm"]) for k in multi_a for x in p[k])
            widest = max((s["widest"] for k in multi_a for x in p[k] for s in x.get("sessions") or [] if s), default=1)
            row(f"drill peak RSS ≤ 64 MiB with several sessions (at most {widest} at once)", f"{mib(m):.1f} MiB",
                m <= 64 * 1024**2)
        for cpus in ("2", "1"):
            one = p.get(f"A 1 session, cpus {cpus}")
            several = next((k for k in multi_a if "sessions" in k and k.endswith(f"cpus {cpus}")), None)
            if one and several:
                o, n = med(one, "wall"), med(p[several], "wall")
                row(f"parallel psql sessions with {cpus} CPU{'s' if cpus != '1' else ''}, measured ({several} vs 1 session)",
                    f"{n:.1f} s vs {o:.1f} s ({n / o:.3f})", None)
        one, logged = p.get("A 1 session, cpus 2"), p.get("A 1 session, WAL logged, cpus 2")
        if one and logged:
            o, w = med(one, "restore"), med(logged, "restore")
            row("WAL-skipping loads, measured (restore.seconds, 1 session, 2 CPUs: large tables in a"
                " `BEGIN; TRUNCATE; COPY; COMMIT` against every row WAL-logged)",
                f"{o:.1f} s vs {w:.1f} s ({o / w:.3f}); walls {med(one, 'wall'):.1f} s vs {med(logged, 'wall'):.1f} s",
                None)
        pc = r.get("parallel-chunks", {})
        if pc and all(pc.values()):
            best = min(pc, key=lambda k: med(pc[k], "wall"))
            row("COPY chunk size, measured (fastest)",
                ", ".join(f"{k.split('chunk ')[-1]} {med(v, 'wall'):.1f} s" for k, v in pc.items()) + f"; {best.split('chunk ')[-1]}",
                None)
        if have("dumpall", "A auto", "A 1 session", "B"):
            d = r["dumpall"]
            au, one, b = med(d["A auto"], "wall"), med(d["A 1 session"], "wall"), med(d["B"], "wall")
            row(f"pg_dumpall of three databases ({mib(self.sizes.get('dumpall.sql', 0)):.0f} MiB), measured: A auto vs 1 session vs B",
                f"{au:.1f} s vs {one:.1f} s vs {b:.1f} s (A auto/B {au / b:.3f})", None)
        for kind, image in (("postgresql", self.args.image), ("mariadb", self.args.mariadb_image)):
            st = r.get(f"start-{kind}", {})
            if st.get("template (default)"):
                t = med(st["template (default)"], "ready")
                others = [f"{k.split(' (')[0]} {med(v, 'ready'):.2f} s" for k, v in st.items()
                          if v and k != "template (default)"]
                row(f"sandbox start to ready ≤ 1.0 s, `{image}` (template, median of {len(st['template (default)'])})",
                    f"{t:.2f} s" + (f" ({'; '.join(others)})" if others else ""), t <= 1.0)
        if have("bisect", "this build", "before (--baseline)"):
            t, b = med(r["bisect"]["this build"], "wall"), med(r["bisect"]["before (--baseline)"], "wall")
            row("bisect over 12 nights: wall time ≤ 0.50 × before (--baseline)", f"{t:.1f} s vs {b:.1f} s ({t / b:.3f})",
                t <= 0.5 * b)
        elif have("bisect", "this build"):
            row("bisect over 12 nights, measured (no --baseline: nothing to halve against)",
                f"{med(r['bisect']['this build'], 'wall'):.1f} s", True)
        if have("physical", "A"):
            a_runs = r["physical"]["A"]
            rate = statistics.median(x["wal_segments"] / x["replay"] for x in a_runs)
            row("physical: WAL segments per second of replay, measured (A)",
                f"{rate:.2f} ({statistics.median(x['wal_segments'] for x in a_runs):.0f} segments in"
                f" {med(a_runs, 'replay'):.1f} s)", True)
        if have("plain", "A", "A untuned"):
            t, u = med(r["plain"]["A"], "wall"), med(r["plain"]["A untuned"], "wall")
            row("restore tuning, measured (A tuned vs untuned)", f"{t:.1f} s vs {u:.1f} s", True)
        if not rows:
            return []
        return ["## Targets", "", "| target | figure | |", "|---|---|---|", *rows, ""]

    def machine(self):
        cpu = "?"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
        pg = out(f"docker run --rm --entrypoint postgres {self.args.image} --version")
        return [
            f"- CPU: {os.cpu_count()} × {cpu}",
            f"- memory: {mem / 1024**3:.1f} GiB",
            f"- kernel: {platform.release()}; cgroup {'v2' if Path('/sys/fs/cgroup/cgroup.controllers').exists() else 'v1'}",
            f"- Docker engine {out('docker version --format {{.Server.Version}}')}, storage driver {out('docker info --format {{.Driver}}')}",
            f"- image `{self.args.image}`: {pg}",
            f"- image `{self.args.mariadb_image}`: "
            + out(f"docker run --rm --entrypoint mariadbd {self.args.mariadb_image} --version 2>/dev/null || true"),
            f"- {out('restic version').split(' compiled')[0]}",
            f"- drill {out(f'{DRILL} --version')} at commit {out(f'git -C {REPO} rev-parse --short HEAD')}"
            + (" (uncommitted changes)" if out(f"git -C {REPO} status --porcelain -- src Cargo.toml Cargo.lock") else ""),
            f"- sandboxes: memory {self.args.memory_gib} GiB, cpus {self.args.cpus}; dumps on the same disk as Docker's",
        ]

    def load(self):
        raw = json.loads((self.work / "results.json").read_text())
        self.machine_lines, self.sizes, self.when = raw["machine"], raw["sizes"], raw["when"]
        self.results = raw["results"]
        self.argv = raw["argv"]
        self.scenario_when = raw.get("scenario_when", {k: raw["when"] for k in self.results})

    def write(self):
        a = self.args
        med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
        argv = self.argv
        fmt_runs = lambda runs: ", ".join(f"{r['wall']:.1f}" for r in runs)  # noqa: E731
        lines = [
            "# drill restore benchmark",
            "",
            "Run by `bench/run.py "
            + " ".join(argv)
            + "` (`+` separates a later run of some scenarios), medians of the rounds (each round runs every variant once, in turn).",
            "",
            "## Machine",
            "",
            *self.machine_lines,
            "",
        ]
        dumps = [
            line.format(mib(self.sizes[f]))
            for f, line in (
                ("bench.sql", "- `bench.sql` (plain): {:.0f} MiB"),
                ("bench.dump", "- `bench.dump` (custom, pg_dump's default compression): {:.0f} MiB"),
                ("small.sql", "- `small.sql` (plain): {:.0f} MiB; `multi-1..3.sql` are copies of it"),
                ("gym-bench.sql", "- `gym-bench.sql` (mariadb-dump --databases gym, one InnoDB table): {:.0f} MiB"),
                ("dumpall.sql", "- `dumpall.sql` (pg_dumpall of a cluster holding `small.sql` in databases a, b and c): {:.0f} MiB"),
            )
            if f in self.sizes
        ]
        if dumps:
            lines.extend(["## Dumps", "", *dumps, ""])
        f = self.sizes.get("physical")
        if f:
            lines.extend([
                "## Physical backup",
                "",
                f"- `/backups/auth_db/base_1`: `pg_basebackup -F tar -z -X stream -c fast` of a PostgreSQL {f.get('server', '15')}"
                f" cluster holding `pgbench -i -s {f['scale']}`: base.tar.gz {mib(f['base_tar_gz']):.0f} MiB"
                f" ({mib(f['base_tar']):.0f} MiB as a tar: the data directory), pg_wal.tar.gz {f['pg_wal_tar_gz'] / 1024:.0f} KiB,"
                f" backup_manifest; starts at {f['start_lsn']} ({f['start_segment']})",
                f"- `/backups/auth_db/wal`: the archive (`archive_command = 'cp %p …'`, pruned with `pg_archivecleanup` to"
                f" the base backup): {f['archive_segments']} segments, {mib(f['archive_bytes']):.0f} MiB, up to {f['last_segment']};"
                f" {mib(f['wal_after_base']):.0f} MiB of WAL written after the base backup's start by"
                f" {f['pgbench_seconds']} s of `pgbench -n -M prepared -c 2 -j 2` (TPC-B-like, full_page_writes on)",
                "- one restic snapshot of `/backups` in a repository of its own",
                "",
            ])
        rows = []

        def table(title, runs, ref=None, limit=None):
            lines.extend([f"## {title}", "", "| run | median wall s | runs (s) | vs B | vs C | sandbox ready s | load/restore s | MB/s | drill peak RSS MiB (report / VmHWM) |", "|---|---|---|---|---|---|---|---|---|"])
            b = runs.get("B")
            c = next((v for k, v in runs.items() if k.startswith("C")), None)
            for label, rs in runs.items():
                wall = med(rs, "wall")
                vs_b = f"{wall / med(b, 'wall'):.3f}" if b else ""
                vs_c = f"{wall / med(c, 'wall'):.3f}" if c else ""
                if "restore" in rs[0]:
                    load = med(rs, "restore")
                    rate = f"{med(rs, 'bytes') / load / 1e6:.1f}" if load else ""
                    rss = f"{mib(max(r['rss'] for r in rs)):.1f} / {mib(max(r['hwm'] for r in rs)):.1f}"
                else:
                    load, rate, rss = med(rs, "load"), "", ""
                lines.append(
                    f"| {label} | {wall:.1f} | {fmt_runs(rs)} | {vs_b} | {vs_c} | {med(rs, 'ready'):.1f} | {load:.1f} | {rate} | {rss} |"
                )
            lines.append("")

        def ptable(title, runs):
            """The physical scenario: the phases of a recovery."""
            lines.extend([
                f"## {title}", "",
                "| run | median wall s | runs (s) | vs B | sandbox s | base s | verify s | WAL fetch s | replay s | restore s | WAL replayed MiB | replay MB/s | WAL segments | segments/s | drill peak RSS MiB (report / VmHWM) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            ])
            b = runs.get("B")
            for label, rs in runs.items():
                wall = med(rs, "wall")
                vs_b = f"{wall / med(b, 'wall'):.3f}" if b else ""
                verify = f"{med(rs, 'verify'):.1f}" if "verify" in rs[0] else "(in base)"
                rss = f"{mib(max(r['rss'] for r in rs)):.1f} / {mib(max(r['hwm'] for r in rs)):.1f}" if "rss" in rs[0] else ""
                rate = med(rs, "wal_bytes") / med(rs, "replay") / 1e6
                # Segments per second of replay, per run, then the median
                # (runs from before B counted its segments have none).
                if all("wal_segments" in r for r in rs):
                    segs = f"{statistics.median(r['wal_segments'] for r in rs):.0f}"
                    seg_rate = f"{statistics.median(r['wal_segments'] / r['replay'] for r in rs):.2f}"
                else:
                    segs = seg_rate = ""
                lines.append(
                    f"| {label} | {wall:.1f} | {fmt_runs(rs)} | {vs_b} | {med(rs, 'ready'):.1f} | {med(rs, 'base'):.1f} | {verify}"
                    f" | {med(rs, 'wal_fetch'):.1f} | {med(rs, 'replay'):.1f} | {med(rs, 'restore'):.1f}"
                    f" | {mib(med(rs, 'wal_bytes')):.0f} | {rate:.1f} | {segs} | {seg_rate} | {rss} |"
                )
            lines.extend([
                "",
                "Columns: *wall* is the whole command (A: `drill run`, listing to report and sandbox removal; B: `docker run` to"
                " `docker rm`). *sandbox*: A the report's `sandbox_seconds` (the container created and started, its server held),"
                " B `docker run -d --entrypoint sleep`. *base*: A `base_seconds` (the listing, the `backup_label` read, base.tar.gz"
                " and pg_wal.tar.gz streamed into PGDATA, pg_verifybackup), B the two `restic dump | docker exec -i … tar -xz`;"
                " *verify*: B's manifest copy and `pg_verifybackup` (A's is in *base*). *WAL fetch*: one `restic dump` of the"
                " archive directory into `tar -x` in the container. *replay*: server start to the end of recovery (A"
                " `replay_seconds`, B `pg_ctl start` until `pg_is_in_recovery()` is false). *restore*: A `restore.seconds`,"
                " B base to replay. *WAL replayed*: the base backup's start to the last record replayed (A the report's"
                " `wal_bytes`, B `pg_last_wal_replay_lsn()` minus the backup_label's start). *replay MB/s*: that per second of"
                " replay (10⁶ bytes). *WAL segments*: the segments from the base backup's start to the last record replayed"
                " (A the report's `recovery.wal_segments`, B the same count from the two LSNs and `wal_segment_size`);"
                " *segments/s*: that per second of replay (median of the runs' ratios). *peak RSS*: drill's own"
                " (not restic's, not the sandbox's).",
                "",
            ])
            a_runs = runs.get("A")
            if a_runs:
                loss = [r["data_loss"] for r in a_runs if r.get("data_loss") is not None]
                lines.extend([
                    f"A's report, median: RTO {med(a_runs, 'rto'):.1f} s; {statistics.median(r['wal_segments'] for r in a_runs):.0f}"
                    f" WAL segments replayed in {med(a_runs, 'replay'):.1f} s"
                    f" ({statistics.median(r['wal_segments'] / r['replay'] for r in a_runs):.2f} segments/s);"
                    f" {mib(med(a_runs, 'restored_bytes')):.0f} MiB fed to the sandbox"
                    " (base.tar, pg_wal.tar and the archive's tar)"
                    + (f"; data loss {statistics.median(loss):.0f} s (the snapshot's time minus the last replayed commit)" if loss else "")
                    + ".",
                    "",
                ])

        titles = {
            "plain": "One plain dump (`bench.sql`)",
            "custom": "One custom-format dump (`bench.dump`)",
            "small": "A smaller plain dump (`small.sql`): memory at a second scale",
            "multi": "A snapshot of three databases (`multi-1..3.sql`)",
            "roles": "Role discovery on the plain dump (`bench.sql`): this build against one from before it (`--baseline`)",
            "roles-small": "Role discovery on the small dump (`small.sql`)",
            "mariadb": "A MariaDB dump (`gym-bench.sql`, mariadb-dump)",
            "physical": "A PostgreSQL physical backup (base backup + WAL archive, `target = \"latest\"`)",
            "parallel": "The plain dump (`bench.sql`) over several psql sessions (`restore_jobs`), with two CPUs and with one"
                        " (B and C with two)",
            "parallel-chunks": "The plain dump over several psql sessions: `COPY` chunk size (`DRILL_COPY_CHUNK_BYTES`),"
                               " `restore_jobs = \"auto\"`, two CPUs",
            "dumpall": "A `pg_dumpall` script of three databases (`dumpall.sql`): several psql sessions against one",
        }
        special = ("physical", "ledger", "start-postgresql", "start-mariadb", "bisect")
        lines.extend(self.targets(med))
        for k, runs in self.results.items():
            if all(runs.values()) and k not in special:
                table(f"{titles[k]}, run {self.scenario_when.get(k, self.when)}", runs)
                if k in ("parallel", "parallel-chunks", "dumpall"):
                    lines.extend(self.sessions_lines(runs))
        if set(self.results) - set(special):
            lines.extend([
                "Columns: *wall* is the whole command (A: `drill run`, listing to report and sandbox removal; B, C: `docker run` to `docker rm`, C without the copy into the container). *sandbox ready*: container start until it accepts connections. *load/restore*: A the restore phase as drill reports it (summed over databases), B the pipeline, C the load from the file. *MB/s*: dump bytes read from the repository per second of restore. *peak RSS*: drill's own (not restic's, not the sandbox's).",
                "",
            ])
        lr = self.results.get("ledger")
        ledger_sql = self.work / "stage" / "ledger" / "dumps" / "ledger.sql"
        if ledger_sql.exists():
            self.sizes["ledger.sql"] = ledger_sql.stat().st_size
        if lr and all(lr.values()):
            vh, one = lr["verify-history"], lr["drill run (one snapshot)"]
            n = vh[0]["snapshots"]
            per = med(vh, "wall") / n
            lines.extend([
                f"## The ledger: verify-history over {n} nightly snapshots, run {self.scenario_when.get('ledger', self.when)}",
                "",
                f"`ledger.sql`: `pg_dump` of `pgbench -i -s {a.ledger_scale}` ({mib(self.sizes.get('ledger.sql', 0)):.0f} MiB),"
                " re-dumped every night, one row changed before every third night's dump; one snapshot per night.",
                "",
                "| run | median wall s | runs (s) | restores | verified / inherited | per snapshot s |",
                "|---|---|---|---|---|---|",
                f"| verify-history, empty ledger | {med(vh, 'wall'):.1f} | {fmt_runs(vh)} | {vh[0]['restores']}"
                f" | {vh[0]['verified']} / {vh[0]['inherited']} | {per:.2f} |",
                f"| verify-history again (all known) | {med(vh, 'again_wall'):.1f} | | {vh[0]['again_restores']} | | |",
                f"| drill run, one snapshot | {med(one, 'wall'):.1f} | {fmt_runs(one)} | 1 | | {med(one, 'wall'):.2f} |",
                "",
                f"Verifying the whole history costs {med(vh, 'wall') / (n * med(one, 'wall')):.2f} of a plain `drill run` per"
                f" snapshot ({n} × {med(one, 'wall'):.1f} s): one restore per distinct content, the other nights inherit after"
                " one `restic dump` of their dump to hash it without its volatile parts (the `\\restrict` key).",
                "",
            ])
        if self.results.get("physical") and all(self.results["physical"].values()):
            ptable(f"{titles['physical']}, run {self.scenario_when.get('physical', self.when)}", self.results["physical"])
        for kind, image, dump in (("postgresql", a.image, "`shop.sql`, a 9 KiB plain pg_dump"),
                                  ("mariadb", a.mariadb_image, "`gym-full.sql.gz`, the MariaDB fixture's mysqldump")):
            runs = self.results.get(f"start-{kind}")
            if not (runs and all(runs.values())):
                continue
            first = self.sizes.get("start_first", {}).get(kind)
            lines.extend([
                f"## Sandbox start to ready, `{image}`, run {self.scenario_when.get(f'start-{kind}', self.when)}",
                "",
                f"`drill run` of a tiny dump ({dump}); each start is the report's `restore.sandbox_seconds` (the container"
                " created and started until its server answers as drill's superuser, the sandbox's own password set).",
                "",
                "| run | median start s | min s | max s | starts (s) | median wall s (drill run) |",
                "|---|---|---|---|---|---|",
            ])
            for label, rs in runs.items():
                ready = [r["ready"] for r in rs]
                lines.append(f"| {label} | {statistics.median(ready):.2f} | {min(ready):.2f} | {max(ready):.2f}"
                             f" | {', '.join(f'{x:.2f}' for x in ready)} | {med(rs, 'wall'):.1f} |")
            notes = sorted({n for rs in runs.values() for r in rs for n in r.get("template_notes", [])})
            lines.extend([
                "",
                (f"The first templated start, not counted: {first:.2f} s (it builds the template when there is none). " if first else "")
                + "*cold*: `DRILL_SANDBOX_TEMPLATES=0`, the data directory initialised by the entrypoint;"
                " *template (default)*: the variable unset (on this machine's storage driver the template is copied"
                " into a volume per sandbox unless the driver keeps deletions: src/sandbox/template.rs `Mode::Auto`);"
                " *before*: the --baseline build.",
                "",
                *([f"Template messages in the reports: {'; '.join(notes)}", ""] if notes else []),
            ])
        br = self.results.get("bisect")
        if br and all(br.values()):
            lines.extend([
                f"## `drill bisect` over the 12-night history, run {self.scenario_when.get('bisect', self.when)}",
                "",
                "12 snapshots of `fixtures/dumps/history` (a `pg_dumpall` of the frame fixture each night; night 8 shifts"
                " one journal line by 0.01); `drill bisect --database frame --json` from an empty ledger.",
                "",
                "| run | median wall s | runs (s) | restores | snapshots judged | first invalid | per restore s |",
                "|---|---|---|---|---|---|---|",
            ])
            for label, rs in br.items():
                restores = statistics.median(r["restores"] or 0 for r in rs)
                per = f"{med(rs, 'wall') / restores:.1f}" if restores else ""
                lines.append(f"| {label} | {med(rs, 'wall'):.1f} | {fmt_runs(rs)} | {restores:.0f}"
                             f" | {rs[0]['tested']} | {rs[0]['first_invalid']} | {per} |")
            lines.append("")
        lines.extend([
            "## Reproduce",
            "",
            "As root on a Debian bookworm machine with Docker, from a clone of this repository:",
            "",
            "```",
            "scripts/setup.sh            # restic 0.18, PostgreSQL client, the drill-postgres:15 image",
            "bench/run.py                # builds drill (release), the dataset, then every scenario",
            "bench/run.py --only custom  # one scenario again; the others keep their figures",
            "bench/run.py --render       # rewrite this file from bench/work/results.json",
            "# role discovery against a build from before it:",
            "git worktree add /tmp/drill-before b7920c4 && (cd /tmp/drill-before && cargo build --release)",
            "bench/run.py --only roles --baseline /tmp/drill-before/target/release/drill",
            "# the physical backup (its own dataset and repository in the work dir):",
            "bench/run.py --only physical --out bench/results-physical.md",
            "# the ledger (30 nightly snapshots in a repository of their own):",
            "bench/run.py --only ledger --out bench/results-ledger.md",
            "# plain scripts over several psql sessions (--chunks: also the COPY chunk size sweep):",
            "bench/run.py --only parallel,dumpall --chunks",
            "# sandbox start and bisect, this build against one from before (worktree as above, at that commit):",
            "bench/run.py --only start,bisect --baseline /tmp/drill-before/target/release/drill",
            "```",
            "",
            "`bench/run.py --help` lists the knobs (scale, rounds, sandbox memory and CPUs, jobs).",
            "",
        ])
        notes = REPO / "bench" / "notes.md"
        # The notes discuss the PostgreSQL scenarios: the dumps' in their
        # first section, the physical backup's in its own.
        # The sections `## Method: a, b` go with scenarios a, b.
        newer = {"parallel", "parallel-chunks", "dumpall", "start-postgresql", "start-mariadb", "bisect"}
        ran = {k.replace("start-postgresql", "start").replace("start-mariadb", "start").replace("parallel-chunks", "parallel")
               for k in self.results}
        if notes.exists():
            for section in re.split(r"(?m)^(?=## )", notes.read_text()):
                physical = section.startswith("## Reading the physical figures")
                method = re.match(r"## Method: (.*)", section)
                if method:
                    if ran & {x.strip() for x in method[1].split(",")}:
                        lines.extend([section.rstrip(), ""])
                elif (physical and "physical" in self.results) or (
                    not physical and section.strip() and set(self.results) - {"mariadb", "physical"} - newer
                ):
                    lines.extend([section.rstrip(), ""])
        text = "\n".join(lines)
        print(text)
        if a.out:
            Path(a.out).write_text(text)
            log(f"wrote {a.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=100, help="pgbench scale of the large dump (100 ≈ 1 GB plain)")
    p.add_argument("--small-scale", type=int, default=10, help="pgbench scale of the small dump")
    p.add_argument("--reps", "--rounds", dest="reps", type=int, default=3, help="rounds (medians over them)")
    p.add_argument("--image", default="drill-postgres:15")
    p.add_argument("--memory-gib", type=int, default=2, help="sandbox memory cap")
    p.add_argument("--cpus", type=float, default=2.0, help="sandbox CPU cap")
    p.add_argument("--jobs", type=int, default=2, help="pg_restore --jobs for the custom dump")
    p.add_argument("--work", default=str(REPO / "bench" / "work"), help="dataset and repository (kept between runs)")
    p.add_argument("--only", help="comma-separated scenarios: plain,custom,small,multi,roles,mariadb,physical,ledger,"
                                  "parallel,dumpall,start,bisect")
    p.add_argument("--plain-jobs", type=int, default=2,
                   help="scenario parallel: psql sessions of the several-session run with one CPU (where auto is 1)")
    p.add_argument("--chunks", nargs="?", const="256K,1M,4M", metavar="SIZES",
                   help="scenario parallel: also sweep the COPY chunk size (DRILL_COPY_CHUNK_BYTES) over SIZES"
                        " (default 256K,1M,4M); long: one restore of the plain dump per size and round")
    p.add_argument("--starts", type=int, default=10, help="scenario start: sandbox starts per variant and image (medians)")
    p.add_argument("--ledger-scale", type=int, default=5, help="pgbench scale of the ledger scenario's nightly dump")
    p.add_argument("--ledger-nights", type=int, default=30, help="nightly snapshots in the ledger scenario")
    p.add_argument("--mariadb-rows", type=int, default=3_000_000, help="rows of the MariaDB dump (3M ≈ 250 MB)")
    p.add_argument("--mariadb-image", default="drill-mariadb:10.11")
    p.add_argument("--physical-scale", type=int, default=70,
                   help="pgbench scale of the physical scenario's base backup (70 ≈ 1.1 GB data directory)")
    p.add_argument("--physical-wal-mib", type=int, default=1024,
                   help="WAL the physical scenario writes after its base backup (MiB; pgbench until reached)")
    p.add_argument("--baseline",
                   help="an older drill binary (e.g. built from an earlier commit) measured beside this build:"
                        " scenario roles (a build from before role discovery), start (before sandbox templates),"
                        " bisect (today's, to halve)")
    p.add_argument("--drill", help="the drill binary measured (default target/release/drill, built first unless --no-build)")
    p.add_argument("--out", default=str(REPO / "bench" / "results.md"))
    p.add_argument("--no-build", action="store_true", help="use target/release/drill as it is")
    p.add_argument("--render", action="store_true", help="only write --out again from work/results.json")
    args = p.parse_args()
    if args.render:
        b = Bench(args)
        b.load()
        b.write()
        return
    global DRILL
    if args.drill:
        DRILL = Path(args.drill).resolve()
    elif not args.no_build:
        sh(f"cd {REPO} && cargo build --release --locked")
    b = Bench(args)
    b.build_dataset()
    try:
        b.run()
    finally:
        b.write()


if __name__ == "__main__":
    main()
