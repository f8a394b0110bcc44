//! Command-line types and dispatch; the only place that knows exit codes.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | drill passed: every configured check passed |
//! | 1 | the backup is bad: a restore or check failed, or a policy limit was exceeded |
//! | 2 | usage or configuration error |
//! | 3 | no verdict: the environment prevented the drill |
//! | 4 | drill passed but the notification could not be delivered |

mod progress;
mod service;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config;
use crate::drill::{self, RunError, RunOptions};
use crate::report::Verdict;

/// Exit code: drill passed.
pub const EXIT_PASSED: u8 = 0;
/// Exit code: the backup is bad.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: no verdict (environment).
pub const EXIT_ENVIRONMENT: u8 = 3;
/// Exit code: the drill passed but its notification (Slack) or an output
/// asked for (`--metrics`, `--junit`) could not be delivered.
pub const EXIT_NOT_DELIVERED: u8 = 4;

/// The exit codes and environment, as `drill --help` and `drill man` end.
const AFTER_HELP: &str = "\
Exit codes:
  0  drill passed: every configured check passed
  1  the backup is bad: a restore failed because the dump or repository
     content is damaged, a check failed, or a policy limit was exceeded
  2  usage or configuration error (bad flag, bad config or check file)
  3  no verdict: the environment prevented the drill (repository unreachable
     or not mounted, wrong password, sandbox engine down, timeout)
  4  drill passed but the notification (Slack, --metrics, --junit) could
     not be delivered

Environment:
  DRILL_CONFIG  the config file when --config is not given";

