//! `kind = "command"`: an external program (an application's own integrity
//! CLI, a Prisma client count …) run on the host against the sandbox.
//!
//! The program gets the database kind's client environment
//! ([`crate::kind::DatabaseKind::client_env`]): for PostgreSQL
//! `DATABASE_URL` (`postgresql://user:password@host:port/db`) and libpq's
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` (PostgreSQL docs,
//! 34.15 "Environment Variables"); for MariaDB/MySQL `DATABASE_URL`
//! (`mysql://…`), `MYSQL_HOST`, `MYSQL_TCP_PORT`, `MYSQL_PWD`, `USER`. Every
//! other inherited `PG*` and `MYSQL*` variable is removed, so a
//! `PGHOSTADDR` or `PGSERVICE` of the operator's shell cannot point it at a
//! production server. It runs in its
//! own process group, with standard input closed; exit 0 within the timeout
//! is a pass, another exit code a failure (unless the check file lists it
//! in `error_codes`), a signal, an `error_codes` code or the timeout an
//! error.
//! At the timeout the whole group gets SIGTERM, then SIGKILL 2 s later.

use crate::config::{CheckDefinition, CheckSpec};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{CheckContext, CheckError, Conclusion, Finding, Incomplete};
use crate::sandbox::OutputLog;

/// Lines of output kept from the start and from the end.
const HEAD_LINES: usize = 20;
const TAIL_LINES: usize = 20;

pub(super) async fn run(
    ctx: &CheckContext<'_>,
    argv: &[String],
    workdir: &Path,
    env: &BTreeMap<String, String>,
    error_codes: &[i32],
    timeout: Duration,
) -> Result<Conclusion, Incomplete> {
    let sb = ctx.sandbox;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    // Client variables of this host (any kind's) must not redirect the
    // program away from the sandbox.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PG") || k.starts_with("MYSQL") || k == "DATABASE_URL" {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.envs(env)
        .envs(sb.kind.client_env(&sb.endpoint(), ctx.dbname));
    let shown = argv.join(" ");
    let start_error = |e: std::io::Error| {
        Incomplete::from(CheckError::Program(format!(
            "start `{shown}` in {}: {e}",
            workdir.display()
        )))
    };
    // One pipe for standard output and standard error, so the report shows
    // the lines in the order the program wrote them.
    let (writer, mut output) = tokio::net::unix::pipe::pipe().map_err(start_error)?;
    let writer = writer.into_blocking_fd().map_err(start_error)?;
    let writer2 = writer.try_clone().map_err(start_error)?;
    cmd.stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
    let spawned = cmd.spawn();
    // Close drill's copies of the write end: end of output = the program
    // and everything it started have closed theirs.
    drop(cmd);
    let mut child = spawned.map_err(start_error)?;
    // Abandoned (drill interrupted): the whole group goes on drop.
    let mut group = crate::process::GroupGuard::new(child.id());
    let mut log = OutputLog::default();
    let waited = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 8192];
        let mut open = true;
        let mut status = None;
        // Once the program exited, what it left in its group gets 2 s to
        // close the pipe before drill stops reading.
        let drain = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(drain);
        while open || status.is_none() {
            tokio::select! {
                n = output.read(&mut buf), if open => match n {
                    Ok(0) | Err(_) => open = false,
                    Ok(n) => log.push(&buf[..n]),
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s);
                    drain.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(2));
                },
                () = &mut drain, if status.is_some() => break,
            }
        }
        status.expect("loop ends after exit")
    })
    .await;
    let status = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            group.stop().await;
            log.finish();
            return Err(Incomplete {
                error: CheckError::Program(format!("wait for `{shown}`: {e}")),
                output: log.bounded(HEAD_LINES, TAIL_LINES),
            });
        }
        Err(_) => {
            group.stop().await;
            let _ = child.wait().await;
            log.finish();
            return Err(Incomplete {
                error: CheckError::Program(format!(
                    "`{shown}` did not finish within {} (the check's timeout); its process group was killed",
                    crate::duration::human(timeout)
                )),
                output: log.bounded(HEAD_LINES, TAIL_LINES),
            });
        }
    };
    // Children it left behind in its group go too.
    group.stop().await;
    log.finish();
    let output = log.bounded(HEAD_LINES, TAIL_LINES);
    match status.code() {
        Some(0) => Ok(Conclusion {
            detail: format!("`{shown}` exited 0"),
            output,
            ..Default::default()
        }),
        Some(code) if error_codes.contains(&code) => Err(Incomplete {
            error: CheckError::Program(format!(
                "`{shown}` exited with code {code}, which its check file lists in error_codes (could not check): {}",
                log.summary(1)
            )),
            output,
        }),
        Some(code) => {
            let last = log.summary(1);
            Ok(Conclusion {
                detail: format!("`{shown}` exited with code {code}"),
                findings: vec![Finding::new(if last.is_empty() {
                    format!("`{shown}` exited with code {code}")
                } else {
                    format!("`{shown}` exited with code {code}: {last}")
                })],
                output,
                ..Default::default()
            })
        }
        None => {
            use std::os::unix::process::ExitStatusExt;
            Err(Incomplete {
                error: CheckError::Program(format!(
                    "`{shown}` was killed by signal {}",
                    status.signal().unwrap_or(0)
                )),
                output,
            })
        }
    }
}

/// The `command` check.
pub(super) struct CommandCheck;

impl super::Check for CommandCheck {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn supports(&self, _db_kind: &str) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        def: &'a CheckDefinition,
        ctx: &'a CheckContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Conclusion, super::Incomplete>> {
        Box::pin(async move {
            let CheckSpec::Command {
                argv,
                workdir,
                env,
                error_codes,
            } = &def.spec
            else {
                return Err(super::Incomplete::from(CheckError::Shape(format!(
                    "check `{}` is not of kind command",
                    def.name
                ))));
            };
            run(ctx, argv, workdir, env, error_codes, def.timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::kind::{by_name, Endpoint};

    #[test]
    fn url_is_encoded() {
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 5433,
            user: "drill_sandbox".into(),
            password: crate::secret::Secret::new("p@ss/w"),
        };
        let env = by_name("postgresql").unwrap().client_env(&ep, "my db");
        assert_eq!(
            env[0],
            (
                "DATABASE_URL".to_string(),
                "postgresql://drill_sandbox:p%40ss%2Fw@127.0.0.1:5433/my%20db".to_string()
            )
        );
        let env = by_name("mariadb").unwrap().client_env(&ep, "gym");
        assert!(env.contains(&("MYSQL_TCP_PORT".to_string(), "5433".to_string())));
        assert!(env[0]
            .1
            .starts_with("mysql://drill_sandbox:p%40ss%2Fw@127.0.0.1:5433/gym"));
    }
}
