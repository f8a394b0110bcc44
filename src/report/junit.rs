//! JUnit XML for CI: one test case per restore, per check, per configured
//! policy limit, and one for the verdict itself, so a CI system fails the
//! job exactly when the drill did not pass.
//!
//! Written with [`quick_junit`] (nextest's JUnit writer) in the shape the
//! Jenkins xUnit plugin's schema `junit-10.xsd` accepts (the de facto JUnit
//! format Jenkins, GitLab and GitHub Actions read; its rules are restated
//! in `fixtures/junit/jenkins-junit.xsd` for the tests): `<testsuites>` holding one `<testsuite>` per drill,
//! `<testcase classname name time>` with a `<failure>` (proven bad),
//! `<error>` (could not be judged) or `<skipped>` (not attempted because an
//! earlier step did not pass). The schema does not allow `skipped` on
//! `<testsuites>`, so it is dropped there; each `<testsuite>` keeps it.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use quick_xml::events::{BytesStart, Event};

use super::{PolicyLimit, PolicyStatus, Report, Status, Verdict};

/// Why the JUnit XML could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum JunitError {
    /// quick-junit could not serialize the report.
    #[error("serialize the JUnit XML: {0}")]
    Serialize(#[from] quick_junit::SerializeError),
    /// Its output could not be read back to drop `skipped` from
    /// `<testsuites>`.
    #[error("rewrite the JUnit XML's <testsuites> element: {0}")]
    Rewrite(#[from] quick_xml::Error),
}

/// A not-passed case: `<failure>`, `<error>` or `<skipped>` with its
/// `type`, `message` and text.
fn not_passed(kind: NonSuccessKind, ty: &str, message: &str, text: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    s.set_type(ty).set_message(message);
    if !text.is_empty() {
        s.set_description(text);
    }
    s
}

fn skipped(why: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(why);
    s
}

fn case(classname: &str, name: &str, seconds: f64, status: TestCaseStatus) -> TestCase {
    let mut c = TestCase::new(name, status);
    c.set_classname(classname)
        .set_time(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or_default());
    c
}

fn policy_case(suite: &str, name: &str, l: &PolicyLimit) -> Option<TestCase> {
    let describe = format!(
        "{} seconds against a limit of {} seconds",
        l.actual_seconds
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "unknown".into()),
        l.limit_seconds
            .map(|v| format!("{v:.0}"))
            .unwrap_or_default()
    );
    let status = match l.status {
        PolicyStatus::NotConfigured => return None,
        PolicyStatus::Passed => TestCaseStatus::success(),
        PolicyStatus::Failed => not_passed(
            NonSuccessKind::Failure,
            "policy",
            &format!("{name} exceeded"),
            &describe,
        ),
        PolicyStatus::Unknown => not_passed(
            NonSuccessKind::Error,
            "policy",
            &format!("{name} could not be measured"),
            &describe,
        ),
    };
    Some(case(&format!("{suite}.policy"), name, 0.0, status))
}