/// drill proves that PostgreSQL backups in restic repositories restore.
///
/// `drill` alone means `drill run`, so `drill --tier cold` works; an
/// option of `run` before another subcommand is an error (`drill --keep
/// status`).
#[derive(Debug, Parser)]
#[command(name = "drill", version, after_help = AFTER_HELP)]
struct Cli {
    /// Config file (default: $DRILL_CONFIG, else ./drill.toml, else
    /// ~/.config/drill/drill.toml).
    #[arg(long, global = true, value_name = "PATH", env = "DRILL_CONFIG")]
    config: Option<PathBuf>,
    /// Print the machine-readable result (the JSON report) on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors and the verdict.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// `drill ledger …`.
#[derive(Debug, Subcommand)]
enum LedgerAction {
    /// Prove the hash chain intact; name the first row that is not. Exit
    /// 0: intact; 1: broken; 3: the ledger cannot be read.
    Verify,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One drill: restore a snapshot of a tier, check it, report.
    Run(RunArgs),
    /// A tier's snapshots: id, time, age, host, tags, the dumps each holds.
    Snapshots {
        /// The tier.
        #[arg(long, value_name = "T")]
        tier: String,
    },
    /// Find the last snapshot that still passes and what changed after it.
    ///
    /// Assumes corruption persists once it appears. Drills the newest
    /// snapshot, then binary-searches the history restoring only the
    /// databases and running only the checks that failed there; snapshots
    /// whose dumps are byte-identical to one already judged take its verdict
    /// without a restore. Ends with a diff between the last valid and the
    /// first invalid snapshot. Exit 0: the newest passes; 1: found, or no
    /// snapshot passes; 3: a snapshot could not be judged.
    Bisect {
        /// The tier (default: as for `run`).
        #[arg(long, value_name = "T")]
        tier: Option<String>,
        /// Bisect only this database (repeatable; default: all).
        #[arg(long = "database", value_name = "D")]
        databases: Vec<String>,
        /// Judge with only this check (repeatable; default: those that fail
        /// on the newest snapshot).
        #[arg(long = "check", value_name = "NAME")]
        checks: Vec<String>,
        /// Only snapshots taken since: RFC 3339 time, date (YYYY-MM-DD, in
        /// the config's time zone) or a duration before now (`30d`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Physical backups: bisect recovery targets between two times
        /// (RFC 3339, a date, or a duration before now) inside the newest
        /// snapshot's WAL instead of snapshots: the last target at which
        /// the checks pass.
        #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
        between: Vec<String>,
        /// The precision of `--between` (default one minute).
        #[arg(long, value_name = "DURATION", default_value = "1m")]
        resolution: humantime::Duration,
    },
    /// Give every snapshot of a tier a verdict in the ledger, verifying each
    /// content once: snapshots whose backup means the same as one already
    /// verified under the same checks inherit its verdict without a
    /// restore.
    ///
    /// Walks newest first; stops starting restores when `--budget` is spent
    /// and resumes there next time. Exit 0: every verdict recorded now
    /// passed; 1: one failed; 3: one could not be judged.
    VerifyHistory {
        /// The tier (default: as for `run`).
        #[arg(long, value_name = "T")]
        tier: Option<String>,
        /// Only snapshots taken since: RFC 3339 time, date or a duration
        /// before now (`90d`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Stop starting restores after this long (`2h`).
        #[arg(long, value_name = "DURATION")]
        budget: Option<humantime::Duration>,
        /// Only this database (repeatable; default: all).
        #[arg(long = "database", value_name = "D")]
        databases: Vec<String>,
    },
    /// Check a restic retention policy against the ledger, without
    /// removing anything (`restic forget --dry-run`).
    ///
    /// Exit 1 when the policy would remove the tier's newest snapshot that
    /// passed, or the last snapshot of a database that passed before one
    /// that failed; each is named with a `--keep-within` that keeps it.
    Retention {
        /// The tier (default: as for `run`).
        #[arg(long, value_name = "T")]
        tier: Option<String>,
        /// restic forget's policy, after `--` (`--keep-daily 7 …`); default:
        /// the tier's `retention`.
        #[arg(last = true, value_name = "POLICY")]
        policy: Vec<String>,
    },
    /// The verification ledger (`reports_dir/ledger.sqlite`).
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Compare two snapshots: per table row count, content digest and rows
    /// added/removed/changed, and the schema as a unified diff.
    ///
    /// Exit 0 when compared (whether or not they differ); 1 when a dump
    /// does not restore; 3 when the comparison could not run.
    Diff {
        /// The tier (default: as for `run`).
        #[arg(long, value_name = "T")]
        tier: Option<String>,
        /// Snapshot A (id, prefix or `latest`).
        a: String,
        /// Snapshot B.
        b: String,
        /// Compare only this database (repeatable; default: all).
        #[arg(long = "database", value_name = "D")]
        databases: Vec<String>,
    },
    /// Write some tables of a snapshot to a SQL file, for the operator to
    /// apply by hand (drill never applies it, never overwrites a file).
    Extract {
        /// The tier (default: as for `run`).
        #[arg(long, value_name = "T")]
        tier: Option<String>,
        /// Snapshot (id, prefix or `latest`).
        #[arg(long, value_name = "ID")]
        snapshot: String,
        /// The `[[databases]]` entry whose dump holds the tables.
        #[arg(long, value_name = "D")]
        database: String,
        /// A table, `schema.table` (repeatable).
        #[arg(long = "table", value_name = "TABLE", required = true)]
        tables: Vec<String>,
        /// The file to write (must not exist; written with mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Rows only (`COPY`), for tables that already exist; default:
        /// table definitions and rows, loadable into an empty database.
        #[arg(long)]
        data_only: bool,
    },
    /// Read-only preflight: config, restic, tiers, passwords, Docker, image, Slack.
    Doctor,
    /// The next drill times from the config's `schedule`, in its time zone
    /// and in UTC.
    Schedule {
        /// How many.
        #[arg(long, value_name = "N", default_value_t = 4)]
        count: usize,
    },
    /// Per tier: the last drill, the last passed drill, and how overdue the next one is.
    Status,
    /// The launchd agent (macOS) that runs `drill run` on the config's
    /// `schedule`.
    Launchd {
        #[command(subcommand)]
        action: service::LaunchdAction,
    },
    /// systemd units (Linux) that run `drill run` on the config's
    /// `schedule`.
    Systemd {
        #[command(subcommand)]
        action: service::SystemdAction,
    },
    /// Remove sandboxes left behind: those whose drill process is gone
    /// (killed runs, `--keep`). A sandbox of a drill still running is never
    /// touched.
    Reap {
        /// Only sandboxes older than this (e.g. `1h`, `2d`).
        #[arg(long, value_name = "DUR")]
        older_than: Option<humantime::Duration>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Render `history.csv` as an HTML page: RTO and snapshot age per drill
    /// over time (SVG charts with the policy limits), and every drill.
    Report {
        /// The page to write (default: `index.html` in `reports_dir`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Post a test message through the configured Slack settings.
    ///
    /// Proves `[slack]` works before a drill needs it. A bot token is first
    /// checked with Slack's `auth.test`. Exit 0: posted; 2: no `[slack]`;
    /// 3: Slack refused it or could not be reached.
    Notify {
        /// Post the test message (the only action).
        #[arg(long, required = true)]
        test: bool,
    },
    /// Print a shell completion script on stdout, e.g.
    /// `drill completions bash > /etc/bash_completion.d/drill`.
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print drill's man page (roff) on stdout, e.g.
    /// `drill man > /usr/local/share/man/man1/drill.1`.
    Man,
}

#[derive(Debug, Args, Clone)]
struct RunArgs {
    /// Tier to drill (default: the first of `fallback`, else the only tier, else `local`).
    #[arg(long, value_name = "T")]
    tier: Option<String>,
    /// Snapshot to restore: `latest` or an id (prefix).
    #[arg(long, value_name = "ID|latest", default_value = "latest")]
    snapshot: String,
    /// Tiers to try in order until one passes, e.g. `local,ring,cold`
    /// (default: the config's `fallback` when no --tier is given).
    #[arg(long, value_name = "T,…", value_delimiter = ',')]
    fallback: Vec<String>,
    /// Restore only this database (repeatable).
    #[arg(long = "database", value_name = "D")]
    databases: Vec<String>,
    /// Run only this check (repeatable).
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<String>,
    /// Keep the sandboxes after the run and print how to connect.
    #[arg(long)]
    keep: bool,
    /// Do not post the report to Slack.
    #[arg(long)]
    no_notify: bool,
    /// Also write a Prometheus textfile (node_exporter textfile collector)
    /// with every tier's last run, last success, next due time, verdict,
    /// RTO, snapshot age and bytes restored (default: `[outputs] metrics`).
    #[arg(long, value_name = "PATH")]
    metrics: Option<PathBuf>,
    /// Also write JUnit XML: a test case per restore, check, policy limit
    /// and the verdict (default: `[outputs] junit`).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Also verify up to N older snapshots that have no verdict in the
    /// ledger (at random, weighted toward the oldest), so a quarterly
    /// schedule covers the history over time. Their verdicts go to the
    /// ledger and do not change this drill's.
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
}

/// Parse `args` (the program name first): the command line, or the clap
/// error to print (help and version are such "errors" too).
///
/// # Errors
/// clap's error for a bad command line, and for an option of `drill run`
/// given before another subcommand (`drill --keep status`), which would
/// otherwise be ignored.
fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(args)?;
    if let Some((sub, _)) = matches.subcommand() {
        if let Some(e) = run_option_before(&mut cmd, &matches, sub) {
            return Err(e);
        }
    }
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// The error for the first option of `drill run` that `matches` (the top
/// level) got from the command line although subcommand `sub` is given:
/// `drill --keep status` must not quietly drop `--keep`.
fn run_option_before(
    cmd: &mut clap::Command,
    matches: &clap::ArgMatches,
    sub: &str,
) -> Option<clap::Error> {
    let run_args = RunArgs::augment_args(clap::Command::new("run"));
    let given = run_args.get_arguments().find(|a| {
        matches.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
    })?;
    let flag = format!("--{}", given.get_long().unwrap_or(given.get_id().as_str()));
    let own = cmd
        .find_subcommand(sub)
        .is_some_and(|c| c.get_arguments().any(|a| a.get_long() == given.get_long()));
    let hint = if own {
        format!("write it after the subcommand: `drill {sub} {flag} …`")
    } else {
        format!("`drill {sub}` has no {flag}; drop it, or drill with `drill run {flag} …`")
    };
    Some(cmd.error(
        clap::error::ErrorKind::ArgumentConflict,
        format!("{flag} before `{sub}` is an option of `drill run`, not of `drill {sub}`: {hint}"),
    ))
}

/// Parse the command line, run, and return the process exit code.
pub fn main() -> u8 {
    let cli = match parse(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_PASSED
                }
                _ => EXIT_USAGE,
            };
        }
    };
    match &cli.command {
        Some(Command::Completions { shell }) => return completions(*shell),
        Some(Command::Man) => return man(),
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drill: failed to start the async runtime: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    match &cli.command {
        Some(Command::Run(a)) => runtime.block_on(run(&cli, a.clone())),
        Some(Command::Snapshots { tier }) => runtime.block_on(snapshots(&cli, tier)),
        Some(Command::Doctor) => runtime.block_on(doctor(&cli)),
        Some(
            Command::Bisect { .. }
            | Command::Diff { .. }
            | Command::Extract { .. }
            | Command::VerifyHistory { .. },
        ) => runtime.block_on(investigate(&cli)),
        Some(Command::Ledger { action }) => ledger(&cli, action),
        Some(Command::Retention { tier, policy }) => {
            runtime.block_on(retention(&cli, tier.as_deref(), policy))
        }
        Some(Command::Status) => status(&cli),
        Some(Command::Schedule { count }) => schedule(&cli, *count),
        Some(Command::Launchd { action }) => service::launchd(&cli, action),
        Some(Command::Systemd { action }) => service::systemd(&cli, action),
        Some(Command::Reap {
            older_than,
            dry_run,
        }) => runtime.block_on(reap(&cli, older_than.map(Into::into), *dry_run)),
        Some(Command::Report { out }) => service::history_page(&cli, out.as_deref()),
        Some(Command::Notify { .. }) => runtime.block_on(service::notify_test(&cli)),
        Some(Command::Completions { .. } | Command::Man) => unreachable!("handled above"),
        None => runtime.block_on(run(&cli, cli.run.clone())),
    }
}

/// `drill completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "drill", &mut out);
    write_stdout(&out)
}

