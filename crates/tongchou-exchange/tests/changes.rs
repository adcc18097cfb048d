//! Upserts with deletes, and subscribers pulling exactly what changed since their cursor.

use std::sync::Arc;

use serde_json::json;
use tongchou_catalog::{Actor, Batch, Catalog};
use tongchou_exchange::ExchangeError;
use tongchou_exchange::changes::{self, OutputFormat, PullPreview};
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_store::DataDir;

fn codes() -> Vec<String> {
    // Valid credit codes built from different organisation codes.
    ["12345678", "23456789", "34567890", "45678901"]
        .iter()
        .map(|body| {
            tongchou_ids::credit_code::build("91", 440605, body.as_bytes().try_into().unwrap())
        })
        .collect()
}

async fn setup(tmp: &std::path::Path) -> (DataDir, Catalog, String, String) {
    let dir = DataDir::init(&tmp.join("data")).await.unwrap();
    let catalog = Catalog::open(dir.clone()).await.unwrap();
    let units = tongchou_sim::units();
    catalog.add_units(&units, &Actor::Operator).await.unwrap();
    let resource = json!({"unit": units[13].code, "name": "纳税人登记", "share_type": "unconditional", "open_type": "none", "update_cycle": "daily",
        "key": ["credit_code"],
        "fields": [{"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "unique": true},
                   {"name": "name", "label": "纳税人名称", "type": "string"},
                   {"name": "employees", "label": "从业人数", "type": "integer"}]});
    let code = catalog
        .register(
            Batch::from_json(resource.to_string().as_bytes()).unwrap(),
            &Actor::Operator,
        )
        .await
        .unwrap()
        .remove(0);
    (dir, catalog, code, units[27].code.clone())
}

fn options() -> ReadOptions {
    ReadOptions {
        encoding: Encoding::Auto,
        sheet: None,
        header_row: None,
    }
}

async fn load(
    dir: &DataDir,
    catalog: &Catalog,
    code: &str,
    text: &str,
    mode: Mode,
) -> tongchou_exchange::LoadReport {
    let path = dir.root().join(format!(
        "load-{}.csv",
        jiff::Timestamp::now().as_nanosecond()
    ));
    std::fs::write(&path, text).unwrap();
    tongchou_exchange::ingest(
        dir,
        catalog,
        &tongchou_exchange::Load {
            resource: code,
            file: &path,
            mode,
            read: &options(),
            actor: "test",
        },
        Arc::new(|_| {}),
    )
    .await
    .unwrap()
}

fn changes_of(batches: &[deltalake::arrow::record_batch::RecordBatch]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in batches {
        let code = b
            .column_by_name("credit_code")
            .unwrap()
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        let change = b.column_by_name("_change").unwrap();
        let change =
            deltalake::arrow::compute::cast(change, &deltalake::arrow::datatypes::DataType::Utf8)
                .unwrap();
        let change = change
            .as_any()
            .downcast_ref::<deltalake::arrow::array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            out.push((code.value(i).to_string(), change.value(i).to_string()));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_update_delete_and_insert_and_subscribers_pull_just_that() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, code, consumer) = setup(tmp.path()).await;
    let c = codes();
    let first = load(
        &dir,
        &catalog,
        &code,
        &format!(
            "统一社会信用代码,纳税人名称,从业人数\n{},甲公司,10\n{},乙公司,20\n{},丙公司,30\n",
            c[0], c[1], c[2]
        ),
        Mode::Append,
    )
    .await;
    assert_eq!(first.accepted, 3);
    let sub = changes::subscribe(&dir, &code, &consumer, None)
        .await
        .unwrap();
    let out = tmp.path().join("pull1.parquet");
    // A delivery the ledger cannot record is not delivered: no file, the cursor stays.
    let refused = changes::pull(
        &dir,
        sub.id,
        OutputFormat::Parquet,
        &out,
        1000,
        async |_: &PullPreview| Err("the ledger is full".to_string()),
    )
    .await;
    assert!(matches!(refused, Err(ExchangeError::NotRecorded(_))));
    assert!(!out.exists());
    let (pulled, preview) = pull_traced(&dir, sub.id, OutputFormat::Parquet, &out).await;
    assert_eq!(pulled.rows, 3, "the refused pull did not move the cursor");
    assert_eq!(preview.rows, 3);
    let mut ids = preview.subject_ids.clone();
    ids.sort();
    assert_eq!(
        ids,
        vec![c[0].clone(), c[1].clone(), c[2].clone()],
        "the enterprises delivered"
    );
    let digest = {
        use sha2::Digest;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(std::fs::read(&out).unwrap()))
        )
    };
    assert_eq!(preview.digest, digest);
    let all = changes::since(&dir, &code, -1).await.unwrap();
    assert_eq!(
        changes_of(&all.batches)
            .iter()
            .filter(|(_, k)| k == "insert")
            .count(),
        3
    );

    let upsert = load(&dir, &catalog, &code, &format!("_op,统一社会信用代码,纳税人名称,从业人数\n,{},甲公司,11\nD,{},,\n,{},丁公司,40\n,{},重复,1\n", c[0], c[1], c[3], c[3]), Mode::Upsert).await;
    assert_eq!(
        (upsert.accepted, upsert.quarantined),
        (3, 1),
        "a key named twice is quarantined"
    );
    assert_eq!(upsert.rows, 3);
    let out = tmp.path().join("pull2.json");
    let (pulled, _) = pull_traced(&dir, sub.id, OutputFormat::Json, &out).await;
    assert_eq!(pulled.rows, 3);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut seen: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["credit_code"].as_str().unwrap().to_string(),
                l["_change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (c[0].clone(), "update".to_string()),
        (c[1].clone(), "delete".to_string()),
        (c[3].clone(), "insert".to_string()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let updated = lines.iter().find(|l| l["_change"] == "update").unwrap();
    assert_eq!(updated["employees"], 11);

    let (again, _) = pull_traced(
        &dir,
        sub.id,
        OutputFormat::Csv,
        &tmp.path().join("pull3.csv"),
    )
    .await;
    assert_eq!(again.rows, 0, "the cursor moved");
    let volume: i64 = changes::volume(&dir)
        .await
        .unwrap()
        .iter()
        .map(|v| v.records)
        .sum();
    assert_eq!(volume, 6);
    let per_day = changes::volume_per_day(&dir).await.unwrap();
    assert_eq!(per_day.iter().map(|(_, n)| n).sum::<i64>(), 6);
    assert!(per_day.windows(2).all(|w| w[0].0 < w[1].0), "{per_day:?}");

    for format in [
        OutputFormat::Csv,
        OutputFormat::Arrow,
        OutputFormat::Parquet,
    ] {
        let changes = changes::since(&dir, &code, 0).await.unwrap();
        let out = tmp.path().join(format!("all.{format:?}"));
        changes::write(&changes, format, &out).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_need_a_key_and_subscriptions_a_known_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, code, _) = setup(tmp.path()).await;
    assert!(
        changes::subscribe(&dir, &code, "nobody", None)
            .await
            .unwrap_err()
            .to_string()
            .contains("not registered")
    );
    let path = dir.root().join("x.csv");
    std::fs::write(&path, "纳税人名称,从业人数\n甲,1\n").unwrap();
    let err = tongchou_exchange::ingest(
        &dir,
        &catalog,
        &tongchou_exchange::Load {
            resource: &code,
            file: &path,
            mode: Mode::Upsert,
            read: &options(),
            actor: "t",
        },
        Arc::new(|_| {}),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("统一社会信用代码"), "{err}");
}

/// Pulls, keeping what the ledger would have been asked to record.
async fn pull_traced(
    dir: &tongchou_store::DataDir,
    id: i64,
    format: OutputFormat,
    out: &std::path::Path,
) -> (changes::Pulled, PullPreview) {
    let seen = std::sync::Mutex::new(None);
    let pulled = changes::pull(dir, id, format, out, 1000, async |p: &PullPreview| {
        *seen.lock().unwrap() = Some(p.clone());
        Ok(())
    })
    .await
    .unwrap();
    let preview = seen.into_inner().unwrap().expect("the pull was traced");
    (pulled, preview)
}
