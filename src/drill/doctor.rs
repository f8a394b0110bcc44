//! `drill doctor`: a read-only preflight, one line per item, each failure
//! with what to do. Nothing is written to a repository, no sandbox is
//! started and no secret is printed.

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::{Config, PasswordSource, SlackTarget};
use crate::sandbox::Engine;
use crate::tier::{locate, Repository, TierError};

/// How an item fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Works.
    Ok,
    /// Works, or cannot be checked now, with something to know (a cold disk
    /// not mounted, an old restic). Does not fail the doctor.
    Warn,
    /// Broken: a drill would not get a verdict.
    Fail,
}

/// One line of the doctor's report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was checked, e.g. `tier ring`.
    pub item: String,
    /// The outcome.
    pub health: Health,
    /// What was found.
    pub detail: String,
    /// What to do, for `warn` and `fail`.
    pub fix: Option<String>,
}

fn item(
    name: impl Into<String>,
    health: Health,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Item {
    Item {
        item: name.into(),
        health,
        detail: detail.into(),
        fix,
    }
}

/// restic versions below this are warned about (exit codes 10/12 for a
/// missing repository and a wrong password arrived in 0.17).
const RESTIC_MIN: (u32, u32) = (0, 17);

/// One item per database, from the latest snapshot of the first reachable
/// tier (in `fallback` order, else by name): the versions its dump's head
/// names, the image its sandbox would run, whether that image is present,
/// and whether its PostgreSQL (`PG_MAJOR` of the image) is at least the
/// dump's `pg_dump` major.
async fn database_items(
    config: &Config,
    engine: &dyn Engine,
    latest: &[(String, crate::tier::Snapshot, Repository)],
    clock: &dyn Clock,
) -> Vec<Item> {
    let pick = config
        .fallback
        .iter()
        .find_map(|f| latest.iter().find(|(n, _, _)| n == f))
        .or_else(|| latest.first());
    let Some((tier, snapshot, repo)) = pick else {
        return Vec::new();
    };
    let paths: Vec<&str> = config.databases.iter().map(|d| d.path.as_str()).collect();
    let files = match repo.find_files(snapshot, &paths).await {
        Ok(f) => f,
        Err(e) => {
            return vec![item(
                "databases",
                Health::Warn,
                format!(
                    "could not list snapshot {} of tier {tier}: {e}",
                    snapshot.short_id
                ),
                None,
            )]
        }
    };
    let mut items = Vec::new();
    for db in &config.databases {
        let name = format!("database {}", db.name);
        let where_ = format!("snapshot {} of tier {tier}", snapshot.short_id);
        let Some(file) = files.iter().find(|f| f.path == db.path).cloned() else {
            items.push(item(
                name,
                Health::Warn,
                format!("{where_} does not hold {}", db.path),
                Some("check `path`, or whether the nightly backup ran".into()),
            ));
            continue;
        };
        let plan = crate::restore::plan(db, file, &config.sandbox);
        let method = plan.method();
        let src = crate::restore::Source::new(repo, snapshot, &config.timeouts);
        let head = method.inspect(&plan, &src).await;
        // Only the head was wanted: the stream a restore would go on
        // reading stops now.
        drop(src.held.take(&db.path));
        let head = match head {
            Ok(h) => h,
            Err(o) => {
                items.push(item(
                    name,
                    Health::Warn,
                    format!(
                        "could not read the head of {} in {where_}: {}",
                        db.path,
                        o.error.unwrap_or_default()
                    ),
                    None,
                ));
                continue;
            }
        };
        let v = &head.versions;
        let dumped = if v.server.is_none() && v.pg_dump.is_none() {
            format!(
                "{} in {where_}: a {} dump ({})",
                db.path,
                db.kind.title(),
                db.format.as_str()
            )
        } else {
            format!(
                "{} in {where_}: dumped from PostgreSQL {} by pg_dump {}",
                db.path,
                v.server.as_deref().unwrap_or("(not stated)"),
                v.pg_dump.as_deref().unwrap_or("(not stated)")
            )
        };
        let image = match method.image(&plan.database, &head) {
            Ok(i) => i,
            Err(e) => {
                items.push(item(name, Health::Fail, format!("{dumped}; {e}"), None));
                continue;
            }
        };
        if engine.image_present(&image).await == Some(false) {
            items.push(item(
                name,
                Health::Fail,
                format!("{dumped}; its sandbox image {image} is not present on the engine"),
                Some(format!("`docker pull {image}`, or build the offline image (scripts/build-image.sh) and set `image`")),
            ));
            continue;
        }
        let image_major = engine
            .image_env(&image)
            .await
            .iter()
            .find_map(|kv| kv.strip_prefix("PG_MAJOR="))
            .and_then(crate::restore::head::major_of);
        match (image_major, v.pg_dump_major()) {
            (Some(server), Some(dump)) if server < dump => items.push(item(
                name,
                Health::Fail,
                format!(
                    "{dumped}; sandbox image {image} runs PostgreSQL {server}, older than the dump"
                ),
                Some(format!(
                    "use image = \"postgres:{{major}}\" or an image of PostgreSQL ≥ {dump}"
                )),
            )),
            (server, _) => {
                items.push(item(
                    name,
                    Health::Ok,
                    format!(
                        "{dumped}; sandbox image {image}{}",
                        server
                            .map(|s| format!(" (PostgreSQL {s})"))
                            .unwrap_or_else(
                                || " (its PostgreSQL version is known once it runs)".into()
                            )
                    ),
                    None,
                ));
                // An image chosen by the dump (`{major}`) is not among the
                // configured images the engine item lists.
                let item_name = format!("template {image} ({})", db.kind.name());
                if crate::restore::image::is_template(&db.image)
                    && !items.iter().any(|i| i.item == item_name)
                {
                    items.push(template_item(engine, &image, db.kind, clock).await);
                }
            }
        }
    }
    items
}

/// The kinds of the databases whose sandboxes run `image` (`[sandbox]
/// image` is PostgreSQL's), each once.
fn kinds_of(config: &Config, image: &str) -> Vec<&'static dyn crate::kind::DatabaseKind> {
    let mut kinds: Vec<&'static dyn crate::kind::DatabaseKind> = Vec::new();
    let configured = config
        .databases
        .iter()
        .filter(|d| d.image == image)
        .map(|d| d.kind)
        .chain((config.sandbox.image == image).then(crate::kind::default_kind));
    for kind in configured {
        if !kinds.iter().any(|k| k.name() == kind.name()) {
            kinds.push(kind);
        }
    }
    kinds
}