/// `drill man`: the man page (roff, section 1) on stdout.
fn man() -> u8 {
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut out) {
        eprintln!("drill: failed to render the man page: {e}");
        return EXIT_ENVIRONMENT;
    }
    write_stdout(&out)
}

/// Write `bytes` to standard output; exit 3 when it is closed or full.
fn write_stdout(bytes: &[u8]) -> u8 {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => EXIT_PASSED,
        Err(e) => {
            eprintln!("drill: failed to write to standard output: {e}");
            EXIT_ENVIRONMENT
        }
    }
}

async fn run(cli: &Cli, args: RunArgs) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = clock.as_ref();
    let opts = RunOptions {
        run_id: drill::new_run_id(clock),
        tier: args.tier.clone(),
        fallback: args.fallback.clone(),
        snapshot: args.snapshot.clone(),
        databases: args.databases.clone(),
        checks: args.checks.clone(),
        keep: args.keep,
    };
    let _lock = match take_lock(&config, &opts.run_id).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let sink = progress::Terminal::new(cli.quiet, cli.verbose, config.timezone);
    let outcome = match guarded(&opts.run_id, true, drill::run(&config, &opts, clock, &sink)).await
    {
        Ok(o) => o,
        Err(code) => return code,
    };
    match outcome {
        Ok(o) => {
            if cli.json {
                print_json(&o.report);
            }
            progress::summary(&o, cli.quiet);
            if let Some(n) = args.sample.filter(|n| *n > 0) {
                let drilled = o.report.snapshot.as_ref().map(|s| s.id.clone());
                match drill::verify_history::sample(
                    &config,
                    &opts.run_id,
                    &o.report.tier,
                    n,
                    drilled.as_deref(),
                    clock,
                    &sink,
                )
                .await
                {
                    Ok(Some(rec)) => eprintln!("sample: {}", rec.summary()),
                    Ok(None) => eprintln!("sample: every snapshot has a verdict"),
                    Err(e) => eprintln!("drill: sample: {e}"),
                }
            }
            let code = match o.verdict {
                Verdict::Passed => EXIT_PASSED,
                Verdict::Failed => EXIT_FAILED,
                Verdict::Error => EXIT_ENVIRONMENT,
            };
            let delivered = service::deliver(cli, &config, &args, &o).await;
            if code == EXIT_PASSED && !delivered {
                EXIT_NOT_DELIVERED
            } else {
                code
            }
        }
        Err(RunError::Usage(m)) => {
            eprintln!("drill: {m}");
            EXIT_USAGE
        }
        Err(e @ RunError::Report(_)) => {
            eprintln!("drill: failed to {e}; no verdict recorded");
            EXIT_ENVIRONMENT
        }
    }
}

