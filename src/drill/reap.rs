//! Removing sandboxes that no running drill owns.
//!
//! Every sandbox carries drill's labels: the run id, and the pid and host of
//! the drill process that started it. A run removes its own sandboxes when it
//! ends, fails or is interrupted; what is left comes from a run that was
//! killed (SIGKILL, power loss) or kept with `--keep`. Two ways clean up:
//!
//! - the next drill of the same config finds the killed run in the lock file
//!   ([`super::DrillLock::stale`]) and removes that run's sandboxes, only
//!   those ([`super::sweep`], as after an interruption);
//! - `drill reap` removes every drill sandbox whose drill process is gone
//!   ([`reap`]); a sandbox whose process still runs on this host is never
//!   touched, and one started from another host is left alone (its process
//!   cannot be checked from here).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::host::hostname;
use crate::sandbox::{Engine, SandboxError, SandboxInfo, ENGINES};

/// The engines that answer, and every drill sandbox they hold (each with
/// the index of its engine). An engine's error counts only when it is the
/// configured one.
async fn list(
    config: &crate::config::SandboxConfig,
) -> Result<(Vec<(SandboxInfo, usize)>, Vec<Box<dyn Engine>>), SandboxError> {
    let mut all = Vec::new();
    let mut engines: Vec<Box<dyn Engine>> = Vec::new();
    for entry in ENGINES {
        let configured = entry.name == config.engine;
        match (entry.connect)(config).await {
            Ok(engine) => {
                match engine.sandboxes().await {
                    Ok(list) => all.extend(list.into_iter().map(|s| (s, engines.len()))),
                    Err(e) if configured => return Err(e),
                    Err(_) => {}
                }
                engines.push(engine);
            }
            Err(e) if configured => return Err(e),
            Err(_) => {}
        }
    }
    Ok((all, engines))
}

/// Why a sandbox is kept or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Its drill process is gone: removed (or would be, with `--dry-run`).
    Removed,
    /// Its drill process still runs on this host.
    InUse,
    /// Started from another host; its process cannot be checked here.
    OtherHost,
    /// Younger than `--older-than`.
    TooYoung,
    /// Its drill process is gone, but the engine still lists it after the
    /// removal.
    NotRemoved,
}

/// One sandbox `drill reap` looked at.
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    /// The sandbox.
    #[serde(flatten)]
    pub sandbox: SandboxInfo,
    /// Its age, seconds.
    pub age_seconds: i64,
    /// What happened to it.
    pub fate: Fate,
}

/// Look at every drill sandbox; remove those whose drill process is gone
/// and that are older than `older_than` (all of them when `None`), unless
/// `dry_run`. A sandbox the engine still lists afterwards is
/// [`Fate::NotRemoved`].
///
/// The sandboxes of every registered engine that answers are looked at
/// (a local sandbox's `id` is its directory).
///
/// # Errors
/// The configured engine cannot be reached or listed.
pub async fn reap(
    config: &crate::config::SandboxConfig,
    older_than: Option<std::time::Duration>,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Reaped>, SandboxError> {
    let (sandboxes, engines) = list(config).await?;
    let here = hostname();
    let mut out = Vec::new();
    for (s, engine) in sandboxes {
        let age = (now - s.created).num_seconds();
        let fate = match (&s.host, s.pid) {
            (Some(h), _) if *h != here => Fate::OtherHost,
            (_, Some(pid)) if crate::host::process_alive(pid) => Fate::InUse,
            _ if older_than.is_some_and(|d| age < d.as_secs() as i64) => Fate::TooYoung,
            _ => Fate::Removed,
        };
        if fate == Fate::Removed && !dry_run {
            engines[engine].remove(&s.id).await;
        }
        out.push(Reaped {
            sandbox: s,
            age_seconds: age,
            fate,
        });
    }
    if !dry_run && out.iter().any(|r| r.fate == Fate::Removed) {
        // Removal is best effort per container: believe the engine's list,
        // not the request.
        let left: Vec<String> = list(config)
            .await?
            .0
            .into_iter()
            .map(|(s, _)| s.id)
            .collect();
        for r in &mut out {
            if r.fate == Fate::Removed && left.contains(&r.sandbox.id) {
                r.fate = Fate::NotRemoved;
            }
        }
    }
    out.sort_by_key(|r| r.sandbox.created);
    Ok(out)
}
