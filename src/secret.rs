//! Secrets (passwords, tokens) and their redaction.
//!
//! A [`Secret`] prints as `***` in `Debug` and `Display`, so it cannot reach a
//! log or report by accident; [`Secret::expose`] is the one way to read it,
//! used only where the value is handed to a child's environment or a
//! connection.

use std::fmt;

/// A password or token. Formatting never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// A random password of 32 alphanumeric characters (~190 bits), for a
    /// sandbox superuser.
    pub fn random() -> Self {
        use rand::distr::{Alphanumeric, SampleString};
        Secret(Alphanumeric.sample_string(&mut rand::rng(), 32))
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of this secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A repository location or URL with the password of any `user:password@`
/// part replaced by `***` (e.g. `rest:https://u:p@host/` →
/// `rest:https://u:***@host/`).
pub fn redact_url(location: &str) -> String {
    let Some(scheme_end) = location.find("://") else {
        return location.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &location[rest_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return location.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &location[..rest_start],
            &userinfo[..colon],
            &location[rest_start + at..]
        ),
        None => location.to_string(),
    }
}

/// Where a token or URL that must not sit in a config file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A shell command (`sh -c`) whose first line of output is the secret,
    /// e.g. `security find-generic-password -w -s NAME`.
    Command(String),
    /// A file whose first line is the secret. It must not be readable by
    /// group or others (mode 0600 or stricter).
    File(std::path::PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl SecretSource {
    /// How the source is named in messages: `command`, `file PATH`,
    /// `environment variable NAME` (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Command(_) => "command".into(),
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
        }
    }

    /// Read the secret: the first line, surrounding whitespace removed.
    ///
    /// # Errors
    /// A message naming the source: the command failed or printed nothing,
    /// the file is missing, unreadable or open to group/others, the variable
    /// is unset or empty.
    pub async fn read(&self) -> Result<Secret, String> {
        let text = match self {
            SecretSource::Command(c) => {
                let out = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(c)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|e| format!("could not run the command: {e}"))?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(format!(
                        "the command exited with {}: {}",
                        out.status,
                        err.lines().next().unwrap_or("").trim()
                    ));
                }
                String::from_utf8(out.stdout)
                    .map_err(|_| "the command printed bytes that are not UTF-8".to_string())?
            }
            SecretSource::File(p) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by group or others (mode {:o}); run `chmod 600 {}`",
                        p.display(),
                        meta.permissions().mode() & 0o777,
                        p.display()
                    ));
                }
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?
            }
            SecretSource::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))?
            }
        };
        let value = text.lines().next().unwrap_or("").trim().to_string();
        if value.is_empty() {
            return Err(format!("{} gave an empty value", self.describe()));
        }
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.redact("pw=hunter2;"), "pw=***;");
        assert_eq!(Secret::random().expose().len(), 32);
        assert_ne!(Secret::random(), Secret::random());
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("rest:https://u:p4ss@host:8000/repo"),
            "rest:https://u:***@host:8000/repo"
        );
        assert_eq!(redact_url("sftp:user@host:/path"), "sftp:user@host:/path");
        assert_eq!(
            redact_url("/Volumes/axe-cold-1/restic-repo"),
            "/Volumes/axe-cold-1/restic-repo"
        );
        assert_eq!(
            redact_url("s3:https://host/bucket"),
            "s3:https://host/bucket"
        );
    }

    #[tokio::test]
    async fn secret_sources_read_first_line_and_refuse_open_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("token");
        std::fs::write(&f, "xoxb-1\nignored\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretSource::File(f.clone()).read().await.unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            SecretSource::File(f).read().await.unwrap().expose(),
            "xoxb-1"
        );
        let c = SecretSource::Command("printf ' tok \\n'".into());
        assert_eq!(c.read().await.unwrap().expose(), "tok");
        let e = SecretSource::Command("exit 3".into())
            .read()
            .await
            .unwrap_err();
        assert!(e.contains("exited"), "{e}");
        let e = SecretSource::Env("DRILL_TEST_SURELY_UNSET".into())
            .read()
            .await
            .unwrap_err();
        assert!(e.contains("DRILL_TEST_SURELY_UNSET is not set"), "{e}");
    }
}
