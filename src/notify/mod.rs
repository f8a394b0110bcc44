//! Posting a drill's report to Slack, with slack-morphism.
//!
//! The message is Block Kit (<https://docs.slack.dev/reference/block-kit>):
//! verdict, tier, snapshot and its age against the RPO limit, RTO against
//! its limit; then failures first (each database that did not pass, its
//! checks that did not pass and their first findings), the databases that
//! passed on one line, and where the full report lives (a link with
//! `[slack] report_url`); see [`message`]. It goes to an incoming webhook
//! (<https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks>)
//! or, with a bot token, to `chat.postMessage` on a channel. [`test()`]
//! proves the settings (`drill notify --test`), checking a bot token with
//! `auth.test` first.
//!
//! Delivery retries on HTTP 429, 5xx and network errors with a doubling
//! pause, and waits what a 429's `Retry-After` asks instead. Secrets (the
//! webhook URL is one) are read just before posting and are redacted from
//! every message drill prints.

use std::time::Duration;

use hyper_rustls::HttpsConnectorBuilder;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::config::{SlackConfig, SlackTarget};
use crate::report::{PolicyLimit, PolicyStatus, Report, Status, Verdict};

/// Longest pause drill accepts from a `Retry-After` before giving up.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// HTTP requests made, 1 when the first was accepted.
    pub attempts: u32,
}

/// Why a message was not delivered. Messages never contain the secret.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The webhook URL or token could not be read.
    #[error("cannot read the Slack {what} from {source_name}: {message}")]
    Secret {
        /// `webhook URL` or `bot token`.
        what: &'static str,
        /// The source, as [`crate::secret::SecretSource::describe`] names it.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// The URL is not one drill will send a secret to.
    #[error("{0}")]
    Url(String),
    /// The system's TLS root certificates could not be loaded.
    #[error("load the system's TLS root certificates: {0}")]
    Tls(#[source] std::io::Error),
    /// Slack refused the message (a 4xx other than 429, or an API error such
    /// as `channel_not_found`); retrying would not help.
    #[error("Slack refused the message after {attempts} attempt(s): {message}")]
    Refused {
        /// Requests made.
        attempts: u32,
        /// Status or API error code, and Slack's answer.
        message: String,
    },
    /// Slack's `auth.test` did not accept the bot token (`invalid_auth`,
    /// `token_revoked`, …) or did not answer.
    #[error("Slack's auth.test did not accept the bot token: {message}")]
    AuthTest {
        /// Status or API error code, and Slack's answer.
        message: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("Slack did not accept the message after {attempts} attempt(s); last: {message}")]
    GaveUp {
        /// Requests made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
}

enum Failure {
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    Final(String),
}

fn first_line(s: &str) -> String {
    clip(s.lines().next().unwrap_or("").trim(), 200)
}

fn classify(e: SlackClientError) -> Failure {
    match e {
        SlackClientError::RateLimitError(r) => Failure::Retry {
            message: format!(
                "HTTP 429 (rate limited{})",
                r.retry_after
                    .map(|d| format!(", Retry-After {}s", d.as_secs()))
                    .unwrap_or_default()
            ),
            retry_after: r.retry_after,
        },
        SlackClientError::HttpError(h) => {
            let body = first_line(h.http_response_body.as_deref().unwrap_or(""));
            let message = format!("HTTP {}: {body}", h.status_code.as_u16());
            if h.status_code.is_server_error() {
                Failure::Retry {
                    message,
                    retry_after: None,
                }
            } else {
                Failure::Final(message)
            }
        }
        SlackClientError::ApiError(a) if a.code == "ratelimited" => Failure::Retry {
            message: "Slack API error: ratelimited".into(),
            retry_after: None,
        },
        SlackClientError::ApiError(a) => Failure::Final(format!("Slack API error: {}", a.code)),
        SlackClientError::HttpProtocolError(p) => Failure::Retry {
            message: format!(
                "network error: {}",
                p.cause.map(|c| error_chain(&*c)).unwrap_or_default()
            ),
            retry_after: None,
        },
        SlackClientError::EndOfStream(_) => Failure::Retry {
            message: "the connection closed before an answer".into(),
            retry_after: None,
        },
        other => Failure::Final(first_line(&other.to_string())),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Plain `http://` only to a loopback address (a test server); anywhere else
/// the secret would cross the network in clear text.
fn check_url(url: &url::Url, what: &str) -> Result<(), NotifyError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(NotifyError::Url(format!(
                    "the Slack {what} uses plain http to a host that is not loopback; use https"
                )))
            }
        }
        s => Err(NotifyError::Url(format!(
            "the Slack {what} has scheme `{s}`; expected https"
        ))),
    }
}