/// Rough seconds a template takes to build, for the doctor's estimate
/// (measured: 4–7 s for PostgreSQL and MariaDB on a two-core host).
const TEMPLATE_BUILD_ESTIMATE_S: f64 = 6.0;

/// Whether sandboxes of `kind` from `image` start from a ready template
/// (see [`crate::sandbox::template`]): `ok` when ready or not used, `warn`
/// when not built yet (the first drill builds it) or unusable with this
/// image.
async fn template_item(
    engine: &dyn Engine,
    image: &str,
    kind: &'static dyn crate::kind::DatabaseKind,
    clock: &dyn Clock,
) -> Item {
    use crate::sandbox::TemplateStatus;
    let name = format!("template {image} ({})", kind.name());
    match engine.template_status(image, kind).await {
        TemplateStatus::Ready {
            tag,
            built,
            build_seconds,
            copied,
            spares,
        } => {
            let when = built
                .map(|b| {
                    let age = (clock.now() - b).to_std().unwrap_or_default();
                    format!(
                        "built {} ({} ago)",
                        b.format("%Y-%m-%d %H:%M UTC"),
                        crate::duration::human(Duration::from_secs(age.as_secs()))
                    )
                })
                .unwrap_or_else(|| "built (time unknown)".into());
            let took = build_seconds
                .map(|s| format!(" in {}", crate::duration::human_seconds(s)))
                .unwrap_or_default();
            item(
                name,
                Health::Ok,
                format!(
                    "template ready ({when}{took}): {tag}; sandboxes start without initialising a data directory{}",
                    if copied {
                        format!(" (each has a copy in a volume of its own: the storage driver's copy-on-write is not trusted; {spares} spare cop{} ready, made after earlier sandboxes started)", if spares == 1 { "y" } else { "ies" })
                    } else {
                        String::new()
                    }
                ),
                None,
            )
        }
        TemplateStatus::Missing { tag } => item(
            name,
            Health::Warn,
            format!(
                "no template yet: the first drill builds it (~{}, once) as {tag}",
                crate::duration::human_seconds(TEMPLATE_BUILD_ESTIMATE_S)
            ),
            Some("nothing to do; sandboxes after the first start in under a second".into()),
        ),
        TemplateStatus::Unusable(why) => item(
            name,
            Health::Warn,
            format!("no template can be made: {why}"),
            Some(
                "nothing to do: its sandboxes start without a template, a few seconds slower each"
                    .into(),
            ),
        ),
        TemplateStatus::NotUsed(why) => {
            item(name, Health::Ok, format!("templates not used: {why}"), None)
        }
    }
}

