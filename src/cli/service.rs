//! What surrounds a drill: Slack, metrics and JUnit after a run; the
//! launchd agent and systemd units that schedule it; the history page.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::{load, Cli, RunArgs, EXIT_ENVIRONMENT, EXIT_PASSED, EXIT_USAGE};
use crate::config::Config;
use crate::drill::RunOutcome;
use crate::report;
use crate::schedule::{launchd, systemd, Schedule};

/// `drill launchd …`
#[derive(Debug, Subcommand)]
pub(super) enum LaunchdAction {
    /// Print the LaunchAgent plist.
    Print(AgentArgs),
    /// Write the plist to ~/Library/LaunchAgents and load it with launchctl
    /// (when present). launchd reads the times in the host's zone: they are
    /// converted when it differs from the config's `timezone` by a fixed
    /// amount; refused when daylight saving would move them.
    Install(AgentArgs),
    /// Unload the agent (launchctl bootout) and remove its plist.
    Uninstall {
        /// The agent's label.
        #[arg(long, default_value = DEFAULT_LABEL)]
        label: String,
    },
}

const DEFAULT_LABEL: &str = "dev.drill.run";

/// What a scheduled job runs: `PROGRAM --config CONFIG run [--tier T]`.
#[derive(Debug, Args)]
pub(super) struct JobArgs {
    /// The drill binary the job runs (default: this one).
    #[arg(long, value_name = "PATH")]
    program: Option<PathBuf>,
    /// The config the job reads (default: the one loaded now, absolute).
    #[arg(long, value_name = "PATH")]
    config_path: Option<PathBuf>,
    /// Drill only this tier (default: the config's fallback list).
    #[arg(long, value_name = "T")]
    tier: Option<String>,
}

impl JobArgs {
    /// `(program, config, tier)`, paths absolute; the tier checked against
    /// `config`.
    fn resolve(&self, config: &Config) -> Result<(PathBuf, PathBuf, Option<String>), u8> {
        if let Some(t) = &self.tier {
            if let Err(e) = config.tier(t) {
                eprintln!("drill: {e}");
                return Err(EXIT_USAGE);
            }
        }
        let program = self
            .program
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .map(|p| absolute(&p))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/drill"));
        let config_path = absolute(self.config_path.as_deref().unwrap_or(&config.path));
        Ok((program, config_path, self.tier.clone()))
    }
}

/// The launchd agent's options.
#[derive(Debug, Args)]
pub(super) struct AgentArgs {
    /// The agent's label (also the plist's file name).
    #[arg(long, default_value = DEFAULT_LABEL)]
    label: String,
    #[command(flatten)]
    job: JobArgs,
    /// Where the job's stdout and stderr go (default: ~/Library/Logs/drill).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
}

/// `drill systemd …`
#[derive(Debug, Subcommand)]
pub(super) enum SystemdAction {
    /// Print the service and timer units (each under a `# file:` line).
    Print {
        /// Unit name (`NAME.service`, `NAME.timer`).
        #[arg(long, default_value = "drill")]
        name: String,
        #[command(flatten)]
        job: JobArgs,
        /// Print only this unit.
        #[arg(long, value_enum)]
        unit: Option<UnitKind>,
    },
}

/// One of the two systemd units.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum UnitKind {
    /// `NAME.service`
    Service,
    /// `NAME.timer`
    Timer,
}

/// `p` made absolute against the working directory and normalised (no `.`
/// or `..`; launchd and systemd take neither): an existing file's
/// directory is resolved on disk, so a `..` after a symbolic link means what
/// it meant to the shell; the file itself stays as named, so a link such as
/// Homebrew's `bin/drill` survives upgrades.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    if let (Some(dir), Some(name)) = (joined.parent(), joined.file_name()) {
        if let Ok(dir) = dir.canonicalize() {
            return dir.join(name);
        }
    }
    // Not on disk (yet): lexically.
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The config's schedule, or exit 2 saying what to add.
pub(super) fn schedule_of(config: &Config) -> Result<&Schedule, u8> {
    config.schedule.as_ref().ok_or_else(|| {
        eprintln!(
            "drill: {} has no `schedule`; add e.g. schedule = \"0 3 15 1,4,7,10 *\" (crontab(5) fields: minute hour day-of-month month day-of-week)",
            config.path.display()
        );
        EXIT_USAGE
    })
}

