//! Check kinds driven through the library against real sandboxes, where
//! the test must reach inside the sandbox: `amcheck` on an index damaged on
//! disk, `blob-roundtrip` on values large enough to be read in slices.

mod common;

use std::time::Duration;

use drill::checks::{self, CheckContext};
use drill::config::{CheckDefinition, CheckSpec};
use drill::report::Status;
use drill::sandbox::{DockerEngine, Sandbox, SandboxRequest};

async fn start(run_id: &str) -> Sandbox {
    common::require_environment();
    let engine = DockerEngine::connect().await.expect("Docker engine");
    engine
        .start(&SandboxRequest {
            run_id: run_id.into(),
            tier: "test".into(),
            database: "kinds".into(),
            snapshot: None,
            image: common::image(),
            memory_bytes: 1 << 30,
            cpus: 1.0,
            startup_timeout: Duration::from_secs(120),
            tuning: true,
            kind: drill::kind::default_kind(),
            held: false,
        })
        .await
        .expect("sandbox starts")
}

fn definition(spec: CheckSpec) -> CheckDefinition {
    CheckDefinition {
        name: spec.kind().into(),
        file: "check.toml".into(),
        database: None,
        dbname: None,
        description: None,
        timeout: Duration::from_secs(120),
        spec,
    }
}

#[tokio::test]
async fn amcheck_passes_a_healthy_database_and_reports_a_damaged_index() {
    let run_id = format!("test-amcheck-{}", std::process::id());
    let sandbox = start(&run_id).await;
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = sandbox.connect("postgres").await.unwrap();
        client.batch_execute("CREATE DATABASE shop").await.unwrap();
        drop(client);
        let client = sandbox.connect("shop").await.unwrap();
        // The index is built after the data, as a restore builds it: the
        // build writes its pages straight to the relation file, so nothing
        // of it sits in shared buffers when the file is damaged below. The
        // sandbox runs with `wal_level=minimal` (restore tuning): at commit
        // a relation created in the transaction and smaller than
        // `wal_skip_threshold` is WAL-logged page by page through shared
        // buffers, which would keep the index cached; a threshold of 0
        // makes the commit sync the files instead (PostgreSQL docs, 20.5.1).
        client
            .batch_execute(
                "SET wal_skip_threshold = 0;
                 CREATE TABLE item (id integer PRIMARY KEY, sku text NOT NULL);
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

        let def = definition(CheckSpec::Amcheck {
            heapallindexed: true,
            parent_check: true,
        });
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

#[tokio::test]
async fn blob_roundtrip_streams_large_values_and_names_the_damaged_row() {
    let run_id = format!("test-blob-{}", std::process::id());
    let sandbox = start(&run_id).await;
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let client = sandbox.connect("postgres").await.unwrap();
        client.batch_execute("CREATE DATABASE files").await.unwrap();
        drop(client);
        let client = sandbox.connect("files").await.unwrap();
        // 30 small files and 3 of about 3 MiB of random bytes (over the
        // 1 MiB slice size), each with its digest; then one bit of one large
        // file flipped with its digest kept.
        client
            .batch_execute(
                "CREATE TABLE attachment (id bigint PRIMARY KEY, body bytea, digest text);
                 INSERT INTO attachment (id, body)
                   SELECT i, convert_to(repeat(md5(i::text), i), 'UTF8') FROM generate_series(1, 30) i;
                 INSERT INTO attachment (id, body)
                   SELECT 100 + i, (SELECT string_agg(decode(md5(random()::text || k), 'hex'), ''::bytea)
                                      FROM generate_series(1, 200000 + i) k)
                     FROM generate_series(1, 3) i;
                 UPDATE attachment SET digest = encode(sha256(body), 'hex');
                 UPDATE attachment SET body = set_byte(body, 2500000, get_byte(body, 2500000) # 1)
                  WHERE id = 102;",
            )
            .await
            .unwrap();
        let total: i64 = client
            .query_one("SELECT sum(octet_length(body))::bigint FROM attachment", &[])
            .await
            .unwrap()
            .get(0);
        drop(client);

        let def = definition(CheckSpec::BlobRoundtrip {
            table: "public.attachment".into(),
            id_column: "id".into(),
            data_column: "body".into(),
            digest_column: "digest".into(),
        });
        let baselines = Ok(Default::default());
        let ctx = CheckContext {
            sandbox: &sandbox,
            database: "files",
            dbname: "files",
            tier: "test",
            baselines: &baselines,
        };
        let report = checks::run(&def, &ctx).await;
        assert_eq!(report.status, Status::Failed, "{report:#?}");
        assert_eq!(report.rows_verified, Some(33));
        assert_eq!(report.bytes_verified, Some(total as u64));
        assert_eq!(report.findings.len(), 1, "{report:#?}");
        let f = &report.findings[0];
        assert!(f.starts_with("public.attachment id=102: stored digest "), "{f}");
        // All three proofs saw the damage, the two sliced ones included.
        let computed: Vec<&str> = f
            .split("; ")
            .skip(1)
            .map(|p| p.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(computed.len(), 3, "{f}");
        assert!(computed.iter().all(|c| *c == computed[0]), "{f}");
    }))
    .await;
    sandbox.remove().await;
    common::assert_no_sandbox_left(&run_id);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
