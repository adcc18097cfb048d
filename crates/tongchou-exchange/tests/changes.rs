//! Upserts need a key, and subscriptions a known unit. (What a pull delivers is governed
//! query's: `tongchou-query/tests/deliver.rs`.)

use std::sync::Arc;

use serde_json::json;
use tongchou_catalog::{Actor, Batch, Catalog};
use tongchou_exchange::changes;
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_store::DataDir;

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
        Arc::new(()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("统一社会信用代码"), "{err}");
}