/// If the run that held `lock` before was killed, remove its sandboxes
/// (only those) and say so.
async fn reap_killed(lock: &drill::DrillLock) {
    let Some(h) = lock.stale() else { return };
    match drill::sweep(&h.run_id).await {
        Ok(ids) => eprintln!(
            "drill: the previous run ({h}) did not end cleanly; removed its {} sandbox(es)",
            ids.len()
        ),
        Err(e) => eprintln!(
            "drill: the previous run ({h}) did not end cleanly, and its sandboxes could not be removed: {e}; run `drill reap` once the engine is back"
        ),
    }
}

/// Take the config's lock for `run_id` (exit 3 when another drill holds
/// it), then remove what a killed earlier run left ([`reap_killed`]).
async fn take_lock(config: &config::Config, run_id: &str) -> Result<drill::DrillLock, u8> {
    match drill::DrillLock::acquire(&config.reports_dir, run_id, &config.path) {
        Ok(lock) => {
            reap_killed(&lock).await;
            Ok(lock)
        }
        Err(e) => {
            eprintln!("drill: {e}");
            Err(EXIT_ENVIRONMENT)
        }
    }
}

/// How long an interrupted drill gets to stop its work, remove its
/// sandboxes and write its report before drill gives up on it.
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Run `work`, which starts sandboxes labelled `run_id`. If it panics,
/// remove the run's sandboxes and return the exit code (no verdict).
///
/// On SIGINT or SIGTERM: a `cooperative` work (`drill run`) is told through
/// [`crate::interrupt`] and given [`INTERRUPT_GRACE`] to stop, clean up and
/// write its report (verdict `error`), then returns as usual; a second
/// signal, the end of the grace, or work that is not cooperative: remove the
/// run's sandboxes here and return exit 3.
async fn guarded<T>(
    run_id: &str,
    cooperative: bool,
    work: impl std::future::Future<Output = T>,
) -> Result<T, u8> {
    // Boxed, so that dropping it below really ends it (and its children).
    let mut work = Box::pin(futures_util::FutureExt::catch_unwind(
        std::panic::AssertUnwindSafe(work),
    ));
    let panicked = || async {
        eprintln!("drill: internal error (panic); removing this run's sandboxes; no verdict");
        let _ = drill::sweep(run_id).await;
        Err(EXIT_ENVIRONMENT)
    };
    let signal = tokio::select! {
        r = &mut work => return match r {
            Ok(v) => Ok(v),
            Err(_) => panicked().await,
        },
        signal = shutdown_signal() => signal,
    };
    if cooperative {
        crate::interrupt::raise(signal);
        eprintln!(
            "drill: interrupted by {signal}; stopping, removing this run's sandboxes and writing the report (send it again to stop at once)"
        );
        tokio::select! {
            r = &mut work => return match r {
                Ok(v) => Ok(v),
                Err(_) => panicked().await,
            },
            again = shutdown_signal() => eprintln!("drill: {again} again; stopping at once"),
            () = tokio::time::sleep(INTERRUPT_GRACE) => eprintln!(
                "drill: the interrupted drill did not stop within {}; stopping at once",
                crate::duration::human(INTERRUPT_GRACE)
            ),
        }
    } else {
        eprintln!("drill: interrupted by {signal}; removing this run's sandboxes");
    }
    // Dropping the work stops its child processes; a create request in
    // flight when the signal came may land after the first sweep: sweep
    // again a moment later.
    drop(work);
    let mut removed = 0;
    for pause in [0, 1500] {
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        match drill::sweep(run_id).await {
            Ok(ids) => removed += ids.len(),
            Err(e) => eprintln!("drill: could not remove the sandboxes of run {run_id}: {e}"),
        }
    }
    eprintln!("drill: removed {removed} sandbox(es) of run {run_id}");
    Err(EXIT_ENVIRONMENT)
}

