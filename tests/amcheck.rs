//! `kind = "amcheck"` against a real sandbox: a healthy database passes; an
//! index whose relation file was damaged inside the sandbox is reported as
//! corrupt, naming the index.

mod common;

use std::time::Duration;

use drill::checks::{self, CheckContext};
use drill::config::{CheckDefinition, CheckSpec};
use drill::report::Status;
use drill::sandbox::{DockerEngine, SandboxRequest};

#[tokio::test]
async fn amcheck_passes_a_healthy_database_and_reports_a_damaged_index() {
    common::require_environment();
    let engine = DockerEngine::connect().await.expect("Docker engine");
    let run_id = format!("test-amcheck-{}", std::process::id());
    let sandbox = engine
        .start(&SandboxRequest {
            run_id: run_id.clone(),
            tier: "test".into(),
            database: "amcheck".into(),
            image: common::image(),
            memory_bytes: 1 << 30,
            cpus: 1.0,
            startup_timeout: Duration::from_secs(120),
        })
        .await
        .expect("sandbox starts");
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = sandbox.connect("postgres").await.unwrap();
        client.batch_execute("CREATE DATABASE shop").await.unwrap();
        drop(client);
        let client = sandbox.connect("shop").await.unwrap();
        // The index is built after the data, as a restore builds it: the
        // build writes its pages straight to the relation file, so nothing
        // of it sits in shared buffers when the file is damaged below.
        client
            .batch_execute(
                "CREATE TABLE item (id integer PRIMARY KEY, sku text NOT NULL);
                 INSERT INTO item SELECT i, md5(i::text) FROM generate_series(1, 20000) i;
                 CREATE INDEX item_sku_idx ON item (sku);",
            )
            .await
            .unwrap();
        let path: String = client
            .query_one("SELECT current_setting('data_directory') || '/' || pg_relation_filepath('item_sku_idx')", &[])
            .await
            .unwrap()
            .get(0);
        drop(client);

        let def = CheckDefinition {
            name: "amcheck".into(),
            file: "amcheck.toml".into(),
            database: None,
            dbname: None,
            description: None,
            timeout: Duration::from_secs(120),
            spec: CheckSpec::Amcheck {
                heapallindexed: true,
                parent_check: true,
            },
        };
        let baselines = Ok(Default::default());
        let ctx = CheckContext {
            sandbox: &sandbox,
            database: "shop",
            dbname: "shop",
            tier: "test",
            baselines: &baselines,
        };
        let healthy = checks::run(&def, &ctx).await;
        assert_eq!(healthy.status, Status::Passed, "{healthy:#?}");

        // Overwrite 16 bytes of the index's third page (a leaf) in place.
        let damage = format!(
            "printf '\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377\\377' \
             | dd of='{path}' bs=1 seek={} conv=notrunc status=none",
            8192 * 2 + 200
        );
        let out = sandbox
            .exec_with_input(&["sh", "-c", &damage], None::<tokio::io::Empty>)
            .await
            .unwrap();
        assert!(out.succeeded(), "damage the index: {:?}", out.output);

        let damaged = checks::run(&def, &ctx).await;
        assert_eq!(damaged.status, Status::Failed, "{damaged:#?}");
        assert!(
            damaged.findings[0].starts_with("btree index \"shop.public.item_sku_idx\":"),
            "{damaged:#?}"
        );
        assert!(damaged.detail.contains("corruption"), "{damaged:#?}");
    }))
    .await;
    sandbox.remove().await;
    common::assert_no_sandbox_left(&run_id);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
