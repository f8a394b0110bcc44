//! A restore's input through a named pipe instead of the exec's attach
//! stream.
//!
//! Feeding a process in a container through `docker exec -i` sends every
//! byte from drill to the engine over its API socket, from the engine to
//! the container's shim, and from the shim into the process's standard
//! input: three copies, two of them in the engine's processes. Measured on
//! the benchmark's 936 MiB plain dump (2 CPUs, `cat` in the container): 4.1
//! CPU seconds through the attach stream against 2.0 s through a pipe, of
//! which `restic dump` alone takes 1.5 s.
//!
//! When the engine runs on this host (it is reached through a Unix socket,
//! names this host, and is not Docker Desktop's virtual machine), each
//! sandbox gets [`INPUT_DIR`] bind-mounted read-only from a directory of
//! drill's ([`InputDir::host`], under the cache directory). For an exec
//! with input, drill makes a FIFO there (mode 0666, a name of its own),
//! runs the command under `sh -c` with its standard input opened from the
//! FIFO ([`Fifo::wrap`]), opens the FIFO for writing once the process
//! has opened it for reading, unlinks it, and writes the input into it. The
//! process sees a pipe on its standard input, as it would through the
//! attach stream: EOF when drill closes its end, `EPIPE` for drill when the
//! process stops reading.
//!
//! The command cannot run before drill's end of the FIFO is open: the
//! wrapper's open for reading waits for a writer. So when drill never
//! opened its end (the container could not open the FIFO: no `sh`, a
//! security module that refuses the bind mount, the wrapper's
//! [`OPEN_FAILED_EXIT`]; or it did not open it within [`OPEN_TIMEOUT`], as
//! where the engine sees another filesystem), the command has not run and
//! no input was read: drill feeds that command, and every later one of
//! the engine connection (the run), through the attach stream
//! ([`InputDir::disable`]), with a warning. A wrapper left waiting in its
//! open holds nothing and goes with the sandbox. When the engine cannot
//! mount the directory at all, sandboxes are made without it, with a
//! warning. `DRILL_SANDBOX_INPUT=stdin` always uses the attach stream;
//! `pipe` uses the FIFO wherever the directory can be made.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::models::{Mount, MountTypeEnum};

/// `stdin` feeds processes through the exec's attach stream; `pipe`
/// through a FIFO wherever it can; unset (or anything else), a FIFO when
/// the engine runs on this host.
pub const INPUT_ENV: &str = "DRILL_SANDBOX_INPUT";
/// Where a sandbox sees drill's input directory (read-only).
pub const INPUT_DIR: &str = "/run/drill-input";
/// Exit status of the wrapper when the container could not open the FIFO
/// (the command did not run).
pub const OPEN_FAILED_EXIT: i64 = 121;

/// How long drill waits for the process to open the FIFO before it gives
/// up (the command has not run then).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The host directory whose FIFOs sandboxes read their input from.
#[derive(Debug)]
pub struct InputDir {
    /// The directory on this host (mode 0711), bind-mounted at
    /// [`INPUT_DIR`].
    pub host: PathBuf,
    disabled: AtomicBool,
    next: AtomicU64,
}

/// Why an engine's sandboxes are fed through the attach stream, or the
/// directory they read FIFOs from.
#[derive(Debug)]
pub enum InputPath {
    /// FIFOs in this directory.
    Pipe(std::sync::Arc<InputDir>),
    /// The attach stream, and why.
    Stream(String),
}

impl InputPath {
    /// Decide for an engine reached at `endpoint` that reports its
    /// operating system `os` and host name `name` (Docker's `/info`),
    /// as [`INPUT_ENV`] says.
    pub fn decide(endpoint: &str, os: &str, name: &str) -> InputPath {
        let setting = std::env::var(INPUT_ENV).unwrap_or_default();
        let setting = setting.trim();
        if setting == "stdin" {
            return InputPath::Stream(format!("{INPUT_ENV}=stdin"));
        }
        if setting != "pipe" {
            if !endpoint.starts_with("unix://") {
                return InputPath::Stream(format!(
                    "the engine is reached at {endpoint}, not through a socket of this host"
                ));
            }
            if os.contains("Docker Desktop") {
                return InputPath::Stream(format!("the engine runs in a virtual machine ({os})"));
            }
            let here = crate::host::hostname();
            if name != here {
                return InputPath::Stream(format!(
                    "the engine names its host `{name}`, not `{here}`"
                ));
            }
        }
        match InputDir::create() {
            Ok(dir) => InputPath::Pipe(std::sync::Arc::new(dir)),
            Err(e) => InputPath::Stream(format!("no input directory: {e}")),
        }
    }

    /// The directory, unless FIFOs are not used.
    pub fn dir(&self) -> Option<&std::sync::Arc<InputDir>> {
        match self {
            InputPath::Pipe(d) => Some(d),
            InputPath::Stream(_) => None,
        }
    }

    /// One line for `drill doctor`.
    pub fn describe(&self) -> String {
        match self {
            InputPath::Pipe(d) => format!(
                "restores read their input through a pipe in {} (mounted at {INPUT_DIR})",
                d.host.display()
            ),
            InputPath::Stream(why) => {
                format!("restores read their input through the exec stream: {why}")
            }
        }
    }
}

