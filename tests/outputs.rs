//! The files a run writes besides its reports: JUnit XML validated against
//! the Jenkins xUnit plugin's schema (fixtures/junit/), and the Prometheus
//! textfile parsed by Prometheus' own parser, both from `[outputs]` in the
//! config. No sandbox: the drills here end before one is needed (a
//! repository that does not exist), or the report is made by hand.

mod common;

use std::path::Path;

use common::*;

fn parse_junit(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml).expect("JUnit parses as XML")
}

/// (test case name, classname, outcome element or `passed`) in file order.
fn outcomes(doc: &roxmltree::Document<'_>) -> Vec<(String, String, String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|c| {
            let outcome = c
                .children()
                .find(|x| x.is_element())
                .map_or("passed".to_string(), |x| x.tag_name().name().to_string());
            (
                c.attribute("name").unwrap().to_string(),
                c.attribute("classname").unwrap().to_string(),
                outcome,
            )
        })
        .collect()
}

#[test]
fn the_validator_rejects_what_the_jenkins_schema_does_not_allow() {
    // The check below is only worth something if xmllint really applies
    // the schema: `skipped` on <testsuites> (what drill wrote before) is
    // refused, the same document without it accepted.
    let dir = tempfile::tempdir().unwrap();
    let doc = |suites_attrs: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"drill\" tests=\"1\" failures=\"0\" errors=\"0\"{suites_attrs}>\n<testsuite name=\"drill.local\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"0\">\n<testcase name=\"verdict\" classname=\"drill.local\" time=\"0.000\"/>\n</testsuite>\n</testsuites>\n"
        )
    };
    let good = dir.path().join("good.xml");
    std::fs::write(&good, doc("")).unwrap();
    assert_valid_junit(&good);
    let bad = dir.path().join("bad.xml");
    std::fs::write(&bad, doc(" skipped=\"0\"")).unwrap();
    let refused = std::panic::catch_unwind(|| assert_valid_junit(&bad));
    assert!(refused.is_err(), "xmllint accepted skipped on <testsuites>");
}

#[test]
fn junit_of_passed_failed_errored_and_unrestored_databases_is_valid() {
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
                    ("rentals-wrong", "failed", "value is 16044, expected 1 <&>"),
                    ("amcheck", "error", ""),
                ],
            ),
            (
                "hive",
                "error",
                Some("the sandbox lacks role \"app\"\u{1b}[0m\u{7}"),
                &[("hive-tenant-counts", "not_run", "")],
            ),
            ("index", "failed", Some("the dump ends early"), &[]),
        ],
    );
    let xml = drill::report::junit::render(&report, "/reports/x.json").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    std::fs::write(&path, &xml).unwrap();
    assert_valid_junit(&path);

    let doc = parse_junit(&xml);
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    assert_eq!(suites.attribute("skipped"), None, "{xml}");
    let suite = suites
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(suite.attribute("name"), Some("drill.local"));
    // 4 restores, 5 checks, 2 policy limits, the verdict.
    assert_eq!(suites.attribute("tests"), Some("12"));
    assert_eq!(suite.attribute("tests"), Some("12"));
    assert_eq!(suite.attribute("failures"), Some("3"), "{xml}");
    assert_eq!(suite.attribute("errors"), Some("2"), "{xml}");
    assert_eq!(suite.attribute("skipped"), Some("1"), "{xml}");
    let got = outcomes(&doc);
    let find = |name: &str, class: &str| {
        got.iter()
            .find(|(n, c, _)| n == name && c == class)
            .unwrap_or_else(|| panic!("{name} of {class} in {got:?}"))
            .2
            .as_str()
    };
    assert_eq!(find("restore", "drill.local.frame"), "passed");
    assert_eq!(find("check frame-integrity", "drill.local.frame"), "passed");
    assert_eq!(find("check rentals-wrong", "drill.local.pagila"), "failure");
    assert_eq!(find("check amcheck", "drill.local.pagila"), "error");
    assert_eq!(find("restore", "drill.local.hive"), "error");
    assert_eq!(
        find("check hive-tenant-counts", "drill.local.hive"),
        "skipped"
    );
    assert_eq!(find("restore", "drill.local.index"), "failure");
    assert_eq!(find("max_rto", "drill.local.policy"), "passed");
    assert_eq!(find("verdict", "drill.local"), "failure");
    // Findings reach the failure's text, escaped and read back intact;
    // the terminal escape and the bell are dropped.
    let failure = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("failure")
                && n.parent().unwrap().attribute("name") == Some("check rentals-wrong")
        })
        .unwrap();
    assert_eq!(failure.attribute("type"), Some("sql"));
    assert_eq!(failure.text(), Some("value is 16044, expected 1 <&>"));
    let error = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("error")
                && n.parent().unwrap().attribute("classname") == Some("drill.local.hive")
        })
        .unwrap();
    assert_eq!(error.text(), Some("the sandbox lacks role \"app\""));
    let property = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
    };
    assert_eq!(property("verdict"), Some("failed"));
    assert_eq!(property("report"), Some("/reports/x.json"));
    assert_eq!(property("snapshot"), Some("0123abcd".repeat(8).as_str()));
}

