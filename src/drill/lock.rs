//! One drill at a time per config: an exclusive `flock(2)` on
//! `<reports_dir>/drill.lock`, held for the whole run and released by the
//! kernel when the process ends, however it ends. The file holds who took
//! it (pid, host, run id, start time, config, as one JSON line), so a second
//! drill can say who is in the way. It is emptied when a run ends normally:
//! a holder line found by the next run that gets the lock is the state of a
//! run that was killed (SIGKILL, power loss) before it could clean up, and
//! names the run whose sandboxes are to be reaped.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DrillLock {
    file: Flock<std::fs::File>,
    path: PathBuf,
    stale: Option<Holder>,
}

/// Who holds (or held) the lock: the JSON line in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// The run id its sandboxes are labelled with.
    pub run_id: String,
    /// When it took the lock (RFC 3339, UTC).
    pub started_at: String,
    /// Its config file.
    pub config: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {}, run {}, started {}, config {}",
            self.pid, self.host, self.run_id, self.started_at, self.config
        )
    }
}

fn describe(text: &str) -> String {
    match serde_json::from_str::<Holder>(text) {
        Ok(h) => h.to_string(),
        Err(_) => text.to_string(),
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another drill holds it.
    #[error("another drill of this config is running ({holder}); lock file {}: wait for it to finish, or stop it", path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into it.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("take the lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl DrillLock {
    /// Take the lock in `reports_dir` (created if missing) for `run_id`.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder; [`LockError::Io`].
    pub fn acquire(reports_dir: &Path, run_id: &str, config: &Path) -> Result<Self, LockError> {
        let path = reports_dir.join("drill.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(reports_dir).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(f) => f,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    path,
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        describe(holder)
                    },
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        // What a run that did not end normally left behind.
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let stale = serde_json::from_str::<Holder>(previous.trim()).ok();
        let who = serde_json::to_string(&Holder {
            pid: std::process::id(),
            host: crate::host::hostname(),
            run_id: run_id.to_string(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            config: config.display().to_string(),
        })
        .expect("serializes");
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(who.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DrillLock { file, path, stale })
    }

    /// The run that held this lock before and ended without releasing it
    /// cleanly (killed): its sandboxes may still exist.
    pub fn stale(&self) -> Option<&Holder> {
        self.stale.as_ref()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DrillLock {
    fn drop(&mut self) {
        // The holder's line goes; the lock goes with the file (`Flock`
        // unlocks on drop, and the kernel at the latest when the process
        // ends).
        let _ = self.file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_who_holds_it() {
        let d = tempfile::tempdir().unwrap();
        let first = DrillLock::acquire(d.path(), "run-a", Path::new("/etc/drill.toml")).unwrap();
        let e = DrillLock::acquire(d.path(), "run-b", Path::new("/etc/drill.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("run run-a") && msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let third = DrillLock::acquire(d.path(), "run-c", Path::new("/etc/drill.toml")).unwrap();
        assert_eq!(third.stale(), None, "run-a ended cleanly");
        // A holder line left in the file (a killed run) is found by the next.
        let d2 = tempfile::tempdir().unwrap();
        let killed = DrillLock::acquire(d2.path(), "run-k", Path::new("/c")).unwrap();
        let text = std::fs::read_to_string(killed.path()).unwrap();
        drop(killed);
        std::fs::write(d2.path().join("drill.lock"), text).unwrap();
        let next = DrillLock::acquire(d2.path(), "run-n", Path::new("/c")).unwrap();
        assert_eq!(next.stale().map(|h| h.run_id.as_str()), Some("run-k"));
    }
}