fn cases(r: &Report) -> Vec<TestCase> {
    let suite = format!("drill.{}", r.tier);
    let mut out = Vec::new();
    for d in &r.databases {
        let classname = format!("{suite}.{}", d.name);
        let restore_text = d.restore.error.as_deref().unwrap_or_default();
        let status = match d.restore.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Failed => not_passed(
                NonSuccessKind::Failure,
                "restore",
                &format!("the dump {} did not restore", d.path),
                restore_text,
            ),
            Status::Error => not_passed(
                NonSuccessKind::Error,
                "restore",
                &format!("the dump {} could not be restored", d.path),
                restore_text,
            ),
            Status::NotRun => skipped("not restored"),
        };
        out.push(case(&classname, "restore", d.restore.seconds, status));
        for c in &d.checks {
            let text = c
                .findings
                .iter()
                .chain(c.notes.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("\n");
            let status = match c.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Failed => not_passed(NonSuccessKind::Failure, &c.kind, &c.detail, &text),
                Status::Error => not_passed(NonSuccessKind::Error, &c.kind, &c.detail, &text),
                Status::NotRun => skipped(if c.detail.is_empty() {
                    "not run"
                } else {
                    &c.detail
                }),
            };
            out.push(case(
                &classname,
                &format!("check {}", c.name),
                c.seconds,
                status,
            ));
        }
    }
    out.extend(policy_case(&suite, "max_rto", &r.policy.max_rto));
    out.extend(policy_case(
        &suite,
        "max_snapshot_age",
        &r.policy.max_snapshot_age,
    ));
    out.extend(policy_case(
        &suite,
        "max_data_loss",
        &r.policy.max_data_loss,
    ));
    let reasons = r.reasons.join("\n");
    let first = r
        .reasons
        .first()
        .map(String::as_str)
        .unwrap_or("see the report");
    let status = match r.verdict {
        Verdict::Passed => TestCaseStatus::success(),
        Verdict::Failed => not_passed(
            NonSuccessKind::Failure,
            "verdict",
            &format!("the backup is bad: {first}"),
            &reasons,
        ),
        Verdict::Error => not_passed(
            NonSuccessKind::Error,
            "verdict",
            &format!("no verdict: {first}"),
            &reasons,
        ),
    };
    out.push(case(
        &suite,
        "verdict",
        r.rto_seconds.unwrap_or(0.0),
        status,
    ));
    out
}

/// The JUnit XML of `report`: one `<testsuite name="drill.TIER">` whose
/// properties carry `run_id`, `verdict`, `repository` (passwords already
/// redacted), `snapshot` and `report` (`report_path`, the JSON record, so
/// CI can link to it). Text that XML 1.0 cannot carry (most control
/// characters, ANSI escapes) is dropped.
///
/// # Errors
/// [`JunitError`] when the XML cannot be serialized (not expected for any
/// report).
pub fn render(r: &Report, report_path: &str) -> Result<String, JunitError> {
    let time = Duration::try_from_secs_f64(
        ((r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0).max(0.0),
    )
    .unwrap_or_default();
    let mut suite = TestSuite::new(format!("drill.{}", r.tier));
    suite
        .set_timestamp(r.started_at)
        .set_time(time)
        .add_property(Property::new("run_id", &r.run_id))
        .add_property(Property::new("verdict", r.verdict.as_str()))
        .add_property(Property::new("repository", &r.repository));
    if let Some(s) = &r.snapshot {
        suite.add_property(Property::new("snapshot", &s.id));
    }
    suite
        .add_property(Property::new("report", report_path))
        .add_test_cases(cases(r));
    let mut junit = quick_junit::Report::new("drill");
    junit.set_time(time).add_test_suite(suite);
    without_suites_skipped(&junit.to_string()?)
}

/// `xml` with the `skipped` attribute removed from its `<testsuites>`
/// element (the Jenkins schema has none there); everything else is passed
/// through unchanged.
fn without_suites_skipped(xml: &str) -> Result<String, JunitError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let strip = |s: &BytesStart<'_>| -> Result<BytesStart<'static>, quick_xml::Error> {
        let mut t = BytesStart::new("testsuites");
        for a in s.attributes() {
            let a = a?;
            if a.key.as_ref() != b"skipped" {
                t.push_attribute(a);
            }
        }
        Ok(t)
    };
    let io = |e: std::io::Error| JunitError::Rewrite(quick_xml::Error::from(e));
    loop {
        let event = match reader.read_event()? {
            Event::Eof => break,
            Event::Start(s) if s.name().as_ref() == b"testsuites" => Event::Start(strip(&s)?),
            Event::Empty(s) if s.name().as_ref() == b"testsuites" => Event::Empty(strip(&s)?),
            other => other,
        };
        writer.write_event(event).map_err(io)?;
    }
    let mut out = String::from_utf8_lossy(&writer.into_inner()).into_owned();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}