/// `drill bisect`, `drill diff`, `drill extract`: they restore snapshots
/// into sandboxes like a drill, under the same lock.
async fn investigate(cli: &Cli) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = clock.as_ref();
    let run_id = drill::new_run_id(clock);
    let tier_of = |t: &Option<String>| -> Result<String, String> {
        match t {
            Some(t) => config.tier(t).map(|_| t.clone()),
            None => config
                .default_tier()
                .map(str::to_string)
                .ok_or_else(|| "no tier given and no default: pass --tier NAME".to_string()),
        }
    };
    let tier = match &cli.command {
        Some(
            Command::Bisect { tier, .. }
            | Command::Diff { tier, .. }
            | Command::Extract { tier, .. }
            | Command::VerifyHistory { tier, .. },
        ) => tier_of(tier),
        _ => unreachable!("investigate is called for bisect, diff and extract"),
    };
    let tier = match tier {
        Ok(t) => t,
        Err(e) => {
            eprintln!("drill: {e}");
            return EXIT_USAGE;
        }
    };
    let _lock = match take_lock(&config, &run_id).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let sink = progress::Terminal::new(cli.quiet, cli.verbose, config.timezone);
    match &cli.command {
        Some(Command::Bisect {
            databases,
            checks,
            since,
            between,
            resolution,
            ..
        }) => {
            let between = match between
                .iter()
                .map(|s| drill::bisect::parse_since(s, clock.now(), config.timezone))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(v) => v.first().copied().zip(v.get(1).copied()),
                Err(e) => {
                    eprintln!("drill: {}", e.replace("--since", "--between"));
                    return EXIT_USAGE;
                }
            };
            let since = match since
                .as_deref()
                .map(|s| drill::bisect::parse_since(s, clock.now(), config.timezone))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("drill: {e}");
                    return EXIT_USAGE;
                }
            };
            let opts = drill::bisect::BisectOptions {
                run_id: run_id.clone(),
                tier,
                databases: databases.clone(),
                checks: checks.clone(),
                since,
                between,
                resolution: (*resolution).into(),
            };
            conclude(
                cli,
                guarded(
                    &run_id,
                    false,
                    drill::bisect::run(&config, &opts, clock, &sink),
                )
                .await,
                |rec| progress::bisect_summary(rec, &config.reports_dir),
                |rec| match rec.verdict {
                    Verdict::Passed => EXIT_PASSED,
                    Verdict::Failed => EXIT_FAILED,
                    Verdict::Error => EXIT_ENVIRONMENT,
                },
            )
        }
        Some(Command::VerifyHistory {
            since,
            budget,
            databases,
            ..
        }) => {
            let since = match since
                .as_deref()
                .map(|s| drill::bisect::parse_since(s, clock.now(), config.timezone))
                .transpose()
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("drill: {e}");
                    return EXIT_USAGE;
                }
            };
            let opts = drill::verify_history::VerifyOptions {
                run_id: run_id.clone(),
                tier,
                since,
                budget: budget.map(Into::into),
                databases: databases.clone(),
                only: None,
            };
            conclude(
                cli,
                guarded(
                    &run_id,
                    false,
                    drill::verify_history::run(&config, &opts, clock, &sink),
                )
                .await,
                |rec| {
                    println!("verify-history: {}", rec.summary());
                    for i in &rec.items {
                        println!(
                            "  {}  {}  {:<12} {:<10} {}{}",
                            i.snapshot,
                            i.time.to_rfc3339(),
                            i.database,
                            format!("{:?}", i.outcome).to_lowercase(),
                            i.verdict.map_or("-", |v| v.as_str()),
                            i.inherited_from
                                .as_deref()
                                .map(|s| format!(" (from {s})"))
                                .unwrap_or_default()
                        );
                    }
                },
                |rec| match rec.verdict {
                    Verdict::Passed => EXIT_PASSED,
                    Verdict::Failed => EXIT_FAILED,
                    Verdict::Error => EXIT_ENVIRONMENT,
                },
            )
        }
        Some(Command::Diff {
            a, b, databases, ..
        }) => {
            let opts = drill::diff::DiffOptions {
                run_id: run_id.clone(),
                tier,
                a: a.clone(),
                b: b.clone(),
                databases: databases.clone(),
            };
            conclude(
                cli,
                guarded(
                    &run_id,
                    false,
                    drill::diff::run(&config, &opts, clock, &sink),
                )
                .await,
                progress::diff_summary,
                |rec| match rec.status() {
                    crate::report::Status::Passed => EXIT_PASSED,
                    crate::report::Status::Failed => EXIT_FAILED,
                    _ => EXIT_ENVIRONMENT,
                },
            )
        }
        Some(Command::Extract {
            snapshot,
            database,
            tables,
            out,
            data_only,
            ..
        }) => {
            let opts = drill::extract::ExtractOptions {
                run_id: run_id.clone(),
                tier,
                snapshot: snapshot.clone(),
                database: database.clone(),
                tables: tables.clone(),
                out: out.clone(),
                data_only: *data_only,
            };
            conclude(
                cli,
                guarded(
                    &run_id,
                    false,
                    drill::extract::run(&config, &opts, clock, &sink),
                )
                .await,
                progress::extract_summary,
                |_| EXIT_PASSED,
            )
        }
        _ => unreachable!("investigate is called for bisect, diff and extract"),
    }
}

