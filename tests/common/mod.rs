//! Shared test harness: real restic repositories made by restic from the
//! fixture dumps, real drill runs against the real Docker engine.
//!
//! Nothing here skips: a missing Docker engine, restic, image or fixture is a
//! test failure with the command that fixes it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Sandbox image used by tests (built offline by `scripts/build-image.sh`).
pub fn image() -> String {
    std::env::var("DRILL_TEST_IMAGE").unwrap_or_else(|_| "drill-postgres:15".into())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated fixture dumps (`fixtures/generate.sh`).
pub fn dumps() -> PathBuf {
    let d = root().join("fixtures/dumps");
    assert!(
        d.join("source-facts.json").is_file(),
        "fixture dumps are missing in {}: run scripts/setup.sh (or fixtures/generate.sh)",
        d.display()
    );
    d
}

/// Facts queried from the fixtures' source servers.
pub fn source_facts() -> Value {
    serde_json::from_slice(&std::fs::read(dumps().join("source-facts.json")).unwrap()).unwrap()
}

/// Assert that restic, the Docker engine and the image exist: a missing one
/// fails the test with the command that installs it.
pub fn require_environment() {
    let restic = Command::new("restic").arg("version").output();
    assert!(
        restic.as_ref().is_ok_and(|o| o.status.success()),
        "restic is not installed: run scripts/setup.sh"
    );
    let img = Command::new("docker")
        .args(["image", "inspect", &image()])
        .output();
    assert!(
        img.as_ref().is_ok_and(|o| o.status.success()),
        "the Docker engine is unreachable or image {} is missing: run scripts/setup.sh",
        image()
    );
}

/// Write a secret file with mode 0600 (drill refuses one that group or
/// others can read).
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A restic repository holding the given files under `/dumps/`.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub password_file: PathBuf,
}

impl TestRepo {
    /// `files`: (source file, name inside `/dumps/`). One snapshot.
    pub fn new(files: &[(&Path, &str)]) -> TestRepo {
        let r = TestRepo::empty();
        r.backup(files);
        r
    }

