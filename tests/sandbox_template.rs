//! Sandbox templates (issue 22) against the real Docker engine and the
//! offline images (`drill-postgres:15`, `drill-mariadb:10.11`):
//!
//! - the first sandbox of an image builds its template (of two engines
//!   starting one at once, one builds and the other waits for it), the next
//!   one starts from it;
//! - every sandbox has its own password; the template's password is refused
//!   over TCP once the sandbox is ready;
//! - a new image id (a derived image rebuilt under the same tag) gets a new
//!   template;
//! - an image on which no template can be built still gets a sandbox (cold
//!   start) and one warning;
//! - a view of the template's `mysql` schema dropped, created and dropped
//!   again stays dropped (the storage driver's copy-on-write, or the copy);
//!
//! How fast a sandbox starts is measured by `bench/run.py --only start`,
//! not here.
//!
//! Every test works on derived images of its own (`docker build` of
//! `FROM <image>` plus a unique label, offline), so their templates are new,
//! and removes those images and their templates at the end.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use drill::kind::{DatabaseKind, Endpoint};
use drill::sandbox::{DockerEngine, Sandbox, SandboxRequest, TemplateStatus};

fn mariadb_image() -> String {
    std::env::var("DRILL_TEST_MARIADB_IMAGE").unwrap_or_else(|_| "drill-mariadb:10.11".into())
}

fn mariadb() -> &'static dyn DatabaseKind {
    drill::kind::by_name("mariadb").unwrap()
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Build `tag` from `dockerfile` (no context) with the classic builder,
/// offline.
fn build(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "--quiet", "-t", tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Images (by tag or id) removed at the end of a test, even when it fails,
/// after the containers of the test's run.
struct Images(Vec<String>, String);

impl Images {
    fn new(run_id: &str) -> Images {
        Images(Vec::new(), run_id.to_string())
    }

    fn add(&mut self, image: &str) {
        self.0.push(image.to_string());
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for id in common::sandboxes_of_run(&self.1, false) {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &id])
                .output();
        }
        for image in self.0.iter().rev() {
            // A template's seed volume goes with it.
            let id = Command::new("docker")
                .args(["image", "inspect", "-f", "{{.Id}}", image])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            if !id.is_empty() {
                // Its spares too, once their fills have ended.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while filling(&id, false) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let spares = std::panic::catch_unwind(|| spares(&id, false)).unwrap_or_default();
                for v in spares.iter().chain([&seed_volume(&id)]) {
                    let _ = Command::new("docker").args(["volume", "rm", v]).output();
                }
            }
            let _ = Command::new("docker")
                .args(["image", "rm", "-f", image])
                .output();
        }
    }
}

/// Spare volumes of template image `id` (src/sandbox/template.rs); only
/// those no container uses when `free`.
fn spares(id: &str, free: bool) -> Vec<String> {
    let label = format!("label=drill.template.spare-of={id}");
    let mut args = vec!["volume", "ls", "-q", "--filter", label.as_str()];
    if free {
        args.extend(["--filter", "dangling=true"]);
    }
    docker(&args).lines().map(str::to_string).collect()
}

/// Whether a container fills a spare of template `id` (`created`: also
/// one made and not started yet).
fn filling(id: &str, created: bool) -> bool {
    let hex = id.trim_start_matches("sha256:");
    let prefix = format!("drill-template-spare-{}", &hex[..hex.len().min(12)]);
    let mut args = vec![
        "ps",
        "-a",
        "--filter",
        "label=drill.template.spare-fill",
        "--filter",
        "status=running",
        "--format",
        "{{.Label \"drill.template.spare-fill\"}}",
    ];
    if created {
        args.extend(["--filter", "status=created"]);
    }
    docker(&args).lines().any(|l| l.starts_with(&prefix))
}