/// A config in `dir` with tiers `local` (a repository that does not exist)
/// and `cold` (never drilled), a quarterly schedule, and `[outputs]`
/// relative to the config.
fn two_tier_config(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("checks")).unwrap();
    write_secret(&dir.join("password"), "irrelevant\n");
    let config = dir.join("drill.toml");
    std::fs::write(
        &config,
        "timezone = \"Asia/Seoul\"\nschedule = \"0 3 15 1,4,7,10 *\"\n\n\
         [tiers.local]\nrepository = \"no-such-repository\"\npassword_file = \"password\"\n\n\
         [tiers.cold]\nrepository = \"cold-repository\"\npassword_file = \"password\"\n\n\
         [[databases]]\nname = \"frame\"\npath = \"/dumps/frame.sql\"\nformat = \"pg_dumpall\"\n\n\
         [[databases]]\nname = \"hive\"\npath = \"/dumps/hive.sql\"\nformat = \"pg_dumpall\"\n\n\
         [outputs]\nmetrics = \"textfile/drill.prom\"\njunit = \"ci/junit.xml\"\n",
    )
    .unwrap();
    config
}

fn gauge(scrape: &prometheus_parse::Scrape, name: &str, tier: &str) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("tier") == Some(tier))
        .unwrap_or_else(|| panic!("{name}{{tier=\"{tier}\"}} missing"));
    match s.value {
        prometheus_parse::Value::Gauge(v) => v,
        ref other => panic!("{name} is {other:?}, not a gauge"),
    }
}

#[test]
fn outputs_in_the_config_write_junit_and_metrics_for_every_tier() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_tier_config(dir.path());
    // `local` passed a drill on 2026-10-15 at 03:00 in Seoul; the next one
    // is due on the schedule's next quarter day, 2027-01-15 03:00 Seoul.
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(
        reports.join("history.csv"),
        format!(
            "{}\n2026-10-14T18:00:00+00:00,local,{},2026-10-14T17:00:00+00:00,passed,310.500,3600.000,2048,4,0,old-run,20261014T180000Z-local.json\n",
            drill::report::HISTORY_COLUMNS.join(","),
            "ab".repeat(32)
        ),
    )
    .unwrap();

    // No --junit, no --metrics: [outputs] says where.
    let run = drill(&config, &["run", "--tier", "local", "--no-notify"]);
    assert_eq!(
        run.code, 3,
        "the repository does not exist:\n{}",
        run.stderr
    );
    let junit = dir.path().join("ci/junit.xml");
    let metrics = dir.path().join("textfile/drill.prom");
    assert!(
        run.stderr
            .contains(&format!("JUnit XML written to {}", junit.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("metrics written to {}", metrics.display())),
        "{}",
        run.stderr
    );

    // JUnit: both restores not attempted, the verdict an error.
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = parse_junit(&xml);
    let got: Vec<(String, String)> = outcomes(&doc)
        .into_iter()
        .map(|(n, c, o)| (format!("{c} {n}"), o))
        .collect();
    let want: Vec<(String, String)> = [
        ("drill.local.frame restore", "skipped"),
        ("drill.local.hive restore", "skipped"),
        ("drill.local verdict", "error"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want, "{xml}");

    // Metrics: Prometheus' parser accepts the file; every family has HELP
    // and TYPE; both tiers have every series.
    let families = prometheus_families(&metrics);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let expected = [
        "drill_last_run_timestamp_seconds",
        "drill_last_success_timestamp_seconds",
        "drill_next_due_timestamp_seconds",
        "drill_last_verdict",
        "drill_last_rto_seconds",
        "drill_last_snapshot_age_seconds",
        "drill_last_restored_bytes",
        "drill_last_passed_checks",
        "drill_last_failed_checks",
        "drill_last_verified_snapshot_timestamp_seconds",
        "drill_unverified_snapshots",
    ];
    assert_eq!(families, expected, "{text}");
    for f in expected {
        assert!(text.contains(&format!("# HELP {f} ")), "{f}: {text}");
        assert!(text.contains(&format!("# TYPE {f} gauge\n")), "{f}: {text}");
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse");
    for f in expected.iter().filter(|f| **f != "drill_last_verdict") {
        for tier in ["local", "cold"] {
            gauge(&scrape, f, tier);
        }
    }
    let passed_at = 1_792_000_800.0; // 2026-10-14T18:00:00Z
    let due = 1_799_949_600.0; // 2027-01-15T03:00:00+09:00
    assert_eq!(
        gauge(&scrape, "drill_last_success_timestamp_seconds", "local"),
        passed_at
    );
    assert!(gauge(&scrape, "drill_last_run_timestamp_seconds", "local") > passed_at);
    assert_eq!(
        gauge(&scrape, "drill_next_due_timestamp_seconds", "local"),
        due
    );
    // `cold` never ran: zeros an "overdue" alert fires on, NaN for the
    // figures of a drill that did not happen.
    assert_eq!(
        gauge(&scrape, "drill_last_run_timestamp_seconds", "cold"),
        0.0
    );
    assert_eq!(
        gauge(&scrape, "drill_last_success_timestamp_seconds", "cold"),
        0.0
    );
    assert_eq!(
        gauge(&scrape, "drill_next_due_timestamp_seconds", "cold"),
        0.0
    );
    assert!(gauge(&scrape, "drill_last_rto_seconds", "cold").is_nan());
    let verdict = |tier: &str, v: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "drill_last_verdict"
                    && s.labels.get("tier") == Some(tier)
                    && s.labels.get("verdict") == Some(v)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(x) => x,
                ref other => panic!("{other:?}"),
            })
            .unwrap_or_else(|| panic!("drill_last_verdict{{tier={tier},verdict={v}}}"))
    };
    assert_eq!(verdict("local", "error"), 1.0);
    assert_eq!(verdict("local", "passed"), 0.0);
    assert_eq!(verdict("cold", "error"), 0.0);
    assert_eq!(verdict("cold", "passed"), 0.0);

    // A flag overrides [outputs].
    let other = dir.path().join("elsewhere.prom");
    let run = drill(
        &config,
        &[
            "run",
            "--tier",
            "local",
            "--no-notify",
            "--metrics",
            other.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(other.is_file(), "{}", run.stderr);
}
