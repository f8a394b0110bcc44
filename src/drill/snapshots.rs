//! `drill snapshots --tier T`: a tier's snapshots and which configured
//! dumps each holds.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::tier::{locate, Repository, TierError};

/// One snapshot of a tier.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotListing {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// When it was taken.
    pub time: DateTime<FixedOffset>,
    /// Age now, seconds.
    pub age_seconds: f64,
    /// Host it was taken on.
    pub hostname: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Every `[[databases]]` entry: whether this snapshot holds its dump.
    pub dumps: Vec<DumpListing>,
}

/// One configured dump in one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct DumpListing {
    /// `[[databases]]` name.
    pub database: String,
    /// Dump path inside the snapshot.
    pub path: String,
    /// Size in bytes; `None` when the snapshot does not hold the dump.
    pub size: Option<u64>,
}

/// The tier's snapshots, oldest first, with the configured dumps each holds
/// (one `restic ls` per snapshot).
///
/// # Errors
/// [`TierError`]: the tier is not mounted or reachable, wrong password.
pub async fn list(
    config: &Config,
    tier: &str,
    clock: &dyn Clock,
) -> Result<Vec<SnapshotListing>, TierError> {
    let t = config.tiers.get(tier).expect("caller checked the tier");
    let now = clock.now();
    let location = locate(t, &now.with_timezone(&config.timezone))?;
    let repo = Repository::open_at(t, &location.repository, &config.restic)
        .await?
        .with_listing_timeout(config.timeouts.listing);
    let paths: Vec<&str> = config.databases.iter().map(|d| d.path.as_str()).collect();
    let mut out = Vec::new();
    for s in repo.snapshots().await? {
        let files = if paths.is_empty() {
            vec![]
        } else {
            repo.find_files(&s, &paths).await?
        };
        let dumps = config
            .databases
            .iter()
            .map(|d| DumpListing {
                database: d.name.clone(),
                path: d.path.clone(),
                size: files
                    .iter()
                    .find(|f| f.path == d.path && f.node_type == "file")
                    .map(|f| f.size),
            })
            .collect();
        let age = (now - s.time.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
        out.push(SnapshotListing {
            id: s.id,
            short_id: s.short_id,
            time: s.time,
            age_seconds: age.max(0.0),
            hostname: s.hostname,
            tags: s.tags,
            dumps,
        });
    }
    Ok(out)
}