fn home() -> Result<PathBuf, u8> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            eprintln!("drill: HOME is not set; cannot find ~/Library");
            EXIT_ENVIRONMENT
        })
}

/// Is `name` an executable in `PATH`?
fn in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn launchctl(args: &[&str]) -> Result<std::process::Output, String> {
    std::process::Command::new("launchctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("could not run launchctl: {e}"))
}

/// `drill launchd print|install|uninstall`.
pub(super) fn launchd(cli: &Cli, action: &LaunchdAction) -> u8 {
    if let LaunchdAction::Uninstall { label } = action {
        return launchd_uninstall(label);
    }
    let (LaunchdAction::Print(a) | LaunchdAction::Install(a)) = action else {
        unreachable!("uninstall handled above")
    };
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let schedule = match schedule_of(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let log_dir = match &a.log_dir {
        Some(d) => absolute(d),
        None => match home() {
            Ok(h) => h.join("Library/Logs/drill"),
            Err(code) => return code,
        },
    };
    let (program, config_path, tier) = match a.job.resolve(&config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let agent = launchd::Agent {
        label: a.label.clone(),
        program,
        config: config_path,
        tier,
        log_dir,
    };
    let entries = match launchd::calendar(schedule) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("drill: cannot express the schedule for launchd: {e}");
            return EXIT_USAGE;
        }
    };
    for w in schedule.warnings() {
        eprintln!("drill: warning: schedule: {w}");
    }
    // launchd reads the entries in the Mac's zone: move them there when
    // the difference to `timezone` is the same at every drill time ahead.
    let now = clock.now();
    let horizon = now + chrono::Duration::days(4 * 366);
    let instants: Vec<chrono::DateTime<chrono::Utc>> = schedule
        .upcoming(now, config.timezone, ZONE_SAMPLES)
        .iter()
        .map(|t| t.with_timezone(&chrono::Utc))
        .take_while(|t| *t <= horizon)
        .collect();
    let moved = launchd::zone_shift(config.timezone, &chrono::Local, &instants).and_then(|by| {
        launchd::shift(&entries, by).map(|e| (by, e)).map_err(|e| {
            format!(
                "the Mac's time zone differs from `timezone` ({}): {e}",
                config.timezone
            )
        })
    });
    let (entries, zone_problem) = match moved {
        Ok((0, e)) => (e, None),
        Ok((by, e)) => {
            if let Some(t) = instants.first() {
                eprintln!(
                    "drill: note: launchd reads StartCalendarInterval in this host's time zone, {} at every drill time ahead; the times are converted ({} in {} is {} here)",
                    launchd::shift_words(by, config.timezone),
                    t.with_timezone(&config.timezone).format("%Y-%m-%d %H:%M"),
                    config.timezone,
                    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
                );
            }
            (e, None)
        }
        Err(e) => (entries, Some(e)),
    };
    let text = match launchd::plist(&agent, &entries) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("drill: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    match action {
        LaunchdAction::Print(_) => {
            if let Some(p) = &zone_problem {
                eprintln!(
                    "drill: warning: the times below are in {} and not converted: {p}",
                    config.timezone
                );
            }
            print!("{text}");
            EXIT_PASSED
        }
        LaunchdAction::Install(_) => {
            if let Some(p) = zone_problem {
                eprintln!("drill: not installed: {p}");
                return EXIT_USAGE;
            }
            launchd_install(&agent, &text)
        }
        LaunchdAction::Uninstall { .. } => unreachable!("handled above"),
    }
}

/// Most upcoming drill times (within four years) at which the Mac's zone
/// and `timezone` are compared.
const ZONE_SAMPLES: usize = 5000;

fn agent_path(label: &str) -> Result<PathBuf, u8> {
    Ok(home()?
        .join("Library/LaunchAgents")
        .join(format!("{label}.plist")))
}

fn launchd_install(agent: &launchd::Agent, text: &str) -> u8 {
    let path = match agent_path(&agent.label) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for dir in [
        path.parent().expect("has a parent"),
        agent.log_dir.as_path(),
    ] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("drill: cannot create {}: {e}", dir.display());
            return EXIT_ENVIRONMENT;
        }
    }
    if let Err(e) = report::write_atomic(&path, text.as_bytes()) {
        eprintln!("drill: {e}");
        return EXIT_ENVIRONMENT;
    }
    println!("wrote {}", path.display());
    if in_path("launchctl").is_none() {
        println!(
            "launchctl not found: load it on the Mac with `launchctl bootstrap gui/$(id -u) {}`",
            path.display()
        );
        return EXIT_PASSED;
    }
    let domain = format!("gui/{}", crate::host::uid());
    // Replace a loaded copy: bootout fails harmlessly when none is loaded.
    let _ = launchctl(&["bootout", &format!("{domain}/{}", agent.label)]);
    match launchctl(&["bootstrap", &domain, &path.display().to_string()]) {
        Ok(o) if o.status.success() => {
            println!("loaded {} into {domain}", agent.label);
            EXIT_PASSED
        }
        Ok(o) => {
            eprintln!(
                "drill: launchctl bootstrap {domain} {} failed ({}): {}",
                path.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            );
            EXIT_ENVIRONMENT
        }
        Err(e) => {
            eprintln!("drill: {e}");
            EXIT_ENVIRONMENT
        }
    }
}