/// A client with its secret read: the webhook URL, or the bot token.
struct Connection {
    client: SlackHyperClient,
    secret: crate::secret::Secret,
    /// The webhook's URL (webhook targets only).
    webhook: Option<url::Url>,
}

impl Connection {
    /// Read the secret `cfg` names and build an HTTPS client for it.
    async fn open(cfg: &SlackConfig) -> Result<Connection, NotifyError> {
        let (what, source) = match &cfg.target {
            SlackTarget::Webhook(s) => ("webhook URL", s),
            SlackTarget::Bot { token, .. } => ("bot token", token),
        };
        let secret = source.read().await.map_err(|message| NotifyError::Secret {
            what,
            source_name: source.describe(),
            message,
        })?;
        let webhook = match &cfg.target {
            SlackTarget::Webhook(_) => {
                let url = url::Url::parse(secret.expose()).map_err(|e| {
                    NotifyError::Url(format!(
                        "the Slack webhook URL from {} does not parse: {e}",
                        source.describe()
                    ))
                })?;
                check_url(&url, "webhook URL")?;
                Some(url)
            }
            SlackTarget::Bot { .. } => {
                let api = url::Url::parse(&cfg.api_url)
                    .map_err(|e| NotifyError::Url(format!("slack.api_url does not parse: {e}")))?;
                check_url(&api, "api_url")?;
                None
            }
        };
        let https = HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(NotifyError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = SlackClient::new(
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(&cfg.api_url),
        );
        Ok(Connection {
            client,
            secret,
            webhook,
        })
    }

    fn token(&self) -> SlackApiToken {
        SlackApiToken::new(SlackApiTokenValue::new(self.secret.expose().into()))
    }
}

/// Post `message` as `cfg` says, retrying as the module documents.
/// `note` is told of each failed attempt and the pause before the next.
///
/// # Errors
/// [`NotifyError`]; its text never contains the webhook URL or token.
pub async fn deliver(
    cfg: &SlackConfig,
    message: &SlackMessageContent,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Delivery, NotifyError> {
    let conn = Connection::open(cfg).await?;
    post(&conn, cfg, message, note).await
}

/// Who a bot token belongs to, as Slack's `auth.test` says
/// (<https://docs.slack.dev/reference/methods/auth.test>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Workspace name.
    pub team: String,
    /// Workspace URL, e.g. `https://acme.slack.com/`.
    pub url: String,
    /// The bot user's name, when Slack gives one.
    pub user: Option<String>,
    /// The bot user's id, e.g. `U0123`.
    pub user_id: String,
}

/// A test message that reached Slack (`drill notify --test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDelivery {
    /// The posting.
    pub delivery: Delivery,
    /// For a bot token: whom `auth.test` says it belongs to.
    pub identity: Option<Identity>,
}

/// `drill notify --test`: prove the `[slack]` settings work before a drill
/// needs them. With a bot token, `auth.test` is called first (one attempt
/// within `timeout`); then a short test message naming `host` and the
/// config file `config_path` is posted as [`deliver`] posts a report.
///
/// # Errors
/// [`NotifyError`]: the secret cannot be read, `auth.test` refuses the
/// token ([`NotifyError::AuthTest`]), or the message is not accepted.
pub async fn test(
    cfg: &SlackConfig,
    host: &str,
    config_path: &str,
    note: &(dyn Fn(&str) + Sync),
) -> Result<TestDelivery, NotifyError> {
    let conn = Connection::open(cfg).await?;
    let identity = match &cfg.target {
        SlackTarget::Webhook(_) => None,
        SlackTarget::Bot { .. } => Some(auth_test(&conn, cfg).await?),
    };
    let mut text = format!(
        "drill test message from `{}` (config `{}`): Slack settings work; drill reports will arrive here.",
        esc(host),
        esc(config_path)
    );
    if let Some(i) = &identity {
        text.push_str(&format!(
            "\nPosted as {} in workspace {}.",
            esc(i.user.as_deref().unwrap_or(&i.user_id)),
            esc(&i.team)
        ));
    }
    let message = SlackMessageContent::new()
        .with_text(format!("drill test message from {host}"))
        .with_blocks(vec![section(text)]);
    let delivery = post(&conn, cfg, &message, note).await?;
    Ok(TestDelivery { delivery, identity })
}