/// The end of `bisect`, `diff` or `extract`: print the record (JSON with
/// `--json`, else `human`) and return its exit code, or say why there is
/// none.
fn conclude<T: serde::Serialize>(
    cli: &Cli,
    result: Result<Result<T, drill::diff::CommandError>, u8>,
    human: impl FnOnce(&T),
    code: impl FnOnce(&T) -> u8,
) -> u8 {
    use drill::diff::CommandError;
    match result {
        Err(code) => code,
        Ok(Err(e)) => {
            eprintln!("drill: {e}");
            match e {
                CommandError::Usage(_) => EXIT_USAGE,
                CommandError::Backup(_) => EXIT_FAILED,
                CommandError::Tier(_) | CommandError::Environment(_) | CommandError::Report(_) => {
                    EXIT_ENVIRONMENT
                }
            }
        }
        Ok(Ok(rec)) => {
            if cli.json {
                print_json(&rec);
            } else {
                human(&rec);
            }
            code(&rec)
        }
    }
}

/// `drill retention`.
async fn retention(cli: &Cli, tier: Option<&str>, policy: &[String]) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let clock = clock.as_ref();
    let tier = match tier {
        Some(t) => match config.tier(t) {
            Ok(_) => t.to_string(),
            Err(e) => {
                eprintln!("drill: {e}");
                return EXIT_USAGE;
            }
        },
        None => match config.default_tier() {
            Some(t) => t.to_string(),
            None => {
                eprintln!("drill: no tier given and no default: pass --tier NAME");
                return EXIT_USAGE;
            }
        },
    };
    let run_id = drill::new_run_id(clock);
    let _lock = match take_lock(&config, &run_id).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let sink = progress::Terminal::new(cli.quiet, cli.verbose, config.timezone);
    let opts = drill::retention::RetentionOptions {
        tier,
        policy: policy.to_vec(),
    };
    conclude(
        cli,
        Ok(drill::retention::run(&config, &opts, clock, &sink).await),
        |rec| {
            println!(
                "retention on tier {}: the policy keeps {} snapshot(s) and would remove {}",
                rec.tier,
                rec.kept,
                rec.would_remove.len()
            );
            for e in &rec.endangered {
                println!(
                    "  UNSAFE: it would remove {} of {}: {}; {} keeps it",
                    e.short_id,
                    e.time.to_rfc3339(),
                    e.why,
                    e.keep_with
                );
            }
            for w in &rec.warnings {
                println!("  warning: {w}");
            }
            if rec.endangered.is_empty() {
                println!("  safe: nothing the ledger needs would go");
            }
        },
        |rec| {
            if rec.endangered.is_empty() {
                EXIT_PASSED
            } else {
                EXIT_FAILED
            }
        },
    )
}

