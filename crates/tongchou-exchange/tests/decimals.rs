//! A decimal field's type is part of its table's versions: a table kept in another type
//! (floating point from before decimals were exact, or another scale) takes no appended
//! rows — they would be rounded — while a replace writes a new version in the declared
//! type, and the versions before stay readable as they were.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::datatypes::DataType as Arrow;
use serde_json::json;
use tongchou_catalog::{Actor, Batch, Catalog};
use tongchou_exchange::{Encoding, ExchangeError, LoadReport, Mode, ReadOptions, table};
use tongchou_store::DataDir;

fn arrears(scale: u8) -> serde_json::Value {
    let unit = &tongchou_sim::units()[13].code;
    json!({"unit": unit, "name": "欠费明细", "share_type": "unconditional", "open_type": "none", "update_cycle": "monthly",
        "fields": [{"name": "payer", "label": "缴费人", "type": "string"},
                   {"name": "amount", "label": "欠费金额", "type": "decimal", "precision": 18, "scale": scale}]})
}

async fn setup(tmp: &Path) -> (DataDir, Catalog, String) {
    let dir = DataDir::init(&tmp.join("data")).await.unwrap();
    let catalog = Catalog::open(dir.clone()).await.unwrap();
    (catalog.add_units(&tongchou_sim::units(), &Actor::Operator))
        .await
        .unwrap();
    let batch = Batch::from_json(arrears(2).to_string().as_bytes()).unwrap();
    let code = catalog.register(batch, &Actor::Operator).await.unwrap();
    (dir, catalog, code[0].clone())
}

async fn load(
    dir: &DataDir,
    catalog: &Catalog,
    code: &str,
    mode: Mode,
) -> Result<LoadReport, ExchangeError> {
    let file = dir.root().join("arrears.csv");
    std::fs::write(&file, "缴费人,欠费金额\n甲,1234.50\n乙,0.10\n丙,0.20\n").unwrap();
    let read = ReadOptions {
        encoding: Encoding::Auto,
        sheet: None,
        header_row: None,
    };
    let load = tongchou_exchange::Load {
        resource: code,
        file: &file,
        mode,
        read: &read,
        actor: "test",
    };
    tongchou_exchange::ingest(dir, catalog, &load, Arc::new(())).await
}

/// The type of `amount` and the sum of it at a version of the table, as text.
async fn amount_at(dir: &DataDir, code: &str, version: u64) -> (Arrow, String) {
    let table = table::open_at(&table::table_dir(&dir.tables_dir(), code), version)
        .await
        .unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let frame = ctx.sql("SELECT sum(amount) AS s FROM t").await.unwrap();
    let batches = frame.collect().await.unwrap();
    let kept = table.snapshot().unwrap().snapshot().arrow_schema();
    let kept = kept.field_with_name("amount").unwrap().data_type().clone();
    let sum = deltalake::arrow::util::display::array_value_to_string(batches[0].column(0), 0);
    (kept, sum.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_scale_is_a_new_version_not_a_rounding() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, code) = setup(tmp.path()).await;
    let first = load(&dir, &catalog, &code, Mode::Append).await.unwrap();
    let at_first = amount_at(&dir, &code, first.version as u64).await;
    assert_eq!(at_first, (Arrow::Decimal128(18, 2), "1234.80".into()));

    let resource = serde_json::from_value(arrears(4)).unwrap();
    catalog
        .update(&code, resource, &Actor::Operator)
        .await
        .unwrap();
    let refused = load(&dir, &catalog, &code, Mode::Append).await.unwrap_err();
    let refused = refused.to_string();
    for said in [
        "欠费金额（amount） as decimal(18,2)",
        "decimal(18,4)",
        "replace",
    ] {
        assert!(refused.contains(said), "{said}: {refused}");
    }

    let replaced = load(&dir, &catalog, &code, Mode::Replace).await.unwrap();
    assert_eq!(replaced.version, first.version + 1);
    let now = amount_at(&dir, &code, replaced.version as u64).await;
    assert_eq!(now, (Arrow::Decimal128(18, 4), "1234.8000".into()));
    assert_eq!(amount_at(&dir, &code, first.version as u64).await, at_first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_written_in_floating_point_stays_readable_and_is_replaced_not_appended_to() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, code) = setup(tmp.path()).await;
    write_in_floating_point(&dir, &code).await;
    let refused = load(&dir, &catalog, &code, Mode::Append).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("as double (binary floating point)"),
        "{refused}"
    );
    let replaced = load(&dir, &catalog, &code, Mode::Replace).await.unwrap();
    let now = amount_at(&dir, &code, replaced.version as u64).await;
    assert_eq!(now, (Arrow::Decimal128(18, 2), "1234.80".into()));
    let (was, _) = amount_at(&dir, &code, replaced.version as u64 - 1).await;
    assert_eq!(was, Arrow::Float64);
}

/// A table as loads wrote it before decimals were exact: `amount` a DOUBLE.
async fn write_in_floating_point(dir: &DataDir, code: &str) {
    use deltalake::arrow::array::{Float64Array, RecordBatch, StringArray};
    use deltalake::kernel::{DataType as Delta, StructField};
    let path = table::table_dir(&dir.tables_dir(), code);
    std::fs::create_dir_all(&path).unwrap();
    let url = deltalake::ensure_table_uri(path.to_string_lossy()).unwrap();
    let columns = vec![
        StructField::new("payer", Delta::STRING, true),
        StructField::new("amount", Delta::DOUBLE, true),
    ];
    let table = deltalake::DeltaTable::try_from_url(url).await.unwrap();
    let table = table.create().with_columns(columns).await.unwrap();
    let batch = RecordBatch::try_from_iter([
        ("payer", Arc::new(StringArray::from(vec!["甲"])) as _),
        ("amount", Arc::new(Float64Array::from(vec![0.1])) as _),
    ])
    .unwrap();
    table.write(vec![batch]).await.unwrap();
}
