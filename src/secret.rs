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
}