fn launchd_uninstall(label: &str) -> u8 {
    let path = match agent_path(label) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if in_path("launchctl").is_some() {
        let target = format!("gui/{}/{label}", crate::host::uid());
        match launchctl(&["bootout", &target]) {
            Ok(o) if o.status.success() => println!("unloaded {target}"),
            Ok(_) => println!("{target} was not loaded"),
            Err(e) => {
                eprintln!("drill: {e}");
                return EXIT_ENVIRONMENT;
            }
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} does not exist; nothing to remove", path.display())
        }
        Err(e) => {
            eprintln!("drill: cannot remove {}: {e}", path.display());
            return EXIT_ENVIRONMENT;
        }
    }
    EXIT_PASSED
}

/// `drill systemd print`.
pub(super) fn systemd(cli: &Cli, action: &SystemdAction) -> u8 {
    let SystemdAction::Print { name, job, unit } = action;
    let (config, _) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let schedule = match schedule_of(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (program, config_path, tier) = match job.resolve(&config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let units = systemd::Units {
        name: name.clone(),
        program,
        config: config_path,
        tier,
    };
    for w in schedule.warnings() {
        eprintln!("drill: warning: schedule: {w}");
    }
    let service = systemd::service(&units, schedule);
    let timer = systemd::timer(&units, schedule, config.timezone);
    match unit {
        Some(UnitKind::Service) => print!("{service}"),
        Some(UnitKind::Timer) => print!("{timer}"),
        None => print!("# file: {name}.service\n{service}\n# file: {name}.timer\n{timer}"),
    }
    EXIT_PASSED
}

/// Every (tier, database) strip of the ledger, when there is one.
/// `drill report`: the history page.
pub(super) fn history_page(cli: &Cli, out: Option<&Path>) -> u8 {
    let (config, clock) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (path, drills) = match crate::drill::history_page(&config, out, clock.as_ref()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("drill: {e}");
            return EXIT_ENVIRONMENT;
        }
    };
    if cli.json {
        super::print_json(&serde_json::json!({ "page": path, "drills": drills }));
    } else {
        println!("wrote {} ({drills} drill(s))", path.display());
    }
    EXIT_PASSED
}

/// After a drill: the JUnit XML and the metrics (`--junit`, `--metrics`,
/// else `[outputs]`), then Slack (unless `--no-notify`). Returns `false`
/// when something asked for was not delivered; each failure is said on
/// stderr with the report's location.
pub(super) async fn deliver(cli: &Cli, config: &Config, args: &RunArgs, o: &RunOutcome) -> bool {
    let mut all = true;
    let json = o.written.json.display().to_string();
    let mut write = |what: &str, path: &Path, text: Result<String, String>| {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let written =
            text.and_then(|t| report::write_atomic(path, t.as_bytes()).map_err(|e| e.to_string()));
        match written {
            Ok(()) => {
                if !cli.quiet {
                    eprintln!("drill: {what} written to {}", path.display());
                }
            }
            Err(e) => {
                eprintln!("drill: {what} not written to {}: {e}", path.display());
                all = false;
            }
        }
    };
    if let Some(p) = args.junit.as_ref().or(config.outputs.junit.as_ref()) {
        write(
            "JUnit XML",
            p,
            report::junit::render(&o.report, &json).map_err(|e| format!("failed to {e}")),
        );
    }
    if let Some(p) = args.metrics.as_ref().or(config.outputs.metrics.as_ref()) {
        // Only the standing of each tier is read; no series depends on now.
        let tiers = crate::drill::status::run(config, &crate::clock::SystemClock);
        write(
            "metrics",
            p,
            tiers.map(|t| report::metrics::render(&t, config.schedule.is_some())),
        );
    }
    if args.no_notify {
        return all;
    }
    let Some(slack) = &config.slack else {
        if cli.verbose > 0 {
            eprintln!("drill: no [slack] in the config: the report is not posted");
        }
        return all;
    };
    let link = crate::notify::ReportLink::new(
        &crate::host::hostname(),
        &o.written.html,
        slack.report_url.as_deref(),
    );
    let message = crate::notify::message(&o.report, &link, config.timezone);
    let note = |m: &str| eprintln!("drill: {m}");
    match crate::notify::deliver(slack, &message, &note).await {
        Ok(d) => {
            if !cli.quiet {
                eprintln!("drill: report posted to Slack (attempts: {})", d.attempts);
            }
        }
        Err(e) => {
            eprintln!(
                "drill: the report was NOT posted to Slack: {e}. The report is kept at {json}"
            );
            all = false;
        }
    }
    all
}

/// `drill notify --test`: post a test message through `[slack]`. Exit 0
/// when Slack accepted it, 2 without `[slack]` or with a webhook URL drill
/// will not use, 3 when the secret cannot be read or Slack refused the
/// message or could not be reached.
pub(super) async fn notify_test(cli: &Cli) -> u8 {
    let (config, _) = match load(cli) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(slack) = &config.slack else {
        eprintln!(
            "drill: {} has no [slack] section: nothing to test (add webhook_url_command, or token_command with channel)",
            config.path.display()
        );
        return EXIT_USAGE;
    };
    let note = |m: &str| eprintln!("drill: {m}");
    let host = crate::host::hostname();
    let path = std::path::absolute(&config.path).unwrap_or_else(|_| config.path.clone());
    match crate::notify::test(slack, &host, &path.display().to_string(), &note).await {
        Ok(t) => {
            if cli.json {
                super::print_json(&serde_json::json!({
                    "posted": true,
                    "attempts": t.delivery.attempts,
                    "team": t.identity.as_ref().map(|i| &i.team),
                    "user": t.identity.as_ref().map(|i| i.user.as_deref().unwrap_or(&i.user_id)),
                }));
            }
            if let Some(i) = &t.identity {
                eprintln!(
                    "drill: auth.test: bot token of {} ({}) in workspace {} ({})",
                    i.user.as_deref().unwrap_or(&i.user_id),
                    i.user_id,
                    i.team,
                    i.url
                );
            }
            eprintln!(
                "drill: test message posted to Slack (attempts: {})",
                t.delivery.attempts
            );
            EXIT_PASSED
        }
        Err(e) => {
            eprintln!("drill: the test message was NOT posted to Slack: {e}");
            if cli.json {
                super::print_json(&serde_json::json!({
                    "posted": false,
                    "error": e.to_string(),
                }));
            }
            match e {
                crate::notify::NotifyError::Url(_) => EXIT_USAGE,
                _ => EXIT_ENVIRONMENT,
            }
        }
    }
}
