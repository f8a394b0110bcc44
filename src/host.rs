//! Facts about the host drill runs on: its name and its processes. Sandbox
//! labels, the lock file and `drill reap` use them to tell whose sandbox is
//! whose.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// This host's name (`gethostname(2)`), `?` if unknown.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into())
}

/// Whether process `pid` exists on this host (`kill(pid, 0)`; a process of
/// another user, `EPERM`, exists too).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 (`None`) only checks that the process exists.
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

/// The real user id of this process (`getuid(2)`).
pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Whether this process runs as root (effective user id 0, `geteuid(2)`).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// uid and gid of the OS user `name` (`getpwnam_r(3)`, safe to call from
/// any thread), `None` when there is no such user or it cannot be looked
/// up.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_named() {
        assert!(process_alive(std::process::id()));
        assert!(!hostname().is_empty());
    }

    #[test]
    fn root_user_is_found_and_a_missing_one_is_not() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-drill-test"), None);
        assert_eq!(user_ids("nul\0inside"), None);
    }
}
