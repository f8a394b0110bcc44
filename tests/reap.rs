//! Leftover sandboxes: a drill killed with SIGKILL is cleaned up by the next
//! run (only its sandboxes), and `drill reap` removes what no running drill
//! owns — never the sandbox of a drill that is still running.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// (run id, state) of every drill sandbox on the engine.
fn drill_sandboxes() -> Vec<(String, String)> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=drill.sandbox=true",
            "--format",
            "{{.Label \"drill.run-id\"}} {{.State}}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, s)| (r.to_string(), s.to_string()))
        .collect()
}

/// Wait until a running sandbox of a run other than `known` exists; its run id.
fn wait_for_new_running_sandbox(known: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some((run, _)) = drill_sandboxes()
            .into_iter()
            .find(|(r, s)| s == "running" && !known.contains(&r.as_str()))
        {
            return run;
        }
        assert!(Instant::now() < deadline, "no sandbox appeared in 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sandbox_exists(run_id: &str) -> bool {
    drill_sandboxes().iter().any(|(r, _)| r == run_id)
}

fn line_of<'a>(out: &'a str, run_id: &str) -> &'a str {
    out.lines()
        .find(|l| l.contains(run_id))
        .unwrap_or_else(|| panic!("no line for {run_id} in:\n{out}"))
}

#[test]
fn killed_run_is_reaped_by_the_next_run_and_reap_spares_running_drills() {
    require_environment();
    let repo = TestRepo::new(&[(&dumps().join("pagila.dump"), "pagila.dump")]);
    let work = tempfile::tempdir().unwrap();
    let check = "kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"select count(*) from film\"\n\n[expect]\nmin = 1000\n";
    // While the file `hold` exists, a drill waits in this check with its
    // sandbox running (a sandbox from a template is ready in under a
    // second: the whole drill could end before the test kills it).
    let hold_file = work.path().join("hold");
    let hold = format!(
        "kind = \"command\"\ndatabase = \"pagila\"\ntimeout = \"300s\"\ncommand = [\"sh\", \"-c\", \"while [ -e {} ]; do sleep 0.2; done\"]\n",
        hold_file.display()
    );
    let config = write_config(
        work.path(),
        &repo,
        &[healthy("pagila")],
        &[("films.toml", check.to_string()), ("hold.toml", hold)],
    );
    let reports = work.path().join("reports");

    // A sandbox kept on purpose by a finished run.
    let kept = drill(&config, &["run", "--keep"]);
    assert_eq!(kept.code, 0, "{}", kept.stderr);
    let (_, report) = report_of(&kept, &reports);
    let kept_run = report["run_id"].as_str().unwrap().to_string();
    assert!(sandbox_exists(&kept_run));

    // The sandbox publishes PostgreSQL on 127.0.0.1 only, capped in memory
    // and CPUs as configured (1 GiB, 1 CPU).
    let inspect = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=drill.run-id={kept_run}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8(inspect.stdout)
        .unwrap()
        .trim()
        .to_string();
    let out = Command::new("docker")
        .args(["inspect", "--format", "{{json .HostConfig}}", &id])
        .output()
        .unwrap();
    let host: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bindings = host["PortBindings"]["5432/tcp"].as_array().unwrap();
    assert_eq!(bindings.len(), 1, "{host}");
    assert_eq!(bindings[0]["HostIp"], "127.0.0.1", "{host}");
    assert_eq!(host["Memory"], 1024 * 1024 * 1024, "{host}");
    assert_eq!(host["NanoCpus"], 1_000_000_000i64, "{host}");

    // A drill killed with SIGKILL while its sandbox runs.
    std::fs::write(&hold_file, "").unwrap();
    // (sandboxes of other drills on this engine are not the child's)
    let before: Vec<String> = drill_sandboxes().into_iter().map(|(r, _)| r).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_drill"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let known: Vec<&str> = before.iter().map(String::as_str).collect();
    let killed_run = wait_for_new_running_sandbox(&known);

    // While it runs, reap keeps its sandbox and would remove the kept one.
    let dry = drill(&config, &["reap", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        line_of(&dry.stdout, &killed_run).starts_with("kept (its drill is running)"),
        "{}",
        dry.stdout
    );
    assert!(
        line_of(&dry.stdout, &kept_run).starts_with("would remove"),
        "{}",
        dry.stdout
    );
    assert!(sandbox_exists(&kept_run), "--dry-run removes nothing");

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::fs::remove_file(&hold_file).unwrap();
    assert!(sandbox_exists(&killed_run), "SIGKILL leaves the sandbox");
    let lock = std::fs::read_to_string(reports.join("drill.lock")).unwrap();
    assert!(
        lock.contains(&killed_run),
        "the lock file names the killed run: {lock}"
    );

    // The next run removes the killed run's sandbox, and only that.
    let next = drill(&config, &["run"]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr
            .contains("did not end cleanly; removed its 1 sandbox(es)")
            && next.stderr.contains(&killed_run),
        "{}",
        next.stderr
    );
    assert!(!sandbox_exists(&killed_run));
    assert!(
        sandbox_exists(&kept_run),
        "a kept sandbox is not the killed run's"
    );
    let (_, report) = report_of(&next, &reports);
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());

    // reap: --older-than spares the young; plain reap removes the kept one.
    let young = drill(&config, &["reap", "--older-than", "1h"]);
    assert_eq!(young.code, 0, "{}", young.stderr);
    assert!(
        line_of(&young.stdout, &kept_run).starts_with("kept (younger than --older-than)"),
        "{}",
        young.stdout
    );
    assert!(sandbox_exists(&kept_run));
    let reaped = drill(&config, &["reap"]);
    assert_eq!(reaped.code, 0, "{}", reaped.stderr);
    assert!(
        line_of(&reaped.stdout, &kept_run).starts_with("removed: "),
        "{}",
        reaped.stdout
    );
    assert!(!sandbox_exists(&kept_run));
    let lock = std::fs::read_to_string(reports.join("drill.lock")).unwrap();
    assert!(lock.trim().is_empty(), "no run holds the lock: {lock}");
}
