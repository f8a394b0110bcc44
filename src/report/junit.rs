//! JUnit XML for CI: one test case per restore, per check, per configured
//! policy limit, and one for the verdict itself, so a CI system fails the
//! job exactly when the drill did not pass.
//!
//! The shape is the de facto one CI systems read (Ant's JUnit report, as
//! Jenkins, GitLab and GitHub actions parse it): `<testsuites>` holding one
//! `<testsuite>` per drill, `<testcase classname name time>` with a
//! `<failure>` (proven bad), `<error>` (could not be judged) or `<skipped>`
//! (not attempted because an earlier step did not pass).

use std::fmt::Write;

use super::{PolicyLimit, PolicyStatus, Report, Status, Verdict};

/// Escape `s` for XML text and quoted attributes; characters XML 1.0 does
/// not allow (most control characters) become U+FFFD.
pub fn xml_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

enum Outcome {
    Passed,
    Failure {
        kind: String,
        message: String,
        text: String,
    },
    Error {
        kind: String,
        message: String,
        text: String,
    },
    Skipped(String),
}

struct Case {
    classname: String,
    name: String,
    seconds: f64,
    outcome: Outcome,
}

fn policy_case(suite: &str, name: &str, l: &PolicyLimit) -> Option<Case> {
    let describe = || {
        format!(
            "{} seconds against a limit of {} seconds",
            l.actual_seconds
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "unknown".into()),
            l.limit_seconds
                .map(|v| format!("{v:.0}"))
                .unwrap_or_default()
        )
    };
    let outcome = match l.status {
        PolicyStatus::NotConfigured => return None,
        PolicyStatus::Passed => Outcome::Passed,
        PolicyStatus::Failed => Outcome::Failure {
            kind: "policy".into(),
            message: format!("{name} exceeded"),
            text: describe(),
        },
        PolicyStatus::Unknown => Outcome::Error {
            kind: "policy".into(),
            message: format!("{name} could not be measured"),
            text: describe(),
        },
    };
    Some(Case {
        classname: format!("{suite}.policy"),
        name: name.into(),
        seconds: 0.0,
        outcome,
    })
}

fn cases(r: &Report) -> Vec<Case> {
    let suite = format!("drill.{}", r.tier);
    let mut out = Vec::new();
    for d in &r.databases {
        let classname = format!("{suite}.{}", d.name);
        let restore_text = d.restore.error.clone().unwrap_or_default();
        out.push(Case {
            classname: classname.clone(),
            name: "restore".into(),
            seconds: d.restore.seconds,
            outcome: match d.restore.status {
                Status::Passed => Outcome::Passed,
                Status::Failed => Outcome::Failure {
                    kind: "restore".into(),
                    message: format!("the dump {} did not restore", d.path),
                    text: restore_text,
                },
                Status::Error => Outcome::Error {
                    kind: "restore".into(),
                    message: format!("the dump {} could not be restored", d.path),
                    text: restore_text,
                },
                Status::NotRun => Outcome::Skipped("not restored".into()),
            },
        });
        for c in &d.checks {
            let text = c
                .findings
                .iter()
                .chain(c.notes.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("\n");
            out.push(Case {
                classname: classname.clone(),
                name: format!("check {}", c.name),
                seconds: c.seconds,
                outcome: match c.status {
                    Status::Passed => Outcome::Passed,
                    Status::Failed => Outcome::Failure {
                        kind: c.kind.clone(),
                        message: c.detail.clone(),
                        text,
                    },
                    Status::Error => Outcome::Error {
                        kind: c.kind.clone(),
                        message: c.detail.clone(),
                        text,
                    },
                    Status::NotRun => Outcome::Skipped(if c.detail.is_empty() {
                        "not run".into()
                    } else {
                        c.detail.clone()
                    }),
                },
            });
        }
    }
    out.extend(policy_case(&suite, "max_rto", &r.policy.max_rto));
    out.extend(policy_case(
        &suite,
        "max_snapshot_age",
        &r.policy.max_snapshot_age,
    ));
    let reasons = r.reasons.join("\n");
    out.push(Case {
        classname: suite,
        name: "verdict".into(),
        seconds: r.rto_seconds.unwrap_or(0.0),
        outcome: match r.verdict {
            Verdict::Passed => Outcome::Passed,
            Verdict::Failed => Outcome::Failure {
                kind: "verdict".into(),
                message: format!(
                    "the backup is bad: {}",
                    r.reasons
                        .first()
                        .map(String::as_str)
                        .unwrap_or("see the report")
                ),
                text: reasons,
            },
            Verdict::Error => Outcome::Error {
                kind: "verdict".into(),
                message: format!(
                    "no verdict: {}",
                    r.reasons
                        .first()
                        .map(String::as_str)
                        .unwrap_or("see the report")
                ),
                text: reasons,
            },
        },
    });
    out
}

/// The JUnit XML of `report`. `report_path` (the JSON record) goes in the
/// suite's properties so CI can link to it.
pub fn render(r: &Report, report_path: &str) -> String {
    let cases = cases(r);
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let failures = count(|o| matches!(o, Outcome::Failure { .. }));
    let errors = count(|o| matches!(o, Outcome::Error { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
    let time = (r.finished_at - r.started_at).num_milliseconds() as f64 / 1000.0;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"drill\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"drill.{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{}\">",
        xml_text(&r.tier),
        cases.len(),
        r.started_at.format("%Y-%m-%dT%H:%M:%S")
    );
    let _ = writeln!(x, "    <properties>");
    let mut prop = |k: &str, v: &str| {
        let _ = writeln!(
            x,
            "      <property name=\"{k}\" value=\"{}\"/>",
            xml_text(v)
        );
    };
    prop("run_id", &r.run_id);
    prop("verdict", r.verdict.as_str());
    prop("repository", &r.repository);
    if let Some(s) = &r.snapshot {
        prop("snapshot", &s.id);
    }
    prop("report", report_path);
    let _ = writeln!(x, "    </properties>");
    for c in &cases {
        let head = format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml_text(&c.classname),
            xml_text(&c.name),
            c.seconds
        );
        match &c.outcome {
            Outcome::Passed => {
                let _ = writeln!(x, "{head}/>");
            }
            Outcome::Failure {
                kind,
                message,
                text,
            }
            | Outcome::Error {
                kind,
                message,
                text,
            } => {
                let tag = if matches!(c.outcome, Outcome::Failure { .. }) {
                    "failure"
                } else {
                    "error"
                };
                let _ = writeln!(
                    x,
                    "{head}>\n      <{tag} type=\"{}\" message=\"{}\">{}</{tag}>\n    </testcase>",
                    xml_text(kind),
                    xml_text(message),
                    xml_text(text)
                );
            }
            Outcome::Skipped(why) => {
                let _ = writeln!(
                    x,
                    "{head}>\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml_text(why)
                );
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_made_legal() {
        assert_eq!(
            xml_text("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{FFFD}"
        );
    }
}
