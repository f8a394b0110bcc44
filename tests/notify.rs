//! After a drill: the Slack message (webhook and bot token) posted to a fake
//! Slack on 127.0.0.1, its retries, exit 4 when a passed drill cannot be
//! told, and the JUnit and Prometheus files — from real drills of a real
//! restic snapshot in real sandboxes. The message's layout (failures first,
//! passing databases on one line, the note on what was cut, the report
//! link) from reports made by hand, and `drill notify --test` against the
//! fake Slack, need no sandbox.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;

/// One request the fake Slack received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted HTTP/1.1 server on 127.0.0.1: answers the n-th request with
/// the n-th response (the last one repeats) and records every request.
struct FakeSlack {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// (status, extra headers, content type, body)
type Response = (
    u16,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

impl FakeSlack {
    fn start(responses: Vec<Response>) -> FakeSlack {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.is_empty() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_lowercase(), v.trim().to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(Request {
                    method,
                    path,
                    headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                let (status, extra, ctype, text) = &responses[n.min(responses.len() - 1)];
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    text.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(text.as_bytes());
                let _ = stream.flush();
            }
        });
        FakeSlack { port, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn sql_check(query: &str, expect: &str) -> String {
    format!("kind = \"sql\"\ndatabase = \"pagila\"\nquery = \"\"\"\n{query}\n\"\"\"\n\n[expect]\n{expect}\n")
}

/// A repository with one snapshot of the Pagila dump.
fn pagila_repo() -> TestRepo {
    require_environment();
    TestRepo::new(&[(&dumps().join("pagila.dump"), "pagila.dump")])
}

/// A check that passes on Pagila.
fn films_exist() -> (&'static str, String) {
    (
        "films-exist.toml",
        sql_check("select count(*) from film", "min = 1000"),
    )
}

/// A config for a snapshot of Pagila with `checks`, plus `slack` appended.
fn pagila_config(
    work: &std::path::Path,
    repo: &TestRepo,
    checks: &[(&str, String)],
    slack: &str,
) -> std::path::PathBuf {
    let config = write_config(work, repo, &[healthy("pagila")], checks);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(slack);
    std::fs::write(&config, text).unwrap();
    config
}

fn texts_of_blocks(body: &serde_json::Value) -> String {
    // Every string anywhere in the blocks, joined: what a reader sees.
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut s = String::new();
    walk(&body["blocks"], &mut s);
    s
}

const OK_TEXT: Response = (200, vec![], "text/html", "ok");

#[test]
fn failed_drill_is_posted_to_the_webhook_with_junit_and_metrics() {
    let repo = pagila_repo();
    let work = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(vec![OK_TEXT]);
    let hook_path = "/services/T0TEST/B0TEST/s3cretHookToken";
    let hook_file = work.path().join("slack-webhook");
    std::fs::write(
        &hook_file,
        format!("http://127.0.0.1:{}{hook_path}\n", slack.port),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let checks = vec![
        (
            "rentals-wrong.toml",
            sql_check("select count(*) from rental", "equals = 1"),
        ),
        films_exist(),
    ];
    let config = pagila_config(
        work.path(),
        &repo,
        &checks,
        &format!(
            "\n[slack]\nwebhook_url_file = \"{}\"\n",
            hook_file.display()
        ),
    );
    let out = work.path().join("out");
    let junit = out.join("drill.xml");
    let metrics = out.join("drill.prom");
    let run = drill(
        &config,
        &[
            "run",
            "--junit",
            junit.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("s3cretHookToken"), "{}", run.stderr);
    let (json_path, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(report["verdict"], "failed");

    // Slack: one POST to the webhook's path, Block Kit naming the verdict,
    // the tier, the failing check and its finding.
    let reqs = slack.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, hook_path);
    assert!(reqs[0].header("authorization").is_none());
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).expect("JSON body");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    let text = texts_of_blocks(&body);
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("tier local"), "{text}");
    assert!(text.contains("rentals-wrong"), "{text}");
    assert!(text.contains("value is 16044, expected 1"), "{text}");
    assert!(text.contains("✅ films-exist"), "{text}");
    let html = json_path.with_extension("html");
    assert!(text.contains(&html.display().to_string()), "{text}");
    assert!(body["text"].as_str().unwrap().contains("FAILED"));

    // The HTML page beside the JSON.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("value is 16044, expected 1"));

    // JUnit: restore, two checks, two policy limits and the verdict; the
    // failing check and the verdict are the failures.
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit parses as XML");
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    assert_eq!(suites.attribute("tests"), Some("6"));
    assert_eq!(suites.attribute("failures"), Some("2"));
    assert_eq!(suites.attribute("errors"), Some("0"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 6);
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| c.children().any(|x| x.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(failed, ["check rentals-wrong", "verdict"]);
    let failure = cases
        .iter()
        .find(|c| c.attribute("name") == Some("check rentals-wrong"))
        .unwrap()
        .children()
        .find(|x| x.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("type"), Some("sql"));
    assert!(failure
        .text()
        .unwrap()
        .contains("value is 16044, expected 1"));

    // Metrics: Prometheus text format, per tier.
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
    let value = |name: &str, verdict: Option<&str>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && s.labels.get("tier") == Some("local")
                    && verdict.is_none_or(|v| s.labels.get("verdict") == Some(v))
            })
            .unwrap_or_else(|| panic!("{name} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name} is {other:?}"),
        }
    };
    assert_eq!(value("drill_last_verdict", Some("failed")), 1.0);
    assert_eq!(value("drill_last_verdict", Some("passed")), 0.0);
    assert_eq!(value("drill_last_success_timestamp_seconds", None), 0.0);
    let started = chrono::DateTime::parse_from_rfc3339(report["started_at"].as_str().unwrap())
        .unwrap()
        .timestamp() as f64;
    assert!((value("drill_last_run_timestamp_seconds", None) - started).abs() < 1.0);
    assert_eq!(
        value("drill_last_restored_bytes", None),
        database(&report, "pagila")["restore"]["bytes"]
            .as_f64()
            .unwrap()
    );
    assert!(value("drill_last_rto_seconds", None) > 0.0);
    assert!(value("drill_last_snapshot_age_seconds", None) >= 0.0);
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
}

#[test]
fn bot_token_posts_with_bearer_and_channel_after_429_and_500() {
    let repo = pagila_repo();
    let work = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(vec![
        (429, vec![("Retry-After", "1")], "application/json", "{\"ok\":false,\"error\":\"ratelimited\"}"),
        (500, vec![], "text/plain", "oops"),
        (500, vec![], "text/plain", "oops"),
        (
            200,
            vec![],
            "application/json",
            "{\"ok\":true,\"channel\":\"C0OPS\",\"ts\":\"1795000000.000100\",\"message\":{\"type\":\"message\",\"ts\":\"1795000000.000100\",\"text\":\"drill\"}}",
        ),
    ]);
    let checks = vec![films_exist()];
    let config = pagila_config(
        work.path(),
        &repo,
        &checks,
        &format!(
            "\n[slack]\ntoken_env = \"DRILL_TEST_SLACK_TOKEN\"\nchannel = \"#ops\"\napi_url = \"http://127.0.0.1:{}/api\"\nbackoff = \"200ms\"\n",
            slack.port
        ),
    );
    let token = "xoxb-test-0000-s3cret";
    let run = drill_env(&config, &["run"], &[("DRILL_TEST_SLACK_TOKEN", token)]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains(token), "{}", run.stderr);
    assert!(
        run.stderr.contains("report posted to Slack (attempts: 4)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("HTTP 429"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 500"), "{}", run.stderr);
    let reqs = slack.requests();
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/chat.postMessage");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
        assert_eq!(body["channel"], "#ops");
        let text = texts_of_blocks(&body);
        assert!(text.contains("passed"), "{text}");
        assert!(text.contains("tier local"), "{text}");
    }
    let (_, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(report["verdict"], "passed");
    assert_no_sandbox_left(report["run_id"].as_str().unwrap());
}

#[test]
fn passed_drill_that_slack_never_accepts_exits_4_and_keeps_its_report() {
    let repo = pagila_repo();
    let work = tempfile::tempdir().unwrap();
    let slack = FakeSlack::start(vec![(500, vec![], "text/plain", "down")]);
    let checks = vec![films_exist()];
    let config = pagila_config(
        work.path(),
        &repo,
        &checks,
        &format!(
            "\n[slack]\nwebhook_url_command = \"echo http://127.0.0.1:{}/services/T/B/hushHush\"\nretries = 2\nbackoff = \"100ms\"\n",
            slack.port
        ),
    );
    let run = drill(&config, &["run"]);
    assert_eq!(run.code, 4, "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("NOT posted to Slack"), "{}", run.stderr);
    assert!(run.stderr.contains("after 3 attempt(s)"), "{}", run.stderr);
    assert!(!run.stderr.contains("hushHush"), "{}", run.stderr);
    assert_eq!(slack.requests().len(), 3);
    let (json, report) = report_of(&run, &work.path().join("reports"));
    assert_eq!(report["verdict"], "passed");
    assert!(json.with_extension("md").is_file() && json.with_extension("html").is_file());

    // --no-notify: nothing is posted and the passed drill exits 0.
    let before = slack.requests().len();
    let run = drill(&config, &["run", "--no-notify"]);
    assert_eq!(run.code, 0, "stderr:\n{}", run.stderr);
    assert_eq!(slack.requests().len(), before);
}

/// Each block of `report`'s Slack message as (type, every string in it).
fn message_blocks(
    report: &drill::report::Report,
    link: &drill::notify::ReportLink,
) -> Vec<(String, String)> {
    let msg = drill::notify::message(report, link, chrono_tz::Asia::Seoul);
    let body = serde_json::to_value(&msg).unwrap();
    body["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| {
            let one = serde_json::json!({ "blocks": [b] });
            (
                b["type"].as_str().unwrap().to_string(),
                texts_of_blocks(&one),
            )
        })
        .collect()
}

fn local_link() -> drill::notify::ReportLink {
    drill::notify::ReportLink::new(
        "mini",
        std::path::Path::new("/srv/drill/reports/20270114T180000Z-local.html"),
        None,
    )
}

#[test]
fn failures_come_first_and_passing_databases_share_one_line() {
    let report = sample_report(
        "failed",
        &["check rentals-wrong of database pagila failed"],
        &[
            (
                "frame",
                "passed",
                None,
                &[("frame-integrity", "passed", "")],
            ),
            (
                "pagila",
                "passed",
                None,
                &[
                    ("films-exist", "passed", ""),
                    ("rentals-wrong", "failed", "value is 16044, expected 1"),
                ],
            ),
            ("blueprint", "passed", None, &[("workspaces", "passed", "")]),
            ("hive", "error", Some("the sandbox lacks role app"), &[]),
            ("mysrt", "passed", None, &[]),
        ],
    );
    let blocks = message_blocks(&report, &local_link());
    let at = |needle: &str| {
        blocks
            .iter()
            .position(|(_, t)| t.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {blocks:#?}"))
    };
    // The failing databases, each followed by what failed, before the one
    // line for the three that passed; the report's location last.
    let pagila = at("*pagila* — restore passed");
    let finding = at("value is 16044, expected 1");
    let hive = at("*hive* — restore error");
    let passed = at("3 databases passed: frame, blueprint, mysrt (2 checks passed)");
    assert!(
        pagila < finding && finding < hive && hive < passed,
        "{blocks:#?}"
    );
    assert!(blocks[pagila].1.contains("✅ films-exist"), "{blocks:#?}");
    assert!(blocks[pagila].1.contains("❌ rentals-wrong"), "{blocks:#?}");
    assert!(
        blocks[hive].1.contains("the sandbox lacks role app"),
        "{blocks:#?}"
    );
    for name in ["*frame*", "*blueprint*", "*mysrt*"] {
        assert!(
            blocks.iter().all(|(_, t)| !t.contains(name)),
            "{name}: {blocks:#?}"
        );
    }
    let (kind, last) = blocks.last().unwrap();
    assert_eq!(kind, "context");
    assert!(
        last.contains("Full report: `mini:/srv/drill/reports/20270114T180000Z-local.html`"),
        "{last}"
    );
    assert!(!blocks
        .iter()
        .any(|(_, t)| t.contains("more that did not pass")));
}

#[test]
fn a_message_cut_to_slacks_limit_keeps_the_note_on_what_was_cut() {
    let names: Vec<String> = (0..60).map(|i| format!("db{i:02}")).collect();
    let checks: &[(&str, &str, &str)] = &[("rows", "failed", "too few rows")];
    let mut dbs: Vec<SampleDatabase<'_>> = names
        .iter()
        .map(|n| (n.as_str(), "passed", None, checks))
        .collect();
    dbs.push(("fine", "passed", None, &[]));
    let report = sample_report("failed", &["many checks failed"], &dbs);
    let blocks = message_blocks(&report, &local_link());
    assert_eq!(blocks.len(), drill::notify::MAX_BLOCKS, "{blocks:#?}");
    // Header, fields, why, divider, then failures until the note, the
    // passed line and the context.
    let shown = blocks
        .iter()
        .filter(|(_, t)| t.contains("— restore passed"))
        .count();
    let shown_checks = blocks
        .iter()
        .filter(|(_, t)| t.contains("*rows* (sql,"))
        .count();
    let cut = 120 - shown - shown_checks;
    let note = &blocks[blocks.len() - 3].1;
    assert!(
        note.contains(&format!("…{cut} more that did not pass (")),
        "{note}"
    );
    let dbs_cut = 60 - shown;
    let checks_cut = 60 - shown_checks;
    assert!(
        note.contains(&format!("{dbs_cut} databases, {checks_cut} checks")),
        "{note}"
    );
    assert!(blocks[blocks.len() - 2]
        .1
        .contains("1 database passed: fine"));
    assert_eq!(blocks.last().unwrap().0, "context");
}

#[test]
fn report_url_makes_full_report_a_link_to_this_report() {
    let report = sample_report("passed", &[], &[("frame", "passed", None, &[])]);
    let link = drill::notify::ReportLink::new(
        "mini",
        std::path::Path::new("/srv/drill/reports/20270114T180000Z-local.html"),
        Some("https://backups.example.com/drill/{report}"),
    );
    let blocks = message_blocks(&report, &link);
    let last = &blocks.last().unwrap().1;
    assert!(
        last.contains(
            "<https://backups.example.com/drill/20270114T180000Z-local.html|Full report>"
        ),
        "{last}"
    );
    assert!(blocks
        .iter()
        .any(|(_, t)| t.contains("1 database passed: frame")));
}

/// A config in `dir` with one tier and `slack` as its `[slack]` body.
fn slack_only_config(dir: &std::path::Path, slack: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    let config = dir.join("drill.toml");
    std::fs::write(
        &config,
        format!(
            "[tiers.local]\nrepository = \"repo\"\npassword_command = \"echo irrelevant\"\n\n\
             [[databases]]\nname = \"frame\"\npath = \"/dumps/frame.sql\"\nformat = \"pg_dumpall\"\n{slack}"
        ),
    )
    .unwrap();
    config
}

#[test]
fn notify_test_posts_through_the_webhook() {
    let slack = FakeSlack::start(vec![OK_TEXT]);
    let work = tempfile::tempdir().unwrap();
    let config = slack_only_config(
        work.path(),
        &format!(
            "\n[slack]\nwebhook_url_command = \"echo http://127.0.0.1:{}/services/T/B/hushHush\"\n",
            slack.port
        ),
    );
    let run = drill(&config, &["notify", "--test"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("test message posted to Slack"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hushHush"), "{}", run.stderr);
    let reqs = slack.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("POST", "/services/T/B/hushHush")
    );
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    let text = texts_of_blocks(&body);
    assert!(text.contains("drill test message"), "{text}");
    assert!(text.contains(&config.display().to_string()), "{text}");

    // Slack refusing the webhook (it was revoked) is the environment: 3.
    let gone = FakeSlack::start(vec![(404, vec![], "text/plain", "no_service")]);
    let config = slack_only_config(
        work.path(),
        &format!(
            "\n[slack]\nwebhook_url_command = \"echo http://127.0.0.1:{}/services/T/B/hushHush\"\n",
            gone.port
        ),
    );
    let run = drill(&config, &["notify", "--test"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("NOT posted"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 404"), "{}", run.stderr);
    assert!(!run.stderr.contains("hushHush"), "{}", run.stderr);
}

#[test]
fn notify_test_checks_a_bot_token_with_auth_test_then_posts() {
    let slack = FakeSlack::start(vec![
        (
            200,
            vec![],
            "application/json",
            "{\"ok\":true,\"url\":\"https://acme.slack.com/\",\"team\":\"Acme Backups\",\"user\":\"drillbot\",\"team_id\":\"T0ACME\",\"user_id\":\"U0DRILL\",\"bot_id\":\"B0DRILL\"}",
        ),
        (
            200,
            vec![],
            "application/json",
            "{\"ok\":true,\"channel\":\"C0OPS\",\"ts\":\"1795000000.000100\",\"message\":{\"type\":\"message\",\"ts\":\"1795000000.000100\",\"text\":\"drill\"}}",
        ),
    ]);
    let work = tempfile::tempdir().unwrap();
    let config = slack_only_config(
        work.path(),
        &format!(
            "\n[slack]\ntoken_env = \"DRILL_TEST_SLACK_TOKEN\"\nchannel = \"#ops\"\napi_url = \"http://127.0.0.1:{}/api\"\n",
            slack.port
        ),
    );
    let token = "xoxb-test-0000-s3cret";
    let run = drill_env(
        &config,
        &["--json", "notify", "--test"],
        &[("DRILL_TEST_SLACK_TOKEN", token)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains(token) && !run.stdout.contains(token));
    assert!(
        run.stderr.contains("workspace Acme Backups"),
        "{}",
        run.stderr
    );
    let out: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    assert_eq!(out["posted"], true);
    assert_eq!(out["team"], "Acme Backups");
    assert_eq!(out["user"], "drillbot");
    let reqs = slack.requests();
    let calls: Vec<(&str, &str)> = reqs
        .iter()
        .map(|r| (r.method.as_str(), r.path.split('?').next().unwrap()))
        .collect();
    assert_eq!(
        calls,
        [("GET", "/api/auth.test"), ("POST", "/api/chat.postMessage")]
    );
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
    let body: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert_eq!(body["channel"], "#ops");
    assert!(texts_of_blocks(&body).contains("Posted as drillbot in workspace Acme Backups"));
}

#[test]
fn notify_test_stops_at_a_token_auth_test_refuses() {
    let slack = FakeSlack::start(vec![(
        200,
        vec![],
        "application/json",
        "{\"ok\":false,\"error\":\"invalid_auth\"}",
    )]);
    let work = tempfile::tempdir().unwrap();
    let config = slack_only_config(
        work.path(),
        &format!(
            "\n[slack]\ntoken_env = \"DRILL_TEST_SLACK_TOKEN\"\nchannel = \"#ops\"\napi_url = \"http://127.0.0.1:{}/api\"\n",
            slack.port
        ),
    );
    let run = drill_env(
        &config,
        &["notify", "--test"],
        &[("DRILL_TEST_SLACK_TOKEN", "xoxb-revoked-s3cret")],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("auth.test"), "{}", run.stderr);
    assert!(run.stderr.contains("invalid_auth"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("xoxb-revoked-s3cret"),
        "{}",
        run.stderr
    );
    let reqs = slack.requests();
    assert_eq!(
        reqs.len(),
        1,
        "nothing posted after auth.test refused: {reqs:?}"
    );
    assert_eq!(reqs[0].path.split('?').next(), Some("/api/auth.test"));
}

#[test]
fn notify_test_without_slack_is_a_configuration_error_and_doctor_is_fine() {
    let work = tempfile::tempdir().unwrap();
    let config = slack_only_config(work.path(), "");
    let run = drill(&config, &["notify", "--test"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no [slack] section"), "{}", run.stderr);
    // `notify` needs --test.
    let run = drill(&config, &["notify"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // doctor: Slack is optional.
    let run = drill(&config, &["--json", "doctor"]);
    let items: serde_json::Value = serde_json::from_str(&run.stdout).expect("doctor --json");
    let slack = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item"] == "slack")
        .unwrap_or_else(|| panic!("{items:#}"));
    assert_eq!(slack["health"], "ok", "{slack:#}");
    assert_eq!(
        slack["detail"],
        "no [slack]: reports are not posted (optional)"
    );
}