async fn auth_test(conn: &Connection, cfg: &SlackConfig) -> Result<Identity, NotifyError> {
    let token = conn.token();
    let session = conn.client.open_session(&token);
    let answer = tokio::time::timeout(cfg.timeout, session.auth_test()).await;
    let message = match answer {
        Ok(Ok(r)) => {
            return Ok(Identity {
                team: r.team,
                url: r.url.0.to_string(),
                user: r.user,
                user_id: r.user_id.0,
            })
        }
        Ok(Err(e)) => match classify(e) {
            Failure::Final(m) | Failure::Retry { message: m, .. } => m,
        },
        Err(_) => format!("no answer within {}", crate::duration::human(cfg.timeout)),
    };
    Err(NotifyError::AuthTest {
        message: conn.secret.redact(&message),
    })
}

async fn post(
    conn: &Connection,
    cfg: &SlackConfig,
    message: &SlackMessageContent,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Delivery, NotifyError> {
    let redact = |s: &str| conn.secret.redact(s);
    let client = &conn.client;
    let mut attempts = 0u32;
    let mut pause = cfg.backoff;
    loop {
        attempts += 1;
        let sent = async {
            match (&conn.webhook, &cfg.target) {
                (Some(url), _) => client
                    .post_webhook_message(
                        url,
                        &SlackApiPostWebhookMessageRequest::new(message.clone()),
                    )
                    .await
                    .map(|_| ()),
                (None, SlackTarget::Bot { channel, .. }) => {
                    let token = conn.token();
                    client
                        .open_session(&token)
                        .chat_post_message(&SlackApiChatPostMessageRequest::new(
                            SlackChannelId::new(channel.clone()),
                            message.clone(),
                        ))
                        .await
                        .map(|_| ())
                }
                (None, SlackTarget::Webhook(_)) => unreachable!("a webhook target has its URL"),
            }
        };
        let failure = match tokio::time::timeout(cfg.timeout, sent).await {
            Ok(Ok(())) => return Ok(Delivery { attempts }),
            Ok(Err(e)) => classify(e),
            Err(_) => Failure::Retry {
                message: format!("no answer within {}", crate::duration::human(cfg.timeout)),
                retry_after: None,
            },
        };
        match failure {
            Failure::Final(message) => {
                return Err(NotifyError::Refused {
                    attempts,
                    message: redact(&message),
                })
            }
            Failure::Retry {
                message,
                retry_after,
            } => {
                let message = redact(&message);
                if attempts > cfg.retries {
                    return Err(NotifyError::GaveUp { attempts, message });
                }
                let wait = retry_after.unwrap_or(pause);
                if wait > MAX_RETRY_AFTER {
                    return Err(NotifyError::GaveUp {
                        attempts,
                        message: format!(
                            "{message}; Slack asked to wait {}, longer than drill waits ({})",
                            crate::duration::human(wait),
                            crate::duration::human(MAX_RETRY_AFTER)
                        ),
                    });
                }
                note(&format!(
                    "slack: attempt {attempts} failed ({message}); retrying in {}",
                    crate::duration::human(Duration::from_millis(wait.as_millis() as u64))
                ));
                tokio::time::sleep(wait).await;
                pause = pause.saturating_mul(2);
            }
        }
    }
}

/// `s` cut to at most `max` characters, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// Escape text for Slack's `mrkdwn` (`&`, `<`, `>`).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn duration(seconds: f64) -> String {
    crate::duration::human_seconds(seconds)
}

fn against_limit(what: &str, l: &PolicyLimit) -> String {
    let (actual, most) = crate::duration::against_limit(l.actual_seconds, l.limit_seconds);
    let limit = l.limit_seconds.map(|_| most);
    match (l.status, limit) {
        (PolicyStatus::NotConfigured, _) | (_, None) => format!("{what} {actual} (no limit)"),
        (PolicyStatus::Passed, Some(m)) => format!("{what} {actual} ≤ limit {m} ✓"),
        (PolicyStatus::Failed, Some(m)) => {
            format!("{what} {actual} > limit {m} ✗ *over the limit*")
        }
        (PolicyStatus::Unknown, Some(m)) => format!("{what} unknown (limit {m}) — not proven"),
    }
}

fn status_icon(s: Status) -> &'static str {
    match s {
        Status::Passed => "✅",
        Status::Failed => "❌",
        Status::Error => "⚠️",
        Status::NotRun => "⏭️",
    }
}

fn section(text: String) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockMarkDownText::new(clip(&text, 3000)).as_block_text())
        .into()
}

