//! The three tiers: `ring` over restic's sftp backend against a real
//! OpenSSH server on 127.0.0.1, `cold` on rotated disks (one mounted,
//! possibly read-only), password sources, fallback from one tier to the
//! next, and the lock that keeps two drills of one config apart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn hive_repo() -> TestRepo {
    require_environment();
    let file = dumps().join(healthy_file("hive"));
    TestRepo::new(&[(&file, "hive-postgres.sql")])
}

/// A config drilling hive from the given `[tiers.*]`.
fn hive_config(dir: &Path, tiers: &str) -> PathBuf {
    write_config_with_tiers(dir, "max_rto = \"1h\"", tiers, &[healthy("hive")], &[])
}

fn reasons(report: &Value) -> String {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ring_over_sftp_passes_and_names_why_it_cannot_be_reached() {
    let repo = hive_repo();
    let sshd = Sshd::start();
    let pw = &repo.password_file;

    let work = tempfile::tempdir().unwrap();
    let tiers = sshd.tier("ring", &repo.repo, pw, "client_key");
    let config = hive_config(work.path(), &tiers);
    let run = drill(&config, &["run", "--tier", "ring"]);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(run.code, 0, "{}\n{report:#}", run.stderr);
    assert_eq!(report["tier"], "ring");
    assert!(
        report["repository"].as_str().unwrap().starts_with("sftp:"),
        "{report:#}"
    );
    assert_eq!(database(&report, "hive")["restore"]["status"], "passed");

    // (key, repository path, port, what the message must name)
    let missing = repo.dir.path().join("no-such-repo");
    let cases: [(&str, &Path, u16, &str); 3] = [
        (
            "wrong_key",
            &repo.repo,
            sshd.port,
            "Permission denied (publickey)",
        ),
        (
            "client_key",
            &repo.repo,
            closed_port(),
            "Connection refused",
        ),
        ("client_key", &missing, sshd.port, "does not exist"),
    ];
    for (key, path, port, cause) in cases {
        let work = tempfile::tempdir().unwrap();
        let tiers = sshd
            .tier("ring", path, pw, key)
            .replace(&format!("port = {}", sshd.port), &format!("port = {port}"));
        let config = hive_config(work.path(), &tiers);
        let run = drill(&config, &["run", "--tier", "ring"]);
        let (_, report) = report_of(&run, &work.path().join("reports"));
        assert_eq!(run.code, 3, "{cause}: {}\n{report:#}", run.stderr);
        assert_eq!(report["verdict"], "error");
        let why = reasons(&report);
        assert!(
            why.contains(cause) && why.contains("tier `ring`"),
            "{cause}: {why}"
        );
        assert!(run.stderr.contains(cause), "{cause}: {}", run.stderr);
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A read-only bind mount of `src` at `dst`, undone on drop.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(src: &Path, dst: &Path) -> Self {
        std::fs::create_dir_all(dst).unwrap();
        for args in [
            vec![
                "--bind".to_string(),
                src.display().to_string(),
                dst.display().to_string(),
            ],
            vec![
                "-o".into(),
                "remount,bind,ro".into(),
                dst.display().to_string(),
            ],
        ] {
            let o = Command::new("mount").args(&args).output().unwrap();
            assert!(
                o.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        ReadOnlyMount(dst.to_path_buf())
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn cold_tier_uses_the_mounted_disk_warns_off_rotation_and_reads_read_only() {
    let repo = hive_repo();
    let volumes = tempfile::tempdir().unwrap();
    let pattern = volumes.path().join("axe-cold-{disk}/restic-repo");
    let tiers = format!(
        "[tiers.cold]\nrepository = \"{}\"\ndisks = [1, 2, 3]\npassword_file = \"{}\"\n",
        pattern.display(),
        repo.password_file.display()
    );
    let work = tempfile::tempdir().unwrap();
    let config = hive_config(work.path(), &tiers);
    let reports = work.path().join("reports");

    // No disk mounted: exit 3, every path named.
    let run = drill(&config, &["run", "--tier", "cold"]);
    let (_, report) = report_of(&run, &reports);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let why = reasons(&report);
    for d in 1..=3 {
        let p = volumes.path().join(format!("axe-cold-{d}/restic-repo"));
        assert!(why.contains(&p.display().to_string()), "{why}");
    }
    assert!(why.contains("no disk of tier `cold` is mounted"), "{why}");

    // Disk 2 mounted, read-only, in the first quarter (rotation: disk 1).
    let disk2 = volumes.path().join("axe-cold-2/restic-repo");
    let _mount = ReadOnlyMount::new(&repo.repo, &disk2);
    assert!(
        std::fs::write(disk2.join("probe"), b"x").is_err(),
        "the mount must be read-only"
    );
    let before = tree_digest(&repo.repo);
    let run = drill_env(
        &config,
        &["run", "--tier", "cold"],
        &[("DRILL_NOW", "2027-02-15T03:00:00+09:00")],
    );
    let (_, report) = report_of(&run, &reports);
    assert_eq!(run.code, 0, "{}\n{report:#}", run.stderr);
    assert_eq!(report["disk"], 2);
    assert_eq!(report["repository"], disk2.display().to_string());
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("disk 2 is mounted, but the rotation expects disk 1 in 2027-Q1")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("the cold copy on disk 2 is")),
        "{warnings:?}"
    );
    assert!(
        run.stderr.contains("rotation expects disk 1"),
        "{}",
        run.stderr
    );
    assert_eq!(tree_digest(&repo.repo), before, "the repository changed");
}

/// (path, size, mtime) of every file under `dir`, sorted.
fn tree_digest(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fallback_from_a_broken_local_tier_to_a_healthy_ring() {
    let repo = hive_repo();
    let sshd = Sshd::start();
    let wrong = repo.dir.path().join("wrong-password");
    write_secret(&wrong, "not the password\n");
    let tiers = format!(
        "[tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n{}",
        repo.repo.display(),
        wrong.display(),
        sshd.tier("ring", &repo.repo, &repo.password_file, "client_key")
    );
    let work = tempfile::tempdir().unwrap();
    let config = hive_config(work.path(), &tiers);
    let run = drill(&config, &["run", "--fallback", "local,ring"]);
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(run.code, 0, "{}\n{report:#}", run.stderr);
    assert_eq!(report["tier"], "ring");
    assert_eq!(report["passed_tier"], "ring");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{report:#}");
    assert_eq!(attempts[0]["tier"], "local");
    assert_eq!(attempts[0]["verdict"], "error");
    assert!(
        attempts[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("wrong password"),
        "{attempts:?}"
    );
    assert_eq!(attempts[1]["tier"], "ring");
    assert_eq!(attempts[1]["verdict"], "passed");
    // The local attempt wrote its own report too.
    let local = work
        .path()
        .join("reports")
        .join(attempts[0]["report"].as_str().unwrap());
    assert!(local.is_file(), "{}", local.display());
    assert!(
        run.stderr.contains("falling back to tier ring"),
        "{}",
        run.stderr
    );
}

#[test]
fn password_prompt_on_a_terminal_works_and_without_one_exits_2() {
    let repo = hive_repo();
    let password = std::fs::read_to_string(&repo.password_file).unwrap();
    let password = password.trim();
    let tiers = format!(
        "[tiers.cold]\nrepository = \"{}\"\npassword_prompt = true\n",
        repo.repo.display()
    );
    let work = tempfile::tempdir().unwrap();
    let config = hive_config(work.path(), &tiers);
    let reports = work.path().join("reports");

    // No terminal: a new session without a controlling terminal.
    let o = Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_drill"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--tier", "cold"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("password_prompt") && stderr.contains("no terminal"),
        "{stderr}"
    );

    // Reached by fallback after a tier that found no verdict, the prompt
    // that cannot be asked is one more attempt without a verdict, not a
    // usage error that would hide the first attempt.
    let fallback = tempfile::tempdir().unwrap();
    let wrong = repo.dir.path().join("wrong-password");
    write_secret(&wrong, "not the password\n");
    let both = format!(
        "[tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n{tiers}",
        repo.repo.display(),
        wrong.display()
    );
    let fallback_config = hive_config(fallback.path(), &both);
    let o = Command::new("setsid")
        .arg("-w")
        .arg(env!("CARGO_BIN_EXE_drill"))
        .arg("--config")
        .arg(&fallback_config)
        .args(["run", "--fallback", "local,cold"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    // The last attempt's report (file names sort by time, then tier).
    let cold_report = std::fs::read_dir(fallback.path().join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-cold.json"))
        .expect("a report of the cold attempt");
    let last: Value = serde_json::from_slice(&std::fs::read(&cold_report).unwrap()).unwrap();
    let attempts = last["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{last:#}");
    assert_eq!(attempts[1]["tier"], "cold");
    assert_eq!(attempts[1]["verdict"], "error");
    assert!(
        attempts[1]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no terminal"),
        "{last:#}"
    );

    // A pseudo-terminal (util-linux `script`), answered on it.
    let cmd = format!(
        "{} --config {} run --tier cold",
        env!("CARGO_BIN_EXE_drill"),
        config.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::{Read, Write};
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Read the terminal's output on a thread; answer once the prompt is
        // there (echo is off by then).
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        all.extend_from_slice(&buf[..n]);
                        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
                    }
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let seen = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("the prompt did not appear within 60 s");
            if seen.contains("restic password for tier `cold`") {
                break;
            }
        }
        // rpassword prints the prompt, then turns echo off: a reply typed in
        // between is echoed by the terminal, as type-ahead is for sudo. Wait
        // until a person could have read the prompt.
        std::thread::sleep(std::time::Duration::from_secs(1));
        writeln!(stdin, "{password}").unwrap();
        let status = child.wait().unwrap();
        drop(stdin);
        let transcript = reader.join().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let transcript = transcript + &stderr;
        assert_eq!(status.code(), Some(0), "{transcript}");
        assert!(
            !transcript.contains(password),
            "the password was echoed: {transcript}"
        );
    }
    let (json, report) = report_of(
        &Run {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        },
        &reports,
    );
    assert_eq!(report["verdict"], "passed");
    for f in [
        json.clone(),
        json.with_extension("md"),
        reports.join("history.csv"),
    ] {
        assert!(
            !std::fs::read_to_string(&f).unwrap().contains(password),
            "{}",
            f.display()
        );
    }
}

#[test]
fn no_secret_in_child_argv_reports_or_output_and_one_drill_at_a_time() {
    let repo = hive_repo();
    let password = std::fs::read_to_string(&repo.password_file).unwrap();
    let password = password.trim().to_string();
    let work = tempfile::tempdir().unwrap();
    // restic behind a wrapper that records its argv, then waits for the
    // test to let it go (so a second drill meets the lock).
    let argv_log = work.path().join("restic-argv.log");
    let gate = work.path().join("gate");
    let wrapper = work.path().join("restic-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nwhile [ ! -e {gate} ]; do sleep 0.1; done\nexec restic \"$@\"\n",
            log = argv_log.display(),
            gate = gate.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let tiers = format!(
        "[tiers.local]\nrepository = \"{}\"\npassword_command = \"cat {}\"\n",
        repo.repo.display(),
        repo.password_file.display()
    );
    let config = hive_config(work.path(), &tiers);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("restic = \"{}\"\n{text}", wrapper.display()),
    )
    .unwrap();

    let first = Command::new(env!("CARGO_BIN_EXE_drill"))
        .arg("--config")
        .arg(&config)
        .args(["run", "--tier", "local"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first drill is inside restic, holding the lock.
    for _ in 0..200 {
        if argv_log.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(argv_log.exists(), "the first drill never ran restic");
    let second = drill(&config, &["run", "--tier", "local"]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("another drill of this config is running")
            && second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    std::fs::write(&gate, b"go").unwrap();
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("dump"), "{argv}");
    let reports = work.path().join("reports");
    let mut scanned = vec![
        ("restic argv".to_string(), argv),
        ("stderr".into(), stderr.to_string()),
    ];
    for e in std::fs::read_dir(&reports).unwrap() {
        let p = e.unwrap().path();
        scanned.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap_or_default(),
        ));
    }
    for (what, text) in scanned {
        assert!(
            !text.contains(&password),
            "{what} holds the repository password"
        );
    }
}

#[test]
fn snapshots_lists_each_snapshot_with_the_dumps_it_holds() {
    require_environment();
    let d = dumps();
    let hive = d.join(healthy_file("hive"));
    let pagila = d.join(healthy_file("pagila"));
    let repo = TestRepo::new(&[(&hive, "hive-postgres.sql"), (&pagila, "pagila.dump")]);
    repo.backup(&[(&hive, "hive-postgres.sql")]);
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        &repo,
        &[healthy("hive"), healthy("pagila")],
        &[],
    );

    let run = drill(&config, &["snapshots", "--tier", "local", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let size_of = |s: &Value, db: &str| {
        s["dumps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["database"] == db)
            .unwrap()["size"]
            .clone()
    };
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(size_of(&list[0], "hive"), len(&hive));
    assert_eq!(size_of(&list[0], "pagila"), len(&pagila));
    assert_eq!(size_of(&list[1], "hive"), len(&hive));
    assert!(size_of(&list[1], "pagila").is_null());
    assert_eq!(list[1]["hostname"], "fixture-host");
    assert!(list[0]["age_seconds"].as_f64().unwrap() >= 0.0);

    let table = drill(&config, &["snapshots", "--tier", "local"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[0].contains("time (Asia/Seoul)"), "{}", table.stdout);
    assert!(
        lines[2].contains("pagila MISSING") && lines[2].contains("KST"),
        "{}",
        table.stdout
    );

    let unknown = drill(&config, &["snapshots", "--tier", "nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
}

#[test]
fn doctor_checks_every_item_read_only_and_names_each_fix() {
    let repo = hive_repo();
    let volumes = tempfile::tempdir().unwrap();
    let wrong = repo.dir.path().join("wrong-password");
    write_secret(&wrong, "not the password\n");
    let healthy_tiers = format!(
        "[tiers.local]\nrepository = \"{}\"\npassword_file = \"{}\"\n\n\
         [tiers.cold]\nrepository = \"{}\"\ndisks = [1, 2]\npassword_file = \"{}\"\n",
        repo.repo.display(),
        repo.password_file.display(),
        volumes.path().join("cold-{disk}/repo").display(),
        repo.password_file.display()
    );
    let slack = "\n[slack]\nwebhook_url_command = \"echo https://hooks.example/x\"\n";
    let work = tempfile::tempdir().unwrap();
    let config = hive_config(work.path(), &healthy_tiers);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}{slack}")).unwrap();
    let before = tree_digest(&repo.repo);
    let run = drill(&config, &["doctor"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for line in [
        "ok   config:",
        "ok   restic: restic 0.",
        "ok   tier local:",
        "ok   engine docker: usable",
        "ok   engine local: usable",
        "ok   slack:",
    ] {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
    assert!(
        run.stdout
            .contains(&format!("ok   image {}: present", image())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warn tier cold: no disk of tier `cold` is mounted"),
        "{}",
        run.stdout
    );
    assert_eq!(
        tree_digest(&repo.repo),
        before,
        "doctor changed the repository"
    );

    // A wrong password and a missing image: each a FAIL with a fix. No
    // Slack is fine: it is optional.
    let broken = healthy_tiers.replacen(
        &repo.password_file.display().to_string(),
        &wrong.display().to_string(),
        1,
    );
    let work = tempfile::tempdir().unwrap();
    let config = hive_config(work.path(), &broken);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            &format!("image = \"{}\"", image()),
            "image = \"drill-test/no-such-image:1\"",
        ),
    )
    .unwrap();
    let run = drill(&config, &["doctor"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    for line in [
        "FAIL tier local: open repository",
        "wrong password",
        "FAIL image drill-test/no-such-image:1: not present",
        "ok   slack: no [slack]: reports are not posted (optional)",
        "fix: check the password source of [tiers.local]",
    ] {
        assert!(run.stdout.contains(line), "{line}:\n{}", run.stdout);
    }
    let password = std::fs::read_to_string(&repo.password_file).unwrap();
    assert!(!run.stdout.contains(password.trim()));
}
