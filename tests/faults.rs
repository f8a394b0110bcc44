//! The fault-injection suite: every way a drill can go wrong that drill
//! promises to handle, each against real restic repositories, real dumps
//! and the real Docker engine.
//!
//! Every case asserts the exit code, the verdict and the reason the report
//! names, and then [`Case::assert_clean`]: no sandbox of the drill is left,
//! no process the drill started is left (nothing on the machine names the
//! case's directories in its command line, environment or working
//! directory), drill's temporary directory is empty, and the repository's
//! files are byte-identical to what they were before the drill. No faulty
//! case may exit 0.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    database, dumps, healthy, report_of, require_environment, write_config, Db, TestRepo,
};
use serde_json::Value;

/// restic as the tests' own PATH finds it, wrapped: `dump` goes through a
/// trickle (`DRILL_TEST_TRICKLE` bytes every 0.1 s) or stalls after its
/// first 64 KiB (`DRILL_TEST_STALL=1`); `snapshots` hangs with
/// `DRILL_TEST_HANG_LISTING=1`; each call's command is appended to the
/// file `DRILL_TEST_CALLS` names. `pipefail`: the wrapper's exit status is
/// restic's when restic fails.
const RESTIC_WRAPPER: &str = r#"#!/bin/bash
set -o pipefail
if [ -n "$DRILL_TEST_CALLS" ]; then
  echo "$1" >> "$DRILL_TEST_CALLS"
fi
if [ "$1" = snapshots ] && [ -n "$DRILL_TEST_HANG_LISTING" ]; then
  sleep 3600
fi
if [ "$1" = dump ]; then
  restic "$@" | python3 -c '
import os, sys, time
chunk = int(os.environ.get("DRILL_TEST_TRICKLE", "4096"))
stall = os.environ.get("DRILL_TEST_STALL")
src, out, sent = sys.stdin.buffer, sys.stdout.buffer, 0
while True:
    b = src.read(chunk)
    if not b:
        break
    out.write(b)
    out.flush()
    sent += len(b)
    if stall and sent >= 65536:
        time.sleep(3600)
    time.sleep(0.1)
'
  exit
fi
exec restic "$@"
"#;

/// One fault: a repository, a config in a directory of its own, and the
/// repository's digest before anything ran.
struct Case {
    work: tempfile::TempDir,
    repo: TestRepo,
    config: PathBuf,
    before: BTreeMap<PathBuf, Vec<u8>>,
    /// Pids of the drills this case started.
    pids: Vec<u32>,
    /// What each drill this case spawned wrote to stderr so far.
    stderrs: Vec<Arc<Mutex<Vec<u8>>>>,
}

impl Case {
    /// A repository with one snapshot of `files`, and a config for `dbs`
    /// with `checks`; `extra` is appended to `drill.toml` (e.g. a
    /// `[timeouts]` table); `slow` puts the restic wrapper in `restic`.
    fn new(
        files: &[(&Path, &str)],
        dbs: &[&Db],
        checks: &[(&str, String)],
        extra: &str,
        slow: bool,
    ) -> Case {
        require_environment();
        let repo = TestRepo::new(files);
        Case::with_repo(repo, dbs, checks, extra, slow)
    }