impl InputDir {
    /// `sandbox-input` in drill's cache directory, created 0711 (the
    /// sandbox's database user must reach the FIFOs in it; nobody lists
    /// them).
    fn create() -> std::io::Result<InputDir> {
        use std::os::unix::fs::PermissionsExt;
        let host = super::template::cache_dir()?.join("sandbox-input");
        std::fs::create_dir_all(&host)?;
        // Searchable, not listable: a FIFO's name is known only to the
        // sandbox it is made for.
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o711))?;
        Ok(InputDir {
            host,
            disabled: AtomicBool::new(false),
            next: AtomicU64::new(0),
        })
    }

    /// The bind mount of the directory into a sandbox.
    pub fn mount(&self) -> Mount {
        Mount {
            target: Some(INPUT_DIR.to_string()),
            source: Some(self.host.display().to_string()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            ..Default::default()
        }
    }

    /// Whether FIFOs are still used (a container that could not open one
    /// turns them off for the process).
    pub fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Feed later processes through the attach stream; `true` the first
    /// time (for a warning given once).
    pub fn disable(&self) -> bool {
        !self.disabled.swap(true, Ordering::Relaxed)
    }

    /// A new FIFO (mode 0666) for one exec, removed when dropped.
    ///
    /// # Errors
    /// When `mkfifo` or `chmod` fails.
    pub fn fifo(&self) -> std::io::Result<Fifo> {
        use std::os::unix::fs::PermissionsExt;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{n}-{}.fifo",
            std::process::id(),
            crate::secret::Secret::random().expose()[..8].to_ascii_lowercase()
        );
        let path = self.host.join(&name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?;
        let fifo = Fifo {
            path,
            inside: format!("{INPUT_DIR}/{name}"),
        };
        std::fs::set_permissions(&fifo.path, std::fs::Permissions::from_mode(0o666))?;
        Ok(fifo)
    }
}

/// One exec's FIFO: its path here and in the sandbox. The path is removed
/// when dropped (the open ends keep working).
#[derive(Debug)]
pub struct Fifo {
    path: PathBuf,
    inside: String,
}

impl Fifo {
    /// `cmd` wrapped so that its standard input is this FIFO:
    /// `sh -c 'command exec 3<"$0" || exit 121; exec "$@" <&3 3<&-' FIFO
    /// cmd…`.
    pub fn wrap(&self, cmd: &[&str]) -> Vec<String> {
        let mut wrapped = vec![
            "sh".to_string(),
            "-c".to_string(),
            // `command`: a failed redirection of the special builtin
            // `exec` would end the shell with its own status (POSIX).
            format!("command exec 3<\"$0\" || exit {OPEN_FAILED_EXIT}; exec \"$@\" <&3 3<&-"),
            self.inside.clone(),
        ];
        wrapped.extend(cmd.iter().map(|s| s.to_string()));
        wrapped
    }

    /// Open the FIFO for writing once a reader has it open, polling every
    /// few milliseconds up to [`OPEN_TIMEOUT`]; the path is then removed.
    ///
    /// # Errors
    /// The timeout, or an error other than "no reader yet" (`ENXIO`).
    pub async fn open_writer(&self) -> std::io::Result<tokio::net::unix::pipe::Sender> {
        let deadline = Instant::now() + OPEN_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&self.path) {
                Ok(sender) => {
                    let _ = std::fs::remove_file(&self.path);
                    return Ok(sender);
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    if Instant::now() >= deadline {
                        // No reader opens it after this; one already
                        // waiting in its open holds nothing (the command
                        // has not run) and goes with the sandbox.
                        let _ = std::fs::remove_file(&self.path);
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the process did not open its input within {} s",
                                OPEN_TIMEOUT.as_secs()
                            ),
                        ));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The FIFO's path on this host.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_opens_the_fifo_before_the_command_runs() {
        let f = Fifo {
            path: PathBuf::from("/nonexistent"),
            inside: "/run/drill-input/1-0-ab.fifo".into(),
        };
        let w = f.wrap(&["psql", "-X", "-d", "my db"]);
        assert_eq!(&w[..2], &["sh", "-c"]);
        assert!(
            w[2].starts_with("command exec 3<\"$0\" || exit 121;"),
            "{}",
            w[2]
        );
        assert_eq!(w[3], "/run/drill-input/1-0-ab.fifo");
        assert_eq!(&w[4..], &["psql", "-X", "-d", "my db"]);
    }

    #[tokio::test]
    async fn a_fifo_carries_its_input_and_is_removed() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let d = InputDir {
            host: dir.path().to_path_buf(),
            disabled: AtomicBool::new(false),
            next: AtomicU64::new(0),
        };
        let fifo = d.fifo().unwrap();
        let path = fifo.path().to_path_buf();
        // As the wrapper's `exec 3<FIFO`: a blocking open for reading, then
        // blocking reads, all off the test's one runtime thread (a blocking
        // read there would starve the writer).
        let reader = tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                let mut f = std::fs::File::open(path).unwrap();
                let mut got = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut got).unwrap();
                got
            }
        });
        let mut w = fifo.open_writer().await.unwrap();
        assert!(!path.exists(), "the path goes once both ends are open");
        w.write_all(b"COPY t FROM stdin;\n1\n\\.\n").await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), b"COPY t FROM stdin;\n1\n\\.\n");
        assert!(d.disable());
        assert!(!d.disable());
        assert!(!d.enabled());
    }
}