/// Slack allows at most 50 blocks in a message
/// (<https://docs.slack.dev/reference/block-kit/blocks>).
pub const MAX_BLOCKS: usize = 50;

/// Where the full report lives, as the message's last line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLink {
    /// Where the report is on disk, e.g. `host:/path/20270115T030000Z-local.html`.
    pub location: String,
    /// The report served over http(s) (`[slack] report_url` with `{report}`
    /// replaced); "Full report" links to it.
    pub url: Option<String>,
}

impl ReportLink {
    /// The link for the HTML report `html` written on `host`: its location,
    /// and `report_url` with [`crate::config::REPORT_PLACEHOLDER`] replaced
    /// by `html`'s file name.
    pub fn new(host: &str, html: &std::path::Path, report_url: Option<&str>) -> Self {
        let name = html
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ReportLink {
            location: format!("{host}:{}", html.display()),
            url: report_url.map(|u| u.replace(crate::config::REPORT_PLACEHOLDER, &name)),
        }
    }
}

/// One database's line: restore, and its checks when it has any.
fn database_line(db: &crate::report::DatabaseReport) -> String {
    let r = &db.restore;
    let mut text = format!(
        "{} *{}* — restore {} ({} in {})",
        status_icon(r.status),
        esc(&db.name),
        r.status.as_str(),
        bytesize::ByteSize(r.bytes),
        duration(r.seconds)
    );
    if let Some(e) = &r.error {
        text.push_str(&format!("\n> {}", esc(&clip(e, 300))));
    }
    if !db.checks.is_empty() {
        let passed = db
            .checks
            .iter()
            .filter(|c| c.status == Status::Passed)
            .count();
        let list: Vec<String> = db
            .checks
            .iter()
            .map(|c| format!("{} {}", status_icon(c.status), esc(&c.name)))
            .collect();
        text.push_str(&format!(
            "\nchecks {passed}/{} passed: {}",
            db.checks.len(),
            list.join(", ")
        ));
    }
    text
}

/// A check that did not pass: what it found, the first findings.
fn check_line(db: &str, c: &crate::report::CheckReport) -> String {
    let mut text = format!(
        "{} *{}* ({}, {}) {}: {}",
        status_icon(c.status),
        esc(&c.name),
        esc(&c.kind),
        esc(db),
        c.status.as_str(),
        esc(&clip(&c.detail, 500))
    );
    if !c.findings.is_empty() {
        let shown: Vec<String> = c
            .findings
            .iter()
            .take(3)
            .map(|f| esc(&clip(f, 300)))
            .collect();
        text.push_str(&format!("\n```{}```", shown.join("\n")));
        if c.findings.len() > 3 {
            text.push_str(&format!("\n…and {} more", c.findings.len() - 3));
        }
    }
    text
}