    fn with_repo(
        repo: TestRepo,
        dbs: &[&Db],
        checks: &[(&str, String)],
        extra: &str,
        slow: bool,
    ) -> Case {
        let work = tempfile::tempdir().unwrap();
        let config = write_config(work.path(), &repo, dbs, checks);
        let mut text = std::fs::read_to_string(&config).unwrap();
        if slow {
            let wrapper = work.path().join("restic-slow");
            std::fs::write(&wrapper, RESTIC_WRAPPER).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            text = format!("restic = \"{}\"\n{text}", wrapper.display());
            // The image follows the dump: its head is read before the
            // sandbox starts, by the `restic dump` the restore goes on
            // reading.
            let image = common::image();
            let repo_name = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
            text = text.replacen(
                &format!("image = \"{image}\""),
                &format!("image = \"{repo_name}:{{major}}\""),
                1,
            );
        }
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        std::fs::create_dir_all(work.path().join("tmp")).unwrap();
        // A local sandbox's server runs as the `postgres` OS user when the
        // tests run as root: it must be able to reach drill's TMPDIR.
        use std::os::unix::fs::PermissionsExt;
        for d in [work.path().to_path_buf(), work.path().join("tmp")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let before = digest(&repo.repo);
        Case {
            work,
            repo,
            config,
            before,
            pids: Vec::new(),
            stderrs: Vec::new(),
        }
    }

    fn reports(&self) -> PathBuf {
        self.work.path().join("reports")
    }

    /// `drill --config … args`, with `env`, drill's TMPDIR in the case.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drill"));
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("TMPDIR", self.work.path().join("tmp"))
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_FILE");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Run drill to the end.
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> common::Run {
        let child = self
            .command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start drill");
        self.pids.push(child.id());
        child.wait_with_output().unwrap().into()
    }

    /// Start drill in the background; its stdout and stderr are collected
    /// by threads.
    fn spawn(&mut self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = self
            .command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start drill");
        self.pids.push(child.id());
        let stdout = read_all(child.stdout.take().unwrap());
        let (seen, stderr) = read_shared(child.stderr.take().unwrap());
        self.stderrs.push(seen);
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Wait (up to 60 s) for the restore of the drill spawned last to have
    /// started (its `restoring` line) and return the pid of the `restic
    /// dump` that streams it. That dump is the one that read the dump's
    /// head before the sandbox started: once the restore has begun it is
    /// the only one.
    fn wait_for_dump(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "no restore with its restic dump started; drill's stderr so far:\n{}",
                self.stderrs
                    .last()
                    .map(|e| String::from_utf8_lossy(&e.lock().unwrap()).into_owned())
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
            // The drill spawned last (a case may run several in turn).
            let restoring = self.stderrs.last().is_some_and(|e| {
                String::from_utf8_lossy(&e.lock().unwrap()).contains(": restoring ")
            });
            if !restoring {
                continue;
            }
            let dump = processes_naming(&self.repo.repo.to_string_lossy())
                .into_iter()
                .find(|p| {
                    p.argv.first().is_some_and(|a| a.ends_with("restic"))
                        && p.argv.iter().any(|a| a == "dump")
                });
            if let Some(p) = dump {
                return p.pid;
            }
        }
    }

    /// The invariants every case ends with.
    fn assert_clean(&self, run_ids: &[&str]) {
        // No sandbox: by run id, and by the pid label of every drill run.
        for id in run_ids {
            common::assert_no_sandbox_left(id);
        }
        for pid in &self.pids {
            let left = common::containers_matching(&format!("label=drill.pid={pid}"), false);
            assert!(
                left.is_empty(),
                "sandboxes of drill pid {pid} remain: {left:?}"
            );
        }
        // No process: nothing names the case's directories (restic has the
        // repository in its environment; wrappers and checks live in the
        // work directory). Killed groups may take a moment to go.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = processes_naming(&self.repo.dir.path().to_string_lossy());
            left.extend(processes_naming(&self.work.path().to_string_lossy()));
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes left behind: {:?}",
                left.iter()
                    .map(|p| (p.pid, p.argv.join(" ")))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // No temporary directory left by drill.
        let tmp: Vec<_> = std::fs::read_dir(self.work.path().join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(tmp.is_empty(), "drill left temporary files: {tmp:?}");
        // The repository is byte-identical (or still absent).
        let after = digest(&self.repo.repo);
        let changed: Vec<_> = self
            .before
            .keys()
            .chain(after.keys())
            .filter(|k| self.before.get(*k) != after.get(*k))
            .collect();
        assert!(
            changed.is_empty(),
            "the drill changed the repository: {changed:?}"
        );
    }
}

/// A drill started with [`Case::spawn`].
struct Running {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

/// Everything `pipe` gives until its end, read by a thread that also
/// keeps what it read so far in the shared buffer.
fn read_shared(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<Vec<u8>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let handle = std::thread::spawn(move || {
        let mut piece = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut piece) {
            if n == 0 {
                break;
            }
            keep.lock().unwrap().extend_from_slice(&piece[..n]);
        }
        let bytes = keep.lock().unwrap().clone();
        bytes
    });
    (seen, handle)
}

/// Everything `pipe` gives until its end, read by a thread.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).unwrap();
        bytes
    })
}