/// `drill ledger verify`.
fn ledger(cli: &Cli, action: &LedgerAction) -> u8 {
    let (config, _clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match action {
        LedgerAction::Verify => {
            let path = config.reports_dir.join(crate::ledger::FILE);
            if !path.exists() {
                eprintln!(
                    "drill: no ledger at {}: nothing has been verified yet",
                    path.display()
                );
                return EXIT_ENVIRONMENT;
            }
            let check = crate::ledger::Ledger::open(&config.reports_dir).and_then(|l| l.verify());
            match check {
                Err(e) => {
                    eprintln!("drill: {e}");
                    EXIT_ENVIRONMENT
                }
                Ok(c) => {
                    if cli.json {
                        print_json(&c);
                    }
                    match &c.broken {
                        None => {
                            if !cli.json {
                                println!(
                                    "ledger {}: {} row(s), chain intact",
                                    path.display(),
                                    c.rows
                                );
                            }
                            EXIT_PASSED
                        }
                        Some((seq, why)) => {
                            eprintln!(
                                "drill: ledger {}: the chain breaks at row {seq} of {}: {why}",
                                path.display(),
                                c.rows
                            );
                            EXIT_FAILED
                        }
                    }
                }
            }
        }
    }
}

/// `value` as pretty JSON on standard output.
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializes")
    );
}

/// The configuration and the clock (`DRILL_NOW`), or the exit code after
/// saying why not.
fn load(cli: &Cli) -> Result<(config::Config, Box<dyn crate::clock::Clock>), u8> {
    let config = config::discover(cli.config.as_deref())
        .and_then(|c| crate::checks::validate(&c).map(|()| c))
        .map_err(|e| {
            eprintln!("drill: failed to load the configuration: {e}");
            EXIT_USAGE
        })?;
    let clock = crate::clock::from_env().map_err(|e| {
        eprintln!("drill: {e}");
        EXIT_USAGE
    })?;
    Ok((config, clock))
}

/// One upcoming drill time.
#[derive(serde::Serialize)]
struct Upcoming {
    /// In the configured time zone (RFC 3339).
    local: String,
    /// In UTC (RFC 3339).
    utc: String,
}