fn plural(n: usize, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// The Block Kit message for `report`; times are shown in `tz`.
///
/// Layout: a header with the verdict, the fields (verdict, tier, snapshot
/// against the RPO limit, RTO against its limit), why it did not pass,
/// the tiers tried; then the databases that did not pass first, each with
/// its checks that did not pass and their first findings; then every
/// database that passed folded into one line; last, where the full report
/// is (a link with `report.url`). When that is more than Slack's
/// [`MAX_BLOCKS`], the failures that do not fit are left out and a note
/// says how many, always kept with the last line.
pub fn message(report: &Report, link: &ReportLink, tz: chrono_tz::Tz) -> SlackMessageContent {
    let (icon, word) = match report.verdict {
        Verdict::Passed => ("✅", "passed"),
        Verdict::Failed => ("❌", "FAILED"),
        Verdict::Error => ("⚠️", "ERROR — no verdict"),
    };
    let mut blocks: Vec<SlackBlock> = vec![SlackHeaderBlock::new(
        SlackBlockPlainText::new(clip(
            &format!("{icon} Restore drill {word}: tier {}", report.tier),
            150,
        ))
        .into(),
    )
    .into()];

    let snapshot = match &report.snapshot {
        Some(s) => format!(
            "*Snapshot*\n`{}` of {}\n{}",
            esc(&s.short_id),
            s.time.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
            against_limit("age", &report.policy.max_snapshot_age)
        ),
        None => "*Snapshot*\nnone restored".into(),
    };
    let fields = vec![
        format!("*Verdict*\n{icon} {word}"),
        format!(
            "*Tier*\n`{}`\n{}",
            esc(&report.tier),
            esc(&clip(&report.repository, 300))
        ),
        snapshot,
        format!(
            "*RTO*\n{}",
            against_limit("restore + checks", &report.policy.max_rto)
        ),
    ];
    blocks.push(
        SlackSectionBlock::new()
            .with_fields(
                fields
                    .into_iter()
                    .map(|f| SlackBlockMarkDownText::new(clip(&f, 2000)).as_block_text())
                    .collect(),
            )
            .into(),
    );
    if report.verdict != Verdict::Passed && !report.reasons.is_empty() {
        let reasons: Vec<String> = report
            .reasons
            .iter()
            .take(8)
            .map(|r| format!("• {}", esc(&clip(r, 300))))
            .collect();
        blocks.push(section(format!("*Why*\n{}", reasons.join("\n"))));
    }
    if report.attempts.len() > 1 {
        let tiers: Vec<String> = report
            .attempts
            .iter()
            .map(|a| format!("`{}` {}", esc(&a.tier), a.verdict.as_str()))
            .collect();
        blocks.push(section(format!("*Tiers tried*: {}", tiers.join(" → "))));
    }
    blocks.push(SlackDividerBlock::new().into());

    // Failures first: each database that did not pass, then its checks
    // that did not pass. `true` marks a database's block.
    let mut failures: Vec<(bool, String)> = Vec::new();
    let mut passed = Vec::new();
    let mut passed_checks = 0;
    for db in &report.databases {
        let ok = db.restore.status == Status::Passed
            && db.checks.iter().all(|c| c.status == Status::Passed);
        if ok {
            passed.push(esc(&db.name));
            passed_checks += db.checks.len();
            continue;
        }
        failures.push((true, database_line(db)));
        failures.extend(
            db.checks
                .iter()
                .filter(|c| c.status != Status::Passed)
                .map(|c| (false, check_line(&db.name, c))),
        );
    }
    let passed_line = (!passed.is_empty()).then(|| {
        format!(
            "✅ {} passed: {} ({} passed)",
            plural(passed.len(), "database"),
            passed.join(", "),
            plural(passed_checks, "check")
        )
    });

    // Room for failures: what is left after the blocks so far, the passed
    // line and the context; one less when a note must say what was cut.
    let room = MAX_BLOCKS - blocks.len() - 1 - usize::from(passed_line.is_some());
    let shown = if failures.len() > room {
        room.saturating_sub(1)
    } else {
        failures.len()
    };
    let cut = failures.split_off(shown);
    blocks.extend(failures.into_iter().map(|(_, text)| section(text)));
    if !cut.is_empty() {
        let dbs = cut.iter().filter(|(db, _)| *db).count();
        let mut what = Vec::new();
        if dbs > 0 {
            what.push(plural(dbs, "database"));
        }
        if cut.len() > dbs {
            what.push(plural(cut.len() - dbs, "check"));
        }
        blocks.push(section(format!(
            "…{} more that did not pass ({}): see the full report",
            cut.len(),
            what.join(", ")
        )));
    }
    blocks.extend(passed_line.map(section));

    let mut context = vec![match &link.url {
        Some(url) => format!("<{url}|Full report> · `{}`", esc(&link.location)),
        None => format!("Full report: `{}`", esc(&link.location)),
    }];
    context.push(format!(
        "run `{}` · drill {}",
        esc(&report.run_id),
        esc(&report.drill_version)
    ));
    if !report.warnings.is_empty() {
        context.push(format!(
            "{} warning(s) in the report",
            report.warnings.len()
        ));
    }
    blocks.push(
        SlackContextBlock::new(
            context
                .into_iter()
                .map(|t| {
                    SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(clip(&t, 2000)))
                })
                .collect(),
        )
        .into(),
    );

    let text = format!(
        "Restore drill {word}: tier {}{}",
        report.tier,
        report
            .snapshot
            .as_ref()
            .map(|s| format!(", snapshot {}", s.short_id))
            .unwrap_or_default()
    );
    SlackMessageContent::new()
        .with_text(text)
        .with_blocks(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_and_escaping() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(esc("a<b>&c"), "a&lt;b&gt;&amp;c");
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let ok = |u: &str| check_url(&url::Url::parse(u).unwrap(), "x").is_ok();
        assert!(ok("https://hooks.slack.com/services/T/B/X"));
        assert!(ok("http://127.0.0.1:8080/hook"));
        assert!(ok("http://localhost:8080/hook"));
        assert!(!ok("http://hooks.slack.com/services/T/B/X"));
        assert!(!ok("ftp://127.0.0.1/"));
    }
}