/// Run every preflight item against `config` (already loaded: the config
/// item is implied).
pub async fn run(config: &Config, clock: &dyn Clock) -> Vec<Item> {
    let mut items = vec![item(
        "config",
        Health::Ok,
        format!(
            "{} is valid: {} tier(s), {} database(s), {} check(s)",
            config.path.display(),
            config.tiers.len(),
            config.databases.len(),
            config.checks.len()
        ),
        None,
    )];

    // the schedule's dialect warnings (a weekday field read differently
    // before)
    if let Some(schedule) = &config.schedule {
        for w in schedule.warnings() {
            items.push(item(
                "schedule",
                Health::Warn,
                w.clone(),
                Some(
                    "write the day of week as a name (Mon, Sun) to mean the same in every dialect"
                        .into(),
                ),
            ));
        }
    }

    // restic
    let restic = &config.restic;
    let version = tokio::process::Command::new(restic)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .await;
    let restic_ok = match version {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let v = parse_restic_version(&text);
            let old = v.is_some_and(|(a, b)| (a, b) < RESTIC_MIN);
            items.push(item(
                "restic",
                if old { Health::Warn } else { Health::Ok },
                text,
                old.then(|| "upgrade restic to 0.17 or newer (exit codes for a missing repository and a wrong password)".to_string()),
            ));
            true
        }
        Ok(o) => {
            items.push(item(
                "restic",
                Health::Fail,
                format!("`{} version` exited with {}", restic.display(), o.status),
                Some("reinstall restic".into()),
            ));
            false
        }
        Err(e) => {
            items.push(item(
                "restic",
                Health::Fail,
                format!("cannot run {}: {e}", restic.display()),
                Some(
                    "install restic (≥ 0.17) or set `restic = \"/path/to/restic\"` in drill.toml"
                        .into(),
                ),
            ));
            false
        }
    };

    // tiers; the latest snapshot of each reachable one is kept for the
    // databases' items
    let mut latest: Vec<(String, crate::tier::Snapshot, Repository)> = Vec::new();
    let now = clock.now().with_timezone(&config.timezone);
    let fresh = super::status::freshness(config);
    for t in config.tiers.values() {
        let name = format!("tier {}", t.name);
        let location = match locate(t, &now) {
            Ok(l) => l,
            Err(e) => {
                items.push(item(
                    name,
                    Health::Warn,
                    e.to_string(),
                    Some("mount the tier's disk before drilling it".into()),
                ));
                continue;
            }
        };
        if !restic_ok {
            items.push(item(
                name,
                Health::Fail,
                "not checked: restic is unusable",
                None,
            ));
            continue;
        }
        if t.password == PasswordSource::Prompt && !has_terminal() {
            items.push(item(
                name,
                Health::Warn,
                format!(
                    "{}: not checked, password_prompt needs a terminal",
                    crate::secret::redact_url(&location.repository)
                ),
                Some("run drill doctor from a terminal".into()),
            ));
            continue;
        }
        let repo = match Repository::open_at(t, &location.repository, restic).await {
            Ok(r) => r,
            Err(e) => {
                items.push(item(
                    name,
                    Health::Fail,
                    e.to_string(),
                    Some(password_fix(&t.name)),
                ));
                continue;
            }
        };
        match repo.snapshots().await {
            Ok(s) => {
                if let Some(l) = s.last() {
                    latest.push((t.name.clone(), l.clone(), repo.clone()));
                }
                items.push(item(
                    name,
                    Health::Ok,
                    format!(
                        "{}{}: reachable, password works, {} snapshot(s){}",
                        repo.display_location(),
                        location
                            .disk
                            .map(|d| format!(" (disk {d})"))
                            .unwrap_or_default(),
                        s.len(),
                        s.last()
                            .map(|l| format!(
                                ", latest {} of {}",
                                l.short_id,
                                l.time
                                    .with_timezone(&config.timezone)
                                    .format("%Y-%m-%d %H:%M %Z")
                            ))
                            .unwrap_or_default()
                    ),
                    None,
                ));
                if let Some(policy) = &t.retention {
                    items.push(retention_item(config, t, policy, &repo, &s, &fresh, clock).await);
                }
            }
            Err(e) => {
                let fix = match &e {
                    TierError::WrongPassword { .. } | TierError::Password { .. } => {
                        password_fix(&t.name)
                    }
                    TierError::RepositoryMissing { .. } => {
                        "check the repository path (and that the disk is mounted)".into()
                    }
                    TierError::Ssh { .. } => format!("check the peer and [tiers.{}.ssh]", t.name),
                    _ => "see restic's message".into(),
                };
                items.push(item(name, Health::Fail, e.to_string(), Some(fix)));
            }
        }
        for w in location.warnings {
            items.push(item(
                format!("tier {} rotation", t.name),
                Health::Warn,
                w,
                Some("rotate the cold disks".into()),
            ));
        }
    }

    // sandbox engines: every registered one is looked at; only the
    // configured one can fail the preflight.
    for entry in crate::sandbox::ENGINES {
        let chosen = entry.name == config.sandbox.engine;
        let name = format!("engine {}", entry.name);
        match (entry.connect)(&config.sandbox).await {
            Ok(engine) => {
                items.push(item(
                    name,
                    Health::Ok,
                    format!(
                        "usable: {}{}",
                        engine.describe().await,
                        if chosen { "; configured" } else { "" }
                    ),
                    None,
                ));
                if chosen && !engine.uses_images() {
                    let kind = crate::kind::default_kind();
                    items.push(template_item(engine.as_ref(), entry.name, kind, clock).await);
                }
                if chosen && engine.uses_images() {
                    items.extend(database_items(config, engine.as_ref(), &latest, clock).await);
                    let mut images: Vec<&str> = config
                        .databases
                        .iter()
                        .map(|d| d.image.as_str())
                        .chain(std::iter::once(config.sandbox.image.as_str()))
                        .filter(|i| !crate::restore::image::is_template(i))
                        .collect();
                    images.sort_unstable();
                    images.dedup();
                    for image in images {
                        if engine.image_present(image).await != Some(false) {
                            items.push(item(format!("image {image}"), Health::Ok, "present", None));
                            for kind in kinds_of(config, image) {
                                items
                                    .push(template_item(engine.as_ref(), image, kind, clock).await);
                            }
                        } else {
                            items.push(item(
                                format!("image {image}"),
                                Health::Fail,
                                "not present on the engine",
                                Some(format!("`docker pull {image}`, or build the offline image (scripts/build-image.sh) and set `image`")),
                            ));
                        }
                    }
                }
            }
            Err(e) => items.push(item(
                name,
                if chosen { Health::Fail } else { Health::Warn },
                format!("not usable: {e}"),
                Some(if chosen {
                    entry.fix.to_string()
                } else {
                    format!("not needed: sandbox.engine = \"{}\"", config.sandbox.engine)
                }),
            )),
        }
    }

    // slack
    match &config.slack {
        Some(s) => {
            let (what, source) = match &s.target {
                SlackTarget::Webhook(src) => ("incoming webhook URL".to_string(), src),
                SlackTarget::Bot { token, channel } => {
                    (format!("bot token (channel {channel})"), token)
                }
            };
            match source.read().await {
                Ok(_) => items.push(item(
                    "slack",
                    Health::Ok,
                    format!(
                        "{what} from {}: readable (`drill notify --test` posts a test message)",
                        source.describe()
                    ),
                    None,
                )),
                Err(e) => items.push(item(
                    "slack",
                    Health::Fail,
                    format!("{what} from {}: {e}", source.describe()),
                    Some("fix the [slack] secret source, or run drills with --no-notify".into()),
                )),
            }
        }
        // Slack is optional (CI, a host that only writes reports).
        None => items.push(item(
            "slack",
            Health::Ok,
            "no [slack]: reports are not posted (optional)",
            None,
        )),
    }
    items
}

