//! One drill at a time per config: an exclusive `flock(2)` on
//! `<reports_dir>/drill.lock`, held for the whole run and released by the
//! kernel when the process ends, however it ends. The file holds who took
//! it (pid, host, run id, start time, config), so a second drill can say
//! who is in the way.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DrillLock {
    file: std::fs::File,
    path: PathBuf,
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
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a file descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    path,
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            return Err(io(err));
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let who = format!(
            "pid {} on host {}, run {run_id}, started {}, config {}",
            std::process::id(),
            if host.is_empty() { "?" } else { &host },
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            config.display()
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(who.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DrillLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DrillLock {
    fn drop(&mut self) {
        // The holder's line goes; the kernel drops the lock with the file.
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
        DrillLock::acquire(d.path(), "run-c", Path::new("/etc/drill.toml")).unwrap();
    }
}
