//! Child process groups: drill starts restic and `command` checks each in a
//! process group of its own, so that stopping one stops everything it
//! started (restic's ssh, a check's helpers), whether drill stops it on
//! purpose, at a timeout, or because the work was abandoned (SIGINT).

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Kills a child's process group (SIGKILL) when dropped, unless
/// [`GroupGuard::disarm`]ed. The child must have been spawned with
/// `process_group(0)`, so that its pid is the group id.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// Guard the group led by the child with pid `pid` (`None`: the child
    /// has already been reaped; nothing to guard).
    pub fn new(pid: Option<u32>) -> Self {
        GroupGuard {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1),
        }
    }

    /// The group id.
    pub fn pgid(&self) -> Option<i32> {
        self.pgid
    }

    /// The group has been stopped another way; do nothing on drop.
    pub fn disarm(&mut self) {
        self.pgid = None;
    }

    /// SIGTERM the group, then SIGKILL it if a member is left 2 s later.
    /// Disarms the guard.
    pub async fn stop(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        let group = Pid::from_raw(pgid);
        if killpg(group, Signal::SIGTERM).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..9 {
            // No signal (`None`) only probes whether a member is left.
            if killpg(group, None).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = killpg(group, Signal::SIGKILL);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}
