//! SIGINT and SIGTERM as a value the drill watches. The CLI's signal
//! handler calls [`raise`]; a drill in progress sees it through [`wait`],
//! abandons its work (dropping the work stops restic and check processes,
//! see [`crate::process`]), removes its sandboxes and writes a report whose
//! verdict is `error`, naming the phase interrupted.

use std::sync::OnceLock;

use tokio::sync::watch;

fn state() -> &'static watch::Sender<Option<&'static str>> {
    static STATE: OnceLock<watch::Sender<Option<&'static str>>> = OnceLock::new();
    STATE.get_or_init(|| watch::channel(None).0)
}

/// Record that `signal` (`SIGINT`, `SIGTERM`) arrived. The first one wins.
pub fn raise(signal: &'static str) {
    state().send_if_modified(|s| {
        if s.is_none() {
            *s = Some(signal);
            true
        } else {
            false
        }
    });
}

/// The signal that arrived, if any.
pub fn raised() -> Option<&'static str> {
    *state().borrow()
}

/// Wait until a signal arrives; returns its name.
pub async fn wait() -> &'static str {
    let mut rx = state().subscribe();
    loop {
        if let Some(s) = *rx.borrow_and_update() {
            return s;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