    /// A new repository without snapshots.
    pub fn empty() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let password_file = dir.path().join("restic-password");
        write_secret(&password_file, "correct horse battery staple\n");
        let r = TestRepo {
            dir,
            repo,
            password_file,
        };
        r.restic(&["init", "-q"], None);
        r
    }

    /// Add a snapshot holding exactly `files` under `/dumps/`, taken at
    /// `time` (restic's `--time`, `YYYY-MM-DD HH:MM:SS` local time).
    pub fn backup_at(&self, files: &[(&Path, &str)], time: &str) {
        let stage = self.stage(files);
        self.restic(
            &[
                "backup",
                "-q",
                "--host",
                "fixture-host",
                "--time",
                time,
                "dumps",
            ],
            Some(&stage),
        );
    }

    fn stage(&self, files: &[(&Path, &str)]) -> PathBuf {
        let stage = self.dir.path().join("stage");
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(stage.join("dumps")).unwrap();
        for (src, name) in files {
            std::fs::copy(src, stage.join("dumps").join(name)).unwrap();
        }
        stage
    }

    /// The snapshots as `restic snapshots --json` lists them, oldest first.
    pub fn snapshots(&self) -> Vec<Value> {
        let mut v: Vec<Value> =
            serde_json::from_str(&self.restic(&["snapshots", "--json"], None)).unwrap();
        v.sort_by_key(|s| s["time"].as_str().unwrap().to_string());
        v
    }

    /// Add a snapshot holding exactly `files` under `/dumps/`.
    pub fn backup(&self, files: &[(&Path, &str)]) {
        let stage = self.stage(files);
        self.restic(
            &["backup", "-q", "--host", "fixture-host", "dumps"],
            Some(&stage),
        );
    }

    pub fn restic(&self, args: &[&str], cwd: Option<&Path>) -> String {
        let mut c = Command::new("restic");
        c.args(args)
            .env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env_remove("RESTIC_PASSWORD");
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        let o = c.output().expect("run restic");
        assert!(
            o.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Flip bytes in the middle of the largest pack file (the dump data).
    pub fn damage_largest_pack(&self) -> PathBuf {
        let mut packs: Vec<(u64, PathBuf)> = walk(&self.repo.join("data"))
            .into_iter()
            .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
            .collect();
        packs.sort();
        let (len, pack) = packs.pop().expect("a pack file");
        let mut perms = std::fs::metadata(&pack).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&pack, perms).unwrap();
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = (len / 2) as usize;
        for b in &mut bytes[mid..mid + 16] {
            *b ^= 0xff;
        }
        std::fs::write(&pack, bytes).unwrap();
        pack
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// One `[[databases]]` entry for a test config.
pub struct Db {
    pub name: &'static str,
    pub path: &'static str,
    pub format: &'static str,
    pub roles: &'static [&'static str],
}

/// The six healthy fixture databases, as the demo and tests configure them.
pub const HEALTHY: [(&str, Db); 6] = [
    (
        "frame-postgres.sql",
        Db {
            name: "frame",
            path: "/dumps/frame-postgres.sql",
            format: "pg_dumpall",
            roles: &[],
        },
    ),
    (
        "index-postgres.sql.gz",
        Db {
            name: "index",
            path: "/dumps/index-postgres.sql.gz",
            format: "pg_dumpall",
            roles: &[],
        },
    ),
    (
        "hive-postgres.sql",
        Db {
            name: "hive",
            path: "/dumps/hive-postgres.sql",
            format: "plain",
            roles: &[],
        },
    ),
    (
        "mysrt-postgres.sql.zst",
        Db {
            name: "mysrt",
            path: "/dumps/mysrt-postgres.sql.zst",
            format: "plain",
            roles: &[],
        },
    ),
    (
        "blueprint-postgres.dump",
        Db {
            name: "blueprint",
            path: "/dumps/blueprint-postgres.dump",
            format: "custom",
            roles: &[],
        },
    ),
    (
        "pagila.dump",
        Db {
            name: "pagila",
            path: "/dumps/pagila.dump",
            format: "custom",
            roles: &[],
        },
    ),
];

/// A drill config in `dir` for `repo`, with `checks` as (file name, TOML).
pub fn write_config(
    dir: &Path,
    repo: &TestRepo,
    dbs: &[&Db],
    checks: &[(&str, String)],
) -> PathBuf {
    let tiers = format!(
        "[tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n",
        repo.repo.display(),
        repo.password_file.display()
    );
    write_config_with_tiers(
        dir,
        "max_rto = \"1h\"\nmax_snapshot_age = \"26h\"",
        &tiers,
        dbs,
        checks,
    )
}

/// A drill config in `dir` with the given `[policy]` body and `[tiers.*]`
/// TOML.
pub fn write_config_with_tiers(
    dir: &Path,
    policy: &str,
    tiers: &str,
    dbs: &[&Db],
    checks: &[(&str, String)],
) -> PathBuf {
    let mut t = format!(
        "timezone = \"Asia/Seoul\"\nreports_dir = \"reports\"\nchecks_dir = \"checks\"\n\n\
         [policy]\n{policy}\n\n\
         {tiers}\n\
         [sandbox]\nimage = \"{}\"\nmemory = \"1GiB\"\ncpus = 1.0\nstartup_timeout = \"120s\"\n",
        image()
    );
    for d in dbs {
        let roles: Vec<String> = d.roles.iter().map(|r| format!("\"{r}\"")).collect();
        t.push_str(&format!(
            "\n[[databases]]\nname = \"{}\"\npath = \"{}\"\nformat = \"{}\"\nroles = [{}]\n",
            d.name,
            d.path,
            d.format,
            roles.join(", ")
        ));
    }
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    for (name, body) in checks {
        std::fs::write(dir.join("checks").join(name), body).unwrap();
    }
    let p = dir.join("drill.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// A real OpenSSH server on 127.0.0.1 for the `ring` tier: key-only auth
/// for the current user, a throwaway host key, stopped on drop.
pub struct Sshd {
    child: std::process::Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "sshd is not installed: run scripts/setup.sh (installs openssh-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key", "wrong_key"] {
            let o = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key))
                .output()
                .expect("ssh-keygen");
            assert!(
                o.status.success(),
                "ssh-keygen: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             Subsystem sftp internal-sftp\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
        )
        .unwrap();
        let mut s = Sshd { child, dir, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "sshd exited ({status}): {}",
                    std::fs::read_to_string(s.dir.path().join("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("sshd did not listen on 127.0.0.1:{port}");
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The local user the server lets in.
    pub fn user() -> String {
        let o = Command::new("id").arg("-un").output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `[tiers.NAME]` for `repo` reached through this server with `key`.
    pub fn tier(&self, name: &str, repo_path: &Path, password_file: &Path, key: &str) -> String {
        format!(
            "[tiers.{name}]\nrepository = \"sftp:{}@127.0.0.1:{}\"\npassword_file = \"{}\"\n\n\
             [tiers.{name}.ssh]\nport = {}\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = \"5s\"\n",
            Self::user(),
            repo_path.display(),
            password_file.display(),
            self.port,
            self.key(key).display(),
            self.key("known_hosts").display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of one `drill` invocation.
pub struct Run {
    /// Exit code; -1 when drill was ended by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Run {
    fn from(o: std::process::Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn drill(config: &Path, args: &[&str]) -> Run {
    drill_env(config, args, &[])
}

pub fn drill_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drill"));
    c.arg("--config").arg(config).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_PASSWORD_FILE");
    c.output().expect("run drill").into()
}

/// The newest JSON report `run` wrote in `reports_dir`.
pub fn report_of(run: &Run, reports_dir: &Path) -> (PathBuf, Value) {
    let mut jsons: Vec<PathBuf> = std::fs::read_dir(reports_dir)
        .unwrap_or_else(|e| {
            panic!(
                "no reports in {}: {e}\nexit code {}\nstderr:\n{}",
                reports_dir.display(),
                run.code,
                run.stderr
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    jsons.sort();
    let p = jsons.pop().expect("a JSON report");
    let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    (p, v)
}

/// The database entry `name` of a report.
pub fn database<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("database {name} in report"))
}

/// Ids of containers labelled with `run_id`; `running_only` leaves out
/// stopped ones.
pub fn sandboxes_of_run(run_id: &str, running_only: bool) -> Vec<String> {
    containers_matching(&format!("label=drill.run-id={run_id}"), running_only)
}

/// Ids of containers matching a `docker ps` filter; `running_only` leaves
/// out stopped ones.
pub fn containers_matching(filter: &str, running_only: bool) -> Vec<String> {
    let mut args = vec!["ps", "-q", "--filter", filter];
    if !running_only {
        args.push("-a");
    }
    let o = Command::new("docker").args(&args).output().unwrap();
    assert!(
        o.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Assert no container labelled with `run_id` remains.
pub fn assert_no_sandbox_left(run_id: &str) {
    let left = sandboxes_of_run(run_id, false);
    assert!(
        left.is_empty(),
        "sandboxes of run {run_id} remain: {left:?}"
    );
}

/// Point `config` at the project's shipped `checks/` instead of its own.
pub fn use_shipped_checks(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let shipped = root().join("checks");
    let text = text.replacen(
        "checks_dir = \"checks\"",
        &format!("checks_dir = \"{}\"", shipped.display()),
        1,
    );
    std::fs::write(config, text).unwrap();
}

/// The `[[databases]]` entry of `HEALTHY` named `name`.
pub fn healthy(name: &str) -> &'static Db {
    &HEALTHY
        .iter()
        .find(|(_, d)| d.name == name)
        .unwrap_or_else(|| panic!("no healthy fixture {name}"))
        .1
}

/// The file name of the healthy dump of `name` (its name in `/dumps/`).
pub fn healthy_file(name: &str) -> &'static str {
    HEALTHY
        .iter()
        .find(|(_, d)| d.name == name)
        .unwrap_or_else(|| panic!("no healthy fixture {name}"))
        .0
}

/// The check `name` of database `db` in a report.
pub fn check<'a>(report: &'a Value, db: &str, name: &str) -> &'a Value {
    database(report, db)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("check {name} of {db} in report: {report:#}"))
}

/// (name, status) of every check of database `db` in a report.
pub fn check_statuses(report: &Value, db: &str) -> Vec<(String, String)> {
    database(report, db)["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A throwaway PostgreSQL server in a container, to load files into or
/// to dump from; removed on drop. Ready once it answers over TCP: the
/// entrypoint's temporary init server listens on the socket only.
pub struct Scratch {
    pub name: String,
}

impl Scratch {
    /// A server of the test image.
    pub fn start() -> Scratch {
        Scratch::start_image(&image())
    }

    /// A server of `image`.
    pub fn start_image(image: &str) -> Scratch {
        let present = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .unwrap();
        assert!(
            present.status.success(),
            "image {image} is missing: run scripts/setup.sh (it builds drill-postgres:15 and :17)"
        );
        let name = format!(
            "drill-test-scratch-{}-{}",
            std::process::id(),
            image.replace([':', '/'], "-")
        );
        let o = Command::new("docker")
            .args([
                "run",
                "-d",
                "--rm",
                "--name",
                &name,
                "-e",
                "POSTGRES_PASSWORD=scratch",
                image,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s = Scratch { name };
        for _ in 0..120 {
            if s.psql("postgres", None, "select 1").is_ok() {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("scratch server did not start");
    }

    /// Run psql (ON_ERROR_STOP) with `sql`, or with `file` on stdin.
    pub fn psql(&self, db: &str, file: Option<&Path>, sql: &str) -> Result<String, String> {
        self.psql_with(db, file, sql, "1")
    }

    pub fn psql_with(
        &self,
        db: &str,
        file: Option<&Path>,
        sql: &str,
        stop: &str,
    ) -> Result<String, String> {
        // Over TCP: the entrypoint's temporary init server listens on the
        // socket only, so only the final server answers (and readiness
        // cannot be mistaken).
        let mut c = Command::new("docker");
        c.args(["exec", "-i", "-e", "PGPASSWORD=scratch", "-u", "postgres"])
            .args([&self.name, "psql", "-X", "-q", "-A", "-t"])
            .args(["-h", "127.0.0.1", "-U", "postgres"])
            .args(["-v", &format!("ON_ERROR_STOP={stop}"), "-d", db]);
        if file.is_none() {
            c.args(["-c", sql]);
        }
        c.stdin(match file {
            Some(f) => std::process::Stdio::from(std::fs::File::open(f).unwrap()),
            None => std::process::Stdio::null(),
        });
        let o = c.output().unwrap();
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// The metric family names in the Prometheus text-format file `path`, as
/// the Prometheus project's Python client parses them
/// (`prometheus_client.parser`, Debian's python3-prometheus-client,
/// installed by scripts/install-deps.sh). Panics, naming the parser's
/// error, when the file does not parse.
pub fn prometheus_families(path: &Path) -> Vec<String> {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\nfor f in parse(open(sys.argv[1]).read()):\n    for s in f.samples:\n        pass\n    print(f.name)\n";
    // Debian's interpreter: the package's module is installed for it, not
    // for another python3 earlier on PATH.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{} is not valid Prometheus text format (or the parser is missing: run scripts/setup.sh): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The Jenkins xUnit plugin's JUnit schema (fixtures/junit/SOURCE.md).
pub fn junit_schema() -> PathBuf {
    root().join("fixtures/junit/jenkins-junit.xsd")
}

/// Panics, with xmllint's complaint, unless the XML file `path` is valid
/// under the Jenkins JUnit schema ([`junit_schema`]). Needs `xmllint`
/// (Debian's libxml2-utils, installed by scripts/install-deps.sh); without
/// it the test fails rather than skips.
pub fn assert_valid_junit(path: &Path) {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(junit_schema())
        .arg(path)
        .output()
        .expect("xmllint (Debian libxml2-utils; run scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{} is not valid under the Jenkins JUnit schema:\n{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// One database of [`sample_report`]: name, restore status, restore error,
/// and its checks as (name, status, finding).
pub type SampleDatabase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a [(&'a str, &'a str, &'a str)],
);

/// A report as `drill run` writes it, made without a drill, for tests of
/// its writers (JUnit, Slack): tier `local`, snapshot `0123abcd…`, a
/// one-hour RTO limit; `databases` as (name, restore status, restore error,
/// [(check, status, finding)]), each status as in the JSON (`passed`,
/// `failed`, `error`, `not_run`).
pub fn sample_report(
    verdict: &str,
    reasons: &[&str],
    databases: &[SampleDatabase<'_>],
) -> drill::report::Report {
    let dbs: Vec<Value> = databases
        .iter()
        .map(|(name, status, error, checks)| {
            serde_json::json!({
                "name": name, "path": format!("/dumps/{name}.sql"), "format": "pg_dumpall",
                "dbname": name,
                "restore": {
                    "status": status, "bytes": 1_048_576, "restored_bytes": 4_194_304,
                    "seconds": 12.5, "error": error, "tool": "psql", "image": "postgres:16",
                    "server_version": "16.4", "sandbox_seconds": 2.0
                },
                "checks": checks.iter().map(|(c, s, finding)| serde_json::json!({
                    "name": c, "kind": "sql", "status": s, "seconds": 0.25,
                    "detail": if *s == "passed" { "ok".to_string() } else { format!("{c} {s}") },
                    "findings": if finding.is_empty() { vec![] } else { vec![finding.to_string()] },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let limit = |limit: f64, actual: f64| {
        serde_json::json!({
            "status": if actual <= limit { "passed" } else { "failed" },
            "limit_seconds": limit, "actual_seconds": actual
        })
    };
    serde_json::from_value(serde_json::json!({
        "format_version": 1,
        "run_id": "20270115t030000z-test00",
        "drill_version": "0.0.0-test",
        "tier": "local",
        "repository": "/backups/local",
        "verdict": verdict,
        "reasons": reasons,
        "started_at": "2027-01-14T18:00:00Z",
        "finished_at": "2027-01-14T18:05:00Z",
        "rto_seconds": 290.0,
        "snapshot": {
            "id": "0123abcd".repeat(8), "short_id": "0123abcd",
            "time": "2027-01-14T02:00:00+09:00", "age_seconds": 57600.0,
            "hostname": "mini", "tags": []
        },
        "policy": {
            "max_rto": limit(3600.0, 290.0),
            "max_snapshot_age": limit(93600.0, 57600.0)
        },
        "databases": dbs,
    }))
    .expect("a report in the JSON shape drill writes")
}