/// Wait (up to 60 s) until no container is filling a spare of template
/// `id`. Async: the fill is started by a task of this test's runtime.
async fn fills_done(id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while filling(id, true) {
        assert!(
            std::time::Instant::now() < deadline,
            "spares of {id} still filling after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait (up to 60 s) until template `id` has a spare not in `known`: the
/// one the last sandbox's start fills in the background.
async fn wait_for_new_spare(id: &str, known: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !spares(id, false).iter().any(|v| !known.contains(v)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no new spare of {id} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Remove the spares of template `id` no container uses, all but `keep`.
async fn drop_free_spares(id: &str, keep: usize) {
    fills_done(id).await;
    for v in spares(id, true).iter().skip(keep) {
        docker(&["volume", "rm", v]);
    }
}

/// The seed volume of template image `id` (src/sandbox/template.rs).
fn seed_volume(id: &str) -> String {
    let hex = id.trim_start_matches("sha256:");
    format!("drill-template-seed-{}", &hex[..hex.len().min(12)])
}

fn request(
    run_id: &str,
    database: &str,
    image: &str,
    kind: &'static dyn DatabaseKind,
) -> SandboxRequest {
    SandboxRequest {
        run_id: run_id.into(),
        tier: "test".into(),
        database: database.into(),
        snapshot: None,
        image: image.into(),
        memory_bytes: 1 << 30,
        cpus: 1.0,
        startup_timeout: Duration::from_secs(120),
        tuning: true,
        kind,
        held: false,
    }
}

/// The template password kept on the template image.
fn template_password(tag: &str) -> String {
    docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"drill.template.password\"}}",
        tag,
    ])
}

/// Whether `password` logs in as the sandbox's superuser over TCP.
async fn logs_in(sb: &Sandbox, password: &str) -> Result<(), String> {
    let ep = Endpoint {
        password: drill::secret::Secret::new(password.to_string()),
        ..sb.endpoint()
    };
    if sb.kind.name() == "postgresql" {
        // (`postgres` exists in local clusters too)
        drill::kind::postgresql::connect(&ep, "postgres")
            .await
            .map(|_| ())
    } else {
        sb.kind.probe(&ep).await.map(|_| ())
    }
}

/// What every template test asserts of two sandboxes of one template.
async fn assert_own_passwords(a: &Sandbox, b: &Sandbox, tag: &str) {
    let template_pw = template_password(tag);
    assert!(
        !template_pw.is_empty(),
        "template {tag} has no password label"
    );
    assert_ne!(a.password.expose(), b.password.expose());
    for sb in [a, b] {
        assert_ne!(sb.password.expose(), template_pw);
        logs_in(sb, sb.password.expose())
            .await
            .unwrap_or_else(|e| panic!("{}: own password refused: {e}", sb.name));
        let refused = logs_in(sb, &template_pw).await;
        assert!(
            refused.is_err(),
            "{}: the template password still logs in",
            sb.name
        );
        let other = if sb.id == a.id { b } else { a };
        assert!(logs_in(sb, other.password.expose()).await.is_err());
        // The container's password variable (what `--keep` tells the
        // operator to read) is the sandbox's.
        let env = docker(&[
            "inspect",
            "--format",
            "{{range .Config.Env}}{{println .}}{{end}}",
            &sb.id,
        ]);
        let var = format!("{}={}", sb.kind.password_env(), sb.password.expose());
        assert!(
            env.lines().any(|l| l == var),
            "{}: {var} not in its environment",
            sb.name
        );
    }
}

/// The template image keeps no run's labels and no password in its
/// environment.
fn assert_clean_template(tag: &str, kind: &dyn DatabaseKind) {
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        tag,
    ]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["drill.template.format"], "1", "{labels}");
    assert_eq!(labels["drill.template.kind"], kind.name());
    for k in drill::sandbox::SANDBOX_LABELS {
        assert!(
            labels.get(k).is_none_or(|v| v == ""),
            "template {tag} carries {k}={}",
            labels[k]
        );
    }
    let env = docker(&[
        "image",
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        tag,
    ]);
    let var = format!("{}=", kind.password_env());
    for l in env.lines() {
        assert!(!l.starts_with(&var) || l == var, "template {tag} keeps {l}");
    }
}

/// First start builds (two engines at once), second reuses, a rebuilt
/// image gets a new template. `probe_sql` runs in each sandbox to prove it
/// serves.
async fn template_lifecycle(base: &str, kind: &'static dyn DatabaseKind, label: &str) {
    common::require_environment();
    docker(&["image", "inspect", base]);
    let run = format!("test-template-{label}-{}", std::process::id());
    let mut images = Images::new(&run);
    let derived = format!("drill-test-template-{label}-{}", std::process::id());
    build(
        &derived,
        &format!(
            "FROM {base}\nLABEL drill.test={label}-{}-1\n",
            std::process::id()
        ),
    );
    images.add(&derived);

    let one = DockerEngine::connect().await.unwrap();
    let two = DockerEngine::connect().await.unwrap();
    let TemplateStatus::Missing { tag } = one.template_status(&derived, kind).await else {
        panic!(
            "a new image has a template already: {:?}",
            one.template_status(&derived, kind).await
        );
    };
    images.add(&tag);
    // Two drills build the same template at once.
    let (ra, rb) = (
        request(&run, "a", &derived, kind),
        request(&run, "b", &derived, kind),
    );
    let (a, b) = tokio::join!(one.start(&ra), two.start(&rb));
    let (a, b) = (a.expect("sandbox a starts"), b.expect("sandbox b starts"));
    let (ta, tb) = (a.template.clone().unwrap(), b.template.clone().unwrap());
    images.add(&ta.id);
    images.add(&tb.id);
    assert_eq!(ta.tag, tag);
    assert_eq!(tb.tag, tag);
    // One of them built it, the other waited for it (the host's lock).
    assert!(
        ta.built_seconds.is_some() != tb.built_seconds.is_some(),
        "{ta:?} {tb:?}"
    );
    assert_eq!(ta.id, tb.id);
    assert!(
        a.warnings.is_empty() && b.warnings.is_empty(),
        "{:?} {:?}",
        a.warnings,
        b.warnings
    );
    assert_eq!(a.image, derived, "the sandbox reports the configured image");

    // The next sandbox starts from it, without building.
    let c = one
        .start(&request(&run, "c", &derived, kind))
        .await
        .expect("sandbox c starts");
    let tc = c.template.clone().unwrap();
    assert_eq!(tc.tag, tag);
    assert_eq!(tc.built_seconds, None, "{tc:?}");
    let d = DockerEngine::connect()
        .await
        .unwrap()
        .start(&request(&run, "d", &derived, kind))
        .await
        .expect("sandbox d starts");
    assert_eq!(
        d.template.as_ref().map(|t| (&t.tag, t.built_seconds)),
        Some((&tag, None))
    );
    assert!(matches!(
        one.template_status(&derived, kind).await,
        TemplateStatus::Ready { .. }
    ));

    assert_own_passwords(&a, &b, &tag).await;
    assert_own_passwords(&c, &d, &tag).await;
    assert_clean_template(&tag, kind);
    // Sandboxes carry drill's labels: the run's sweep and `drill reap` find them.
    assert_eq!(common::sandboxes_of_run(&run, true).len(), 4);
    // Each serves and keeps its own data: what one writes, the other lacks.
    let admin_db = if kind.name() == "postgresql" {
        "postgres"
    } else {
        "mysql"
    };
    let sa = a.session(admin_db).await.unwrap();
    sa.query("CREATE DATABASE only_in_a", Duration::from_secs(30))
        .await
        .unwrap();
    let sc = c.session(admin_db).await.unwrap();
    let rows = if kind.name() == "postgresql" {
        sc.query(
            "SELECT datname FROM pg_database WHERE datname = 'only_in_a'",
            Duration::from_secs(30),
        )
    } else {
        sc.query("SHOW DATABASES LIKE 'only_in_a'", Duration::from_secs(30))
    }
    .await
    .unwrap();
    assert!(rows.rows.is_empty(), "sandbox c sees sandbox a's database");
    // A dump of the `mysql` schema drops and creates its views twice (a
    // stand-in, then the view): what the template held must stay dropped
    // (fuse-overlayfs brings such a file back in the image's layer).
    if kind.name() != "postgresql" {
        for sql in [
            "DROP TABLE IF EXISTS mysql.user",
            "DROP VIEW IF EXISTS mysql.user",
            "CREATE VIEW mysql.user AS SELECT 1 AS Host",
            "DROP VIEW IF EXISTS mysql.user",
            "CREATE VIEW mysql.user AS SELECT 2 AS Host",
        ] {
            sc.query(sql, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e} (template copied: {})", tc.copied));
        }
    }
    for sb in [&a, &b, &c, &d] {
        sb.remove().await;
    }

    // Where sandboxes copy the template, they copy it from its seed
    // volume. A seed left half-filled (no completion file: a drill killed
    // while filling it) is never used: the sandbox starts cold with a
    // warning, the seed is removed, and the next drill fills it again.
    if tc.copied {
        let seed = seed_volume(&tc.id);
        let label = docker(&[
            "volume",
            "inspect",
            "-f",
            "{{index .Labels \"drill.template.seed-of\"}}",
            &seed,
        ]);
        assert_eq!(label.trim(), tc.id);

        // A sandbox that copied the seed leaves a spare copy filled in the
        // background; the next sandbox takes it instead of copying the
        // seed as it starts, and the spare goes with that sandbox.
        // One free spare (a template keeps at most 4, and a, b, c and d
        // may have left that many).
        drop_free_spares(&tc.id, 1).await;
        let free = spares(&tc.id, true);
        assert!(!free.is_empty(), "no spare of {}", tc.id);
        let h = DockerEngine::connect()
            .await
            .unwrap()
            .start(&request(&run, "h", &derived, kind))
            .await
            .expect("sandbox h starts from a spare");
        assert!(
            h.template.as_ref().is_some_and(|t| t.copied && t.spare),
            "{:?}",
            h.template
        );
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
        h.session(admin_db)
            .await
            .unwrap()
            .query("SELECT 1", Duration::from_secs(30))
            .await
            .unwrap();
        let mounted = docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", &h.id]);
        let taken = mounted
            .split_whitespace()
            .find(|v| v.starts_with("drill-template-spare-"))
            .unwrap_or_else(|| panic!("sandbox h mounts no spare: {mounted}"))
            .to_string();
        assert!(free.contains(&taken), "{taken} was not free: {free:?}");
        assert!(
            !spares(&tc.id, true).contains(&taken),
            "{taken} is still free"
        );
        // h's start fills a new spare.
        wait_for_new_spare(&tc.id, &free).await;
        h.remove().await;
        assert!(
            !spares(&tc.id, false).contains(&taken),
            "the spare sandbox h used is not removed with it"
        );

        // A spare never completed (no ready file: a host stopped while
        // filling it) is refused and removed; the sandbox copies the seed.
        drop_free_spares(&tc.id, 0).await;
        let hex = tc.id.trim_start_matches("sha256:");
        let bad = format!("drill-template-spare-{}-testbad", &hex[..12]);
        docker(&[
            "volume",
            "create",
            "--label",
            &format!("drill.template.spare-of={}", tc.id),
            &bad,
        ]);
        let i = DockerEngine::connect()
            .await
            .unwrap()
            .start(&request(&run, "i", &derived, kind))
            .await
            .expect("sandbox i starts from the seed");
        assert!(
            i.template.as_ref().is_some_and(|t| t.copied && !t.spare),
            "{:?}",
            i.template
        );
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        assert!(
            !spares(&tc.id, false).contains(&bad),
            "the incomplete spare is not removed"
        );
        wait_for_new_spare(&tc.id, &[]).await;
        i.remove().await;
        // The seed test below must not find a spare.
        drop_free_spares(&tc.id, 0).await;

        docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "rm",
            "-v",
            &format!("{seed}:/seed"),
            base,
            "/seed/.drill-seed-complete",
        ]);
        let f = DockerEngine::connect()
            .await
            .unwrap()
            .start(&request(&run, "f", &derived, kind))
            .await
            .expect("sandbox f starts cold");
        assert_eq!(f.template, None, "a half-filled seed is not used");
        assert!(
            f.warnings
                .iter()
                .any(|w| w.contains("could not start from template")),
            "{:?}",
            f.warnings
        );
        f.remove().await;
        let gone = Command::new("docker")
            .args(["volume", "inspect", &seed])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "the half-filled seed is removed");
        let g = DockerEngine::connect()
            .await
            .unwrap()
            .start(&request(&run, "g", &derived, kind))
            .await
            .expect("sandbox g starts from the template again");
        assert!(
            g.template.is_some() && g.warnings.is_empty(),
            "{:?}",
            g.warnings
        );
        docker(&["volume", "inspect", &seed]);
        g.remove().await;
    }

    // The image rebuilt under the same tag: a new id, a new template.
    build(
        &derived,
        &format!(
            "FROM {base}\nLABEL drill.test={label}-{}-2\n",
            std::process::id()
        ),
    );
    let e = one
        .start(&request(&run, "e", &derived, kind))
        .await
        .expect("sandbox e starts");
    let te = e.template.clone().unwrap();
    images.add(&te.tag);
    e.remove().await;
    assert_ne!(te.tag, tag, "the rebuilt image reuses the old template");
    assert!(te.built_seconds.is_some(), "{te:?}");
    common::assert_no_sandbox_left(&run);
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_sandboxes_start_from_a_template() {
    template_lifecycle(&common::image(), drill::kind::default_kind(), "pg").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_sandboxes_start_from_a_template() {
    template_lifecycle(&mariadb_image(), mariadb(), "maria").await;
}

/// `sandbox.engine = "local"`: sandboxes copy a cluster made once by
/// `initdb`, each with its own password; the template's is refused.
#[tokio::test(flavor = "multi_thread")]
async fn local_sandboxes_copy_a_template_cluster() {
    let engine = drill::sandbox::LocalEngine::find(None).expect("local PostgreSQL binaries");
    let run = format!("test-template-local-{}", std::process::id());
    let kind = drill::kind::default_kind();
    let a = engine
        .start(&request(&run, "a", "local", kind))
        .await
        .expect("local sandbox a starts");
    let b = engine
        .start(&request(&run, "b", "local", kind))
        .await
        .expect("local sandbox b starts");
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let (ta, tb) = (a.template.clone().unwrap(), b.template.clone().unwrap());
        assert_eq!(ta.tag, tb.tag);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        let template_pw = std::fs::read_to_string(std::path::Path::new(&ta.tag).join("password"))
            .unwrap()
            .trim_end()
            .to_string();
        assert_ne!(a.password.expose(), b.password.expose());
        for sb in [&a, &b] {
            logs_in(sb, sb.password.expose()).await.unwrap();
            assert!(
                logs_in(sb, &template_pw).await.is_err(),
                "{}: template password logs in",
                sb.name
            );
        }
        // what one sandbox writes, the other and the template lack
        let ca = a.connect("postgres").await.unwrap();
        ca.batch_execute("CREATE DATABASE only_in_a").await.unwrap();
        let cb = b.connect("postgres").await.unwrap();
        let n: i64 = cb
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        assert!(matches!(
            drill::sandbox::Engine::template_status(&engine, "local", kind).await,
            TemplateStatus::Ready { .. }
        ));
    }))
    .await;
    a.remove().await;
    b.remove().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// An image on which the template cannot be built (its template data