/// The retention guard's item for tier `t`: `warn` when its newest
/// snapshot that passed expires under `policy` before the next scheduled
/// drill (see [`super::retention::expiring`]), or no snapshot has passed.
async fn retention_item(
    config: &Config,
    t: &crate::config::TierConfig,
    policy: &[String],
    repo: &Repository,
    snapshots: &[crate::tier::Snapshot],
    fresh: &std::collections::BTreeMap<String, crate::ledger::Freshness>,
    clock: &dyn Clock,
) -> Item {
    let name = format!("tier {} retention", t.name);
    let Some((id, time)) = fresh.get(&t.name).and_then(|f| f.newest_passed.clone()) else {
        return item(
            name,
            Health::Warn,
            "the ledger holds no snapshot of this tier that passed: the retention policy protects nothing known good",
            Some(format!("run drill verify-history --tier {}", t.name)),
        );
    };
    let now = clock.now();
    let horizon = super::retention::horizon(config, now);
    let within = if horizon.is_zero() {
        "now (no schedule)".to_string()
    } else {
        format!(
            "before the next scheduled drill ({})",
            (now + horizon)
                .with_timezone(&config.timezone)
                .format("%Y-%m-%d %H:%M %Z")
        )
    };
    let short: String = id.chars().take(8).collect();
    match super::retention::expiring(repo, snapshots, policy, horizon).await {
        Ok(gone) if gone.iter().any(|s| s.id == id) => item(
            name,
            Health::Warn,
            format!(
                "the newest snapshot that passed, {short} of {time}, expires under `{}` {within}",
                policy.join(" ")
            ),
            Some({
                let days = chrono::DateTime::parse_from_rfc3339(&time)
                    .map(|at| (now + horizon - at.with_timezone(&chrono::Utc)).num_days() + 2)
                    .unwrap_or(2);
                format!("drill before then, or keep it longer: add --keep-within {days}d to the tier's retention policy")
            }),
        ),
        Ok(_) => item(
            name,
            Health::Ok,
            format!("the newest snapshot that passed, {short} of {time}, outlives the next scheduled drill under `{}`", policy.join(" ")),
            None,
        ),
        Err(e) => item(
            name,
            Health::Warn,
            format!("not checked: {e}"),
            None,
        ),
    }
}

fn password_fix(tier: &str) -> String {
    format!("check the password source of [tiers.{tier}] (password_command, password_file, password_prompt, or RESTIC_PASSWORD_FILE)")
}

fn has_terminal() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// `restic 0.18.0 compiled with …` → (0, 18).
fn parse_restic_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().nth(1)?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn restic_version_is_read() {
        assert_eq!(
            super::parse_restic_version("restic 0.18.0 compiled with go1.24.4 on linux/amd64"),
            Some((0, 18))
        );
        assert_eq!(
            super::parse_restic_version("restic 0.14.0 compiled"),
            Some((0, 14))
        );
        assert_eq!(super::parse_restic_version("nonsense"), None);
    }
}