impl Running {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the end (at most 120 s): exit code (-1 when killed by a
    /// signal), stdout and stderr.
    fn finish(mut self) -> common::Run {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("drill did not end within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        std::process::Output {
            status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
        .into()
    }
}

/// Path → content of every file under `dir` (empty when it does not exist).
fn digest(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A process on this machine.
struct Proc {
    pid: u32,
    argv: Vec<String>,
}

/// Processes (other than this test) whose command line, environment or
/// working directory contains `needle`.
fn processes_naming(needle: &str) -> Vec<Proc> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap() {
        let e = e.unwrap();
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let read = |f: &str| std::fs::read(e.path().join(f)).unwrap_or_default();
        let cmdline = read("cmdline");
        if cmdline.is_empty() {
            continue; // kernel thread or zombie
        }
        let environ = read("environ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        let hit = |b: &[u8]| String::from_utf8_lossy(b).contains(needle);
        if hit(&cmdline) || hit(&environ) || cwd.to_string_lossy().contains(needle) {
            out.push(Proc {
                pid,
                argv: String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            });
        }
    }
    out
}

fn frame_case(extra: &str, slow: bool, checks: &[(&str, String)]) -> Case {
    let d = dumps();
    Case::new(
        &[(&d.join("frame-postgres.sql"), "frame-postgres.sql")],
        &[healthy("frame")],
        checks,
        extra,
        slow,
    )
}

fn hive_case(file: &Path, extra: &str) -> Case {
    Case::new(
        &[(file, "hive-postgres.sql")],
        &[healthy("hive")],
        &[],
        extra,
        false,
    )
}

/// Exit code, verdict and the reason: `reason` must be in the report's
/// reasons. Returns the report.
fn assert_outcome(case: &Case, run: &common::Run, code: i32, verdict: &str, reason: &str) -> Value {
    let (_, report) = report_of(run, &case.reports());
    assert_eq!(
        run.code, code,
        "stderr:\n{}\nreport: {report:#}",
        run.stderr
    );
    assert_eq!(report["verdict"], verdict, "{report:#}");
    let reasons = report["reasons"].to_string();
    assert!(
        reasons.contains(reason),
        "expected `{reason}` in the reasons: {reasons}"
    );
    report
}

fn run_id(report: &Value) -> &str {
    report["run_id"].as_str().unwrap()
}

#[test]
fn truncated_dump_fails() {
    // psql itself exits 0 on this file: only the missing trailer shows it.
    let mut case = hive_case(&dumps().join("broken/hive-truncated.sql"), "");
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 1, "failed", "is truncated");
    assert!(
        report["rto_seconds"].is_null(),
        "no RTO without a complete restore"
    );
    assert_eq!(report["policy"]["max_rto"]["status"], "unknown");
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn sql_error_mid_dump_fails() {
    let mut case = hive_case(&dumps().join("broken/hive-sql-error.sql"), "");
    let run = case.run(&[], &[]);
    let report = assert_outcome(
        &case,
        &run,
        1,
        "failed",
        r#"relation \"public.tenant_audit_log\" does not exist"#,
    );
    assert_eq!(database(&report, "hive")["restore"]["status"], "failed");
    case.assert_clean(&[run_id(&report)]);
}

/// hive and mysrt configured, only hive's dump backed up.
fn mysrt_missing_case() -> Case {
    let d = dumps();
    Case::new(
        &[(&d.join("hive-postgres.sql"), "hive-postgres.sql")],
        &[healthy("hive"), healthy("mysrt")],
        &[],
        "",
        false,
    )
}

#[test]
fn missing_dump_fails() {
    let mut case = mysrt_missing_case();
    let run = case.run(&[], &[]);
    let report = assert_outcome(
        &case,
        &run,
        1,
        "failed",
        "does not hold the dump /dumps/mysrt-postgres.sql.zst",
    );
    assert_eq!(database(&report, "hive")["restore"]["status"], "passed");
    case.assert_clean(&[run_id(&report)]);
}

/// The sandboxes of the first databases start while restic lists the
/// snapshot: one started for a dump the snapshot lacks is removed, also
/// with `--keep` (which keeps the one that passed).
#[test]
fn a_sandbox_started_for_a_missing_dump_is_removed_with_keep() {
    require_environment();
    let mut case = mysrt_missing_case();
    let run = case.run(&["--keep"], &[]);
    let report = assert_outcome(
        &case,
        &run,
        1,
        "failed",
        "does not hold the dump /dumps/mysrt-postgres.sql.zst",
    );
    let left = common::sandboxes_of_run(run_id(&report), false);
    let databases: Vec<String> = left
        .iter()
        .map(|id| {
            let o = std::process::Command::new("docker")
                .args([
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"drill.database\"}}",
                    id,
                ])
                .output()
                .unwrap();
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", id])
                .output();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(
        databases,
        ["hive"],
        "only the passed restore's sandbox is kept"
    );
}

#[test]
fn damaged_pack_fails() {
    require_environment();
    let d = dumps();
    let repo = TestRepo::new(&[(&d.join("frame-postgres.sql"), "frame-postgres.sql")]);
    repo.damage_largest_pack();
    let mut case = Case::with_repo(repo, &[healthy("frame")], &[], "", false);
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 1, "failed", "the repository is damaged");
    assert!(report["reasons"]
        .to_string()
        .contains("ciphertext verification failed"));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn wrong_password_is_no_verdict() {
    let mut case = hive_case(&dumps().join("hive-postgres.sql"), "");
    std::fs::write(&case.repo.password_file, "not the password\n").unwrap();
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "wrong password");
    assert_eq!(database(&report, "hive")["restore"]["status"], "not_run");
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn password_file_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mut case = hive_case(&dumps().join("hive-postgres.sql"), "");
    let pw = &case.repo.password_file;
    std::fs::set_permissions(pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "readable by group or others");
    assert!(report["reasons"].to_string().contains("chmod 600"));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn missing_repository_is_no_verdict() {
    let mut case = hive_case(&dumps().join("hive-postgres.sql"), "");
    let moved = case.repo.dir.path().join("moved-away");
    std::fs::rename(&case.repo.repo, &moved).unwrap();
    case.before = digest(&case.repo.repo);
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "does not exist");
    case.assert_clean(&[run_id(&report)]);
    assert!(
        !case.repo.repo.exists(),
        "drill created the missing repository"
    );
}

#[test]
fn docker_engine_unreachable_is_no_verdict() {
    let mut case = hive_case(&dumps().join("hive-postgres.sql"), "");
    let dead = case.work.path().join("dead.sock");
    let host = format!("unix://{}", dead.display());
    let run = case.run(&[], &[("DOCKER_HOST", &host)]);
    let report = assert_outcome(&case, &run, 3, "error", "reach the Docker engine");
    assert!(report["reasons"].to_string().contains("dead.sock"));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn sandbox_image_missing_is_no_verdict() {
    let mut case = hive_case(&dumps().join("hive-postgres.sql"), "");
    let text = std::fs::read_to_string(&case.config).unwrap();
    let text = text.replace(&common::image(), "drill-postgres:no-such-tag");
    std::fs::write(&case.config, text).unwrap();
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "drill-postgres:no-such-tag");
    assert!(report["reasons"].to_string().contains("get sandbox image"));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn sandbox_killed_mid_restore_is_no_verdict() {
    let mut case = frame_case("", true, &[]);
    let running = case.spawn(&[], &[]);
    case.wait_for_dump();
    let pid = running.child.id();
    let ids = common::containers_matching(&format!("label=drill.pid={pid}"), false);
    assert_eq!(ids.len(), 1, "one sandbox: {ids:?}");
    // The sandbox's superuser password, to prove it reaches no report.
    let env = Command::new("docker")
        .args(["inspect", "-f", "{{json .Config.Env}}", &ids[0]])
        .output()
        .unwrap();
    let env: Vec<String> = serde_json::from_slice(&env.stdout).unwrap();
    let password = env
        .iter()
        .find_map(|e| e.strip_prefix("POSTGRES_PASSWORD="))
        .expect("sandbox password")
        .to_string();
    let killed = Command::new("docker")
        .args(["kill", &ids[0]])
        .output()
        .unwrap();
    assert!(killed.status.success());
    let run = running.finish();
    let report = assert_outcome(&case, &run, 3, "error", "stopped unexpectedly");
    assert_eq!(database(&report, "frame")["restore"]["status"], "error");
    assert_no_secret(&case, &password, &run);
    case.assert_clean(&[run_id(&report)]);
}

/// A real pg_dump of hive, with a materialized view whose refresh needs
/// far more memory than a small sandbox has.
fn memory_hog_dump(dir: &Path) -> PathBuf {
    let healthy_dump = std::fs::read_to_string(dumps().join("hive-postgres.sql")).unwrap();
    let trailer = "-- PostgreSQL database dump complete";
    let at = healthy_dump.rfind(trailer).expect("trailer");
    let at = healthy_dump[..at].rfind("--\n").unwrap_or(at);
    let hungry = format!(
        "{}CREATE MATERIALIZED VIEW public.memory_hog AS SELECT length(string_agg(md5(g::text), '')) AS n FROM generate_series(1, 20000000) g;\n\n{}",
        &healthy_dump[..at],
        &healthy_dump[at..]
    );
    let file = dir.join("hive-postgres.sql");
    std::fs::write(&file, hungry).unwrap();
    file
}

/// Drill the memory hog with `memory` (and the local engine if `local`):
/// no verdict, the restore an error naming the limit `shown`.
fn out_of_memory_case(memory: &str, shown: &str, local: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut case = hive_case(&memory_hog_dump(dir.path()), "");
    let text = std::fs::read_to_string(&case.config).unwrap();
    std::fs::write(
        &case.config,
        text.replace("memory = \"1GiB\"", &format!("memory = \"{memory}\"")),
    )
    .unwrap();
    if local {
        use_local_engine(&case);
    }
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "ran out of memory");
    let error = database(&report, "hive")["restore"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains(shown) && error.contains("sandbox.memory"),
        "{error}"
    );
    assert_eq!(database(&report, "hive")["restore"]["status"], "error");
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn out_of_memory_is_reported_with_the_limit_not_as_a_bad_backup() {
    // Docker: the kernel kills the backend at the cgroup's cap.
    out_of_memory_case("128MiB", "128.0 MiB", false);
}

#[test]
fn local_engine_out_of_memory_is_reported_with_the_limit() {
    // Local: an allocation fails at RLIMIT_AS; PostgreSQL says
    // `out of memory` and the server lives on.
    out_of_memory_case("512MiB", "512.0 MiB", true);
}

#[test]
fn restic_killed_mid_stream_is_no_verdict() {
    let mut case = frame_case("", true, &[]);
    // About 10 KB/s: restic (which starts before the listing) still has
    // most of the dump to send when it is killed.
    let running = case.spawn(&[], &[("DRILL_TEST_TRICKLE", "1024")]);
    let restic = case.wait_for_dump();
    std::thread::sleep(Duration::from_millis(500));
    let ok = Command::new("kill")
        .args(["-KILL", &restic.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let run = running.finish();
    let report = assert_outcome(
        &case,
        &run,
        3,
        "error",
        "restic dump on tier `local` exited",
    );
    assert_eq!(database(&report, "frame")["restore"]["status"], "error");
    case.assert_clean(&[run_id(&report)]);
}

/// With `[timeouts] key = limit` and the wrapper told `hang` (an
/// environment variable): no verdict, the reason naming `phase` and the key.
fn times_out(key: &str, limit: &str, hang: &str, phase: &str) {
    let mut case = frame_case(&format!("\n[timeouts]\n{key} = \"{limit}\"\n"), true, &[]);
    let run = case.run(&[], &[(hang, "1")]);
    let report = assert_outcome(&case, &run, 3, "error", &format!("phase {phase}"));
    assert!(report["reasons"]
        .to_string()
        .contains(&format!("timeouts.{key}")));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn restic_stalling_mid_stream_times_out() {
    times_out("stall", "3s", "DRILL_TEST_STALL", "streaming");
}

#[test]
fn hanging_listing_times_out() {
    times_out("listing", "2s", "DRILL_TEST_HANG_LISTING", "listing");
}

#[test]
fn one_restic_dump_reads_the_head_and_then_restores() {
    // The image follows the dump (slow case): its head is read before the
    // sandbox starts, and that same `restic dump` feeds the restore.
    let mut case = frame_case("", true, &[]);
    let calls = case.work.path().join("calls");
    let run = case.run(
        &[],
        &[
            ("DRILL_TEST_CALLS", calls.to_str().unwrap()),
            ("DRILL_TEST_TRICKLE", "65536"),
        ],
    );
    let report = assert_outcome(&case, &run, 0, "passed", "");
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(
        calls.lines().filter(|c| *c == "dump").count(),
        1,
        "restic calls: {calls}"
    );
    let restore = &database(&report, "frame")["restore"];
    // Every byte counted once, the head's too.
    let size = std::fs::metadata(dumps().join("frame-postgres.sql"))
        .unwrap()
        .len();
    assert_eq!(restore["bytes"], size, "{restore}");
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn sigint_mid_restore_writes_a_report_naming_the_phase() {
    let mut case = frame_case("", true, &[]);
    let running = case.spawn(&[], &[]);
    let restic = case.wait_for_dump();
    // The repository password reaches restic through its environment,
    // never its arguments.
    let argv = std::fs::read(format!("/proc/{restic}/cmdline")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&argv).contains("correct horse"));
    running.signal("INT");
    let run = running.finish();
    let report = assert_outcome(
        &case,
        &run,
        3,
        "error",
        "interrupted by SIGINT during the restore of database `frame`",
    );
    assert_eq!(report["interrupted"]["signal"], "SIGINT");
    assert_eq!(report["interrupted"]["phase"], "restore");
    assert_eq!(report["interrupted"]["database"], "frame");
    assert_eq!(database(&report, "frame")["restore"]["status"], "error");
    assert!(report["rto_seconds"].is_null());
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn sigkill_then_reap_removes_what_the_killed_drill_left() {
    let mut case = frame_case("", true, &[]);
    let running = case.spawn(&[], &[]);
    case.wait_for_dump();
    let pid = running.child.id();
    let left = common::containers_matching(&format!("label=drill.pid={pid}"), false);
    assert_eq!(left.len(), 1);
    running.signal("KILL");
    assert_eq!(running.finish().code, -1, "killed by a signal");
    assert_eq!(
        common::containers_matching(&format!("label=drill.pid={pid}"), false),
        left,
        "SIGKILL leaves the sandbox"
    );
    let reap = case.run(&["reap"], &[]);
    assert_eq!(reap.code, 0, "{}\n{}", reap.stdout, reap.stderr);
    assert!(reap.stdout.contains("removed"), "{}", reap.stdout);
    case.assert_clean(&[]);
}

#[test]
fn two_drills_at_once_the_second_is_refused() {
    let mut case = frame_case("", true, &[]);
    let first = case.spawn(&[], &[]);
    case.wait_for_dump();
    let second = case.run(&[], &[]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(second.stderr.contains("drill.lock"), "{}", second.stderr);
    assert!(
        second.stderr.contains(&first.child.id().to_string()),
        "names the holder: {}",
        second.stderr
    );
    let run = first.finish();
    assert_eq!(
        run.code, 0,
        "the first drill is not disturbed: {}",
        run.stderr
    );
    let (_, report) = report_of(&run, &case.reports());
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn hanging_check_times_out_and_its_processes_go() {
    let script = "#!/bin/sh\nsleep 3600 &\nsleep 3600\n";
    let case_checks = [(
        "hang.toml",
        "kind = \"command\"\ndatabase = \"frame\"\ncommand = [\"./hang.sh\"]\ntimeout = \"2s\"\n"
            .to_string(),
    )];
    let mut case = frame_case("", false, &case_checks);
    let hang = case.work.path().join("checks/hang.sh");
    std::fs::write(&hang, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = case.run(&[], &[]);
    let report = assert_outcome(&case, &run, 3, "error", "check `hang`");
    assert!(report["reasons"]
        .to_string()
        .contains("did not finish within 2s"));
    case.assert_clean(&[run_id(&report)]);
}

#[test]
fn unknown_config_key_is_a_usage_error() {
    let mut case = hive_case(
        &dumps().join("hive-postgres.sql"),
        "\n[timeouts]\nstal = \"1m\"\n",
    );
    let run = case.run(&[], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("drill.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("timeouts.stal"), "{}", run.stderr);
    assert!(
        !case.reports().exists(),
        "no report for a config that does not load"
    );
    case.assert_clean(&[]);
}

#[test]
fn check_kind_typo_is_a_usage_error() {
    let checks = [(
        "count.toml",
        "kind = \"row-count\"\ndatabase = \"hive\"\n".to_string(),
    )];
    let d = dumps();
    let mut case = Case::new(
        &[(&d.join("hive-postgres.sql"), "hive-postgres.sql")],
        &[healthy("hive")],
        &checks,
        "",
        false,
    );
    let run = case.run(&[], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("count.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("row-count"), "{}", run.stderr);
    assert!(
        run.stderr.contains("row-counts"),
        "suggests the kinds: {}",
        run.stderr
    );
    case.assert_clean(&[]);
}

/// `secret` appears in no file drill wrote and not in its output.
fn assert_no_secret(case: &Case, secret: &str, run: &common::Run) {
    assert!(
        !run.stdout.contains(secret),
        "the secret is in drill's stdout"
    );
    assert!(
        !run.stderr.contains(secret),
        "the secret is in drill's stderr"
    );
    for (path, bytes) in digest(&case.reports()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret is in {}",
            path.display()
        );
    }
}

#[test]
fn secrets_reach_no_report_junit_metrics_or_output() {
    // The password comes from a command; a failing check makes every
    // output carry detail (reasons, findings, JUnit failure text).
    let password = "correct horse battery staple";
    let checks = [(
        "fails.toml",
        "kind = \"sql\"\ndatabase = \"hive\"\nquery = \"select count(*) from pg_class\"\n[expect]\nmax = 0\n"
            .to_string(),
    )];
    let d = dumps();
    let mut case = Case::new(
        &[(&d.join("hive-postgres.sql"), "hive-postgres.sql")],
        &[healthy("hive")],
        &checks,
        "",
        false,
    );
    let text = std::fs::read_to_string(&case.config).unwrap();
    let file = case.repo.password_file.display().to_string();
    let text = text.replace(
        &format!("password_file = \"{file}\""),
        &format!("password_command = \"cat {file}\""),
    );
    std::fs::write(&case.config, text).unwrap();
    let junit = case.reports().join("junit.xml");
    let metrics = case.reports().join("drill.prom");
    let run = case.run(
        &[
            "-v",
            "--junit",
            junit.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
        &[],
    );
    let report = assert_outcome(&case, &run, 1, "failed", "check `fails` failed");
    assert!(junit.is_file() && metrics.is_file());
    assert_no_secret(&case, password, &run);
    case.assert_clean(&[run_id(&report)]);
}

/// Switch a case's config to the local engine.
fn use_local_engine(case: &Case) {
    let text = std::fs::read_to_string(&case.config).unwrap();
    std::fs::write(
        &case.config,
        text.replacen("[sandbox]\n", "[sandbox]\nengine = \"local\"\n", 1),
    )
    .unwrap();
}

#[test]
fn local_engine_restores_and_checks_without_docker() {
    // pagila healthy and checked; hive truncated: the same restore path
    // must pass the one and fail the other, with Docker unreachable.
    let d = dumps();
    let checks = [film_count_check()];
    let mut case = Case::new(
        &[
            (&d.join("pagila.dump"), "pagila.dump"),
            (&d.join("broken/hive-truncated.sql"), "hive-postgres.sql"),
        ],
        &[healthy("pagila"), healthy("hive")],
        &checks,
        "",
        false,
    );
    use_local_engine(&case);
    let dead = format!(
        "unix://{}",
        case.work.path().join("no-docker.sock").display()
    );
    let doctor = case.run(&["doctor"], &[("DOCKER_HOST", &dead)]);
    assert!(
        doctor.stdout.contains("ok   engine local: usable"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("warn engine docker: not usable"),
        "{}",
        doctor.stdout
    );
    let run = case.run(&[], &[("DOCKER_HOST", &dead)]);
    let report = assert_outcome(&case, &run, 1, "failed", "is truncated");
    let pagila = database(&report, "pagila");
    assert_eq!(pagila["restore"]["status"], "passed", "{pagila:#}");
    assert_eq!(
        common::check(&report, "pagila", "films")["status"],
        "passed"
    );
    assert_eq!(database(&report, "hive")["restore"]["status"], "failed");
    case.assert_clean(&[run_id(&report)]);
    // --keep: the printed command connects; `drill reap` removes it.
    let kept = case.run(
        &["--keep", "--database", "pagila"],
        &[("DOCKER_HOST", &dead)],
    );
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    let line = kept
        .stderr
        .lines()
        .find(|l| l.contains("sandbox kept"))
        .unwrap_or_else(|| panic!("no `sandbox kept` line: {}", kept.stderr));
    let command = line.split('`').nth(1).expect("a command in backticks");
    let psql = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} -XAtc 'select count(*) from film'"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "1000",
        "{line}\n{psql:?}"
    );
    let reap = case.run(&["reap"], &[("DOCKER_HOST", &dead)]);
    assert_eq!(reap.code, 0, "{}", reap.stderr);
    case.assert_clean(&[]);
}

#[test]
fn local_engine_sigint_and_sigkill_leave_nothing_behind() {
    let mut case = frame_case("", true, &[]);
    use_local_engine(&case);
    // SIGINT mid-restore: the server and restic stop, the directory goes.
    let running = case.spawn(&[], &[]);
    case.wait_for_dump();
    running.signal("INT");
    let run = running.finish();
    let report = assert_outcome(&case, &run, 3, "error", "interrupted by SIGINT");
    case.assert_clean(&[run_id(&report)]);
    // SIGKILL mid-restore leaves the server; `drill reap` removes it.
    let running = case.spawn(&[], &[]);
    case.wait_for_dump();
    running.signal("KILL");
    assert_eq!(running.finish().code, -1, "killed by a signal");
    let tmp = case.work.path().join("tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        1,
        "the killed run's sandbox is left"
    );
    let reap = case.run(&["reap"], &[]);
    assert_eq!(reap.code, 0, "{}\n{}", reap.stdout, reap.stderr);
    assert!(reap.stdout.contains("removed"), "{}", reap.stdout);
    case.assert_clean(&[]);
}

// ---- Restore paths: pg_restore --jobs and databases at once ----

/// Set `key = value` in the case's `[sandbox]` table.
fn set_sandbox(case: &Case, setting: &str) {
    let text = std::fs::read_to_string(&case.config).unwrap();
    std::fs::write(
        &case.config,
        text.replacen("[sandbox]\n", &format!("[sandbox]\n{setting}\n"), 1),
    )
    .unwrap();
}

fn pagila_case(file: &Path, checks: &[(&str, String)]) -> Case {
    Case::new(
        &[(file, "pagila.dump")],
        &[healthy("pagila")],
        checks,
        "",
        false,
    )
}

fn film_count_check() -> (&'static str, String) {
    (
        "films.toml",
        "kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"select count(*) from film\"\n[expect]\nmin = 1000\n"
            .to_string(),
    )
}

#[test]
fn custom_dump_with_jobs_is_copied_into_the_sandbox_restored_and_the_copy_removed() {
    let mut case = pagila_case(&dumps().join("pagila.dump"), &[film_count_check()]);
    set_sandbox(&case, "restore_jobs = 2");
    let run = case.run(&["--keep", "-v"], &[]);
    let cleanup = RemoveKept(case.pids.clone());
    let report = assert_outcome(&case, &run, 0, "passed", "");
    assert!(
        run.stderr
            .contains("--jobs=2 (copied into the sandbox first)"),
        "the plan names the jobs: {}",
        run.stderr
    );
    assert_eq!(database(&report, "pagila")["restore"]["tool"], "pg_restore");
    assert_eq!(
        common::check(&report, "pagila", "films")["status"],
        "passed"
    );
    // The kept sandbox no longer holds the copy.
    let kept = common::sandboxes_of_run(run_id(&report), false);
    assert_eq!(kept.len(), 1, "one kept sandbox");
    let copy = Command::new("docker")
        .args(["exec", &kept[0], "ls", "/tmp"])
        .output()
        .unwrap();
    assert!(copy.status.success());
    assert!(
        !String::from_utf8_lossy(&copy.stdout).contains("drill-restore"),
        "the dump's copy was removed: {}",
        String::from_utf8_lossy(&copy.stdout)
    );
    drop(cleanup);
    case.assert_clean(&[run_id(&report)]);
}

/// Removes the sandboxes that `--keep` left of the given drills, also when
/// an assertion fails first.
struct RemoveKept(Vec<u32>);

impl Drop for RemoveKept {
    fn drop(&mut self) {
        for pid in &self.0 {
            for id in common::containers_matching(&format!("label=drill.pid={pid}"), false) {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v", &id])
                    .output();
            }
        }
    }
}

#[test]
fn truncated_custom_dump_fails_streamed_and_with_jobs() {
    let work = tempfile::tempdir().unwrap();
    let whole = std::fs::read(dumps().join("pagila.dump")).unwrap();
    let cut = work.path().join("pagila.dump");
    std::fs::write(&cut, &whole[..whole.len() * 6 / 10]).unwrap();
    for jobs in ["1", "2"] {
        let mut case = pagila_case(&cut, &[film_count_check()]);
        set_sandbox(&case, &format!("restore_jobs = {jobs}"));
        let run = case.run(&[], &[]);
        let report = assert_outcome(&case, &run, 1, "failed", "pg_restore exited with 1");
        let restore = &database(&report, "pagila")["restore"];
        assert_eq!(restore["status"], "failed", "jobs = {jobs}");
        assert_eq!(
            common::check(&report, "pagila", "films")["status"],
            "not_run",
            "jobs = {jobs}"
        );
        case.assert_clean(&[run_id(&report)]);
    }
}

#[test]
fn databases_restore_at_once_up_to_parallelism_with_progress_lines() {
    let d = dumps();
    let mut case = Case::new(
        &[
            (&d.join("frame-postgres.sql"), "frame-postgres.sql"),
            (&d.join("hive-postgres.sql"), "hive-postgres.sql"),
            (&d.join("mysrt-postgres.sql.zst"), "mysrt-postgres.sql.zst"),
        ],
        &[healthy("frame"), healthy("hive"), healthy("mysrt")],
        &[],
        "",
        true,
    );
    set_sandbox(&case, "parallelism = 2");
    // About 15 KB/s: frame's restore lasts over 10 s.
    let running = case.spawn(&[], &[("DRILL_TEST_TRICKLE", "1500")]);
    let pid = running.child.id();
    let mut most = 0;
    while running_is_alive(&running) {
        let now = common::containers_matching(&format!("label=drill.pid={pid}"), true).len();
        most = most.max(now);
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = running.finish();
    let report = assert_outcome(&case, &run, 0, "passed", "");
    assert_eq!(most, 2, "two sandboxes at once, never three");
    // Not a terminal: a plain progress line during the long restore.
    assert!(
        run.stderr.contains("frame: restored ") && run.stderr.contains("%) in "),
        "a progress line: {}",
        run.stderr
    );
    // The report keeps config order whatever order they finished in.
    let names: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["frame", "hive", "mysrt"]);
    case.assert_clean(&[run_id(&report)]);
}

fn running_is_alive(running: &Running) -> bool {
    // `kill -0` tells whether the process is still there (a zombie counts
    // until reaped by `finish`).
    std::fs::read_to_string(format!("/proc/{}/stat", running.child.id()))
        .is_ok_and(|s| !s.contains(") Z "))
}