/// directory is a file) and one that declares the template's path as a
/// VOLUME: sandboxes start cold, and the first one of each carries one
/// warning naming the image.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_template_sandboxes_start_cold_with_one_warning() {
    common::require_environment();
    let pid = std::process::id();
    let run = format!("test-template-cold-{pid}");
    let mut images = Images::new(&run);
    let broken = format!("drill-test-template-broken-{pid}");
    build(
        &broken,
        &format!(
            "FROM {}\nRUN touch /var/lib/drill-template\n",
            common::image()
        ),
    );
    images.add(&broken);
    let volume = format!("drill-test-template-volume-{pid}");
    build(
        &volume,
        &format!("FROM {}\nVOLUME /var/lib/drill-template\n", common::image()),
    );
    images.add(&volume);
    let kind = drill::kind::default_kind();
    let engine = DockerEngine::connect().await.unwrap();
    assert!(matches!(
        engine.template_status(&volume, kind).await,
        TemplateStatus::Unusable(ref why) if why.contains("VOLUME")
    ));
    let TemplateStatus::Missing { tag } = engine.template_status(&broken, kind).await else {
        panic!("unexpected status")
    };
    images.add(&tag);
    for image in [&broken, &volume] {
        let first = engine
            .start(&request(&run, "first", image, kind))
            .await
            .expect("cold start");
        assert_eq!(first.template, None);
        assert_eq!(first.warnings.len(), 1, "{:?}", first.warnings);
        assert!(
            first.warnings[0].contains(image.as_str()),
            "{:?}",
            first.warnings
        );
        first.remove().await;
        let second = engine
            .start(&request(&run, "second", image, kind))
            .await
            .expect("cold start");
        assert_eq!(second.template, None);
        assert!(
            second.warnings.is_empty(),
            "warned twice: {:?}",
            second.warnings
        );
        logs_in(&second, second.password.expose()).await.unwrap();
        second.remove().await;
    }
    // The failed build left no container and no template image.
    common::assert_no_sandbox_left(&run);
    assert!(
        Command::new("docker")
            .args(["image", "inspect", &tag])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
}