fn schedule(cli: &Cli, count: usize) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let s = match service::schedule_of(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let times = s.upcoming(clock.now(), config.timezone, count);
    for w in s.warnings() {
        eprintln!("drill: warning: schedule: {w}");
    }
    if cli.json {
        let list: Vec<Upcoming> = times
            .iter()
            .map(|t| Upcoming {
                local: t.to_rfc3339(),
                utc: t.with_timezone(&chrono::Utc).to_rfc3339(),
            })
            .collect();
        print_json(&list);
    } else {
        println!("schedule `{}` in {}:", s.expression(), config.timezone);
        for t in &times {
            println!(
                "  {}   ({})",
                t.format("%Y-%m-%d %H:%M %Z (%a)"),
                t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M UTC")
            );
        }
        if times.is_empty() {
            println!("  (no future time matches)");
        }
    }
    EXIT_PASSED
}

async fn reap(cli: &Cli, older_than: Option<std::time::Duration>, dry_run: bool) -> u8 {
    use crate::drill::reap::Fate;
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let run_id = drill::new_run_id(clock.as_ref());
    // Holding the lock clears a killed run's line from it; a drill running
    // now keeps its sandboxes either way (its process is alive).
    let lock = drill::DrillLock::acquire(&config.reports_dir, &run_id, &config.path).ok();
    let list = match drill::reap::reap(&config.sandbox, older_than, dry_run, clock.now()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("drill: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    drop(lock);
    if cli.json {
        print_json(&list);
        return if list.iter().any(|r| r.fate == Fate::NotRemoved) {
            EXIT_ENVIRONMENT
        } else {
            EXIT_PASSED
        };
    }
    for r in &list {
        let what = match (r.fate, dry_run) {
            (Fate::Removed, false) => "removed",
            (Fate::Removed, true) => "would remove",
            (Fate::InUse, _) => "kept (its drill is running)",
            (Fate::OtherHost, _) => "kept (started from another host)",
            (Fate::TooYoung, _) => "kept (younger than --older-than)",
            (Fate::NotRemoved, _) => "NOT removed (the engine still lists it)",
        };
        println!(
            "{what}: {} (run {}, tier {}, database {}, {}, {} old)",
            r.sandbox.name,
            r.sandbox.run_id,
            r.sandbox.tier,
            r.sandbox.database,
            r.sandbox.state,
            crate::duration::human_seconds(r.age_seconds as f64)
        );
    }
    let n = list.iter().filter(|r| r.fate == Fate::Removed).count();
    let failed = list.iter().filter(|r| r.fate == Fate::NotRemoved).count();
    println!(
        "{} {n} sandbox(es); {} kept",
        if dry_run { "would remove" } else { "removed" },
        list.len() - n - failed
    );
    if failed > 0 {
        eprintln!("drill: {failed} sandbox(es) could not be removed; see above");
        return EXIT_ENVIRONMENT;
    }
    EXIT_PASSED
}

fn status(cli: &Cli) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match drill::status::run(&config, clock.as_ref()) {
        Ok(list) => {
            if cli.json {
                print_json(&list);
            } else {
                progress::status_lines(&list, config.timezone, config.schedule.is_some());
            }
            EXIT_PASSED
        }
        Err(e) => {
            eprintln!("drill: {e}");
            EXIT_ENVIRONMENT
        }
    }
}

async fn doctor(cli: &Cli) -> u8 {
    use crate::drill::doctor::Health;
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => {
            eprintln!("FAIL config: fix the file named above");
            return code;
        }
    };
    let items = drill::doctor::run(&config, clock.as_ref()).await;
    if cli.json {
        print_json(&items);
    } else {
        for i in &items {
            let tag = match i.health {
                Health::Ok => "ok  ",
                Health::Warn => "warn",
                Health::Fail => "FAIL",
            };
            println!("{tag} {}: {}", i.item, i.detail);
            if let Some(f) = &i.fix {
                println!("     fix: {f}");
            }
        }
    }
    if items.iter().any(|i| i.health == Health::Fail) {
        EXIT_ENVIRONMENT
    } else {
        EXIT_PASSED
    }
}

async fn snapshots(cli: &Cli, tier: &str) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Err(e) = config.tier(tier) {
        eprintln!("drill: {e}");
        return EXIT_USAGE;
    }
    match drill::snapshots::list(&config, tier, clock.as_ref()).await {
        Ok(list) => {
            if cli.json {
                print_json(&list);
            } else {
                progress::snapshot_table(&list, config.timezone);
            }
            EXIT_PASSED
        }
        Err(e) if e.is_usage() => {
            eprintln!("drill: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("drill: {e}");
            EXIT_ENVIRONMENT
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
