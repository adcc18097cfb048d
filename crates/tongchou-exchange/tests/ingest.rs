//! Loads the simulated district's exports into Delta tables and checks, against the ground
//! truth, that exactly the planted invalid rows are quarantined and every other row landed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tongchou_catalog::{Actor, Batch, Catalog};
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_store::DataDir;

async fn setup(tmp: &Path) -> (DataDir, Catalog, std::path::PathBuf) {
    let district = tmp.join("district");
    tongchou_sim::generate(tongchou_sim::Scale::Tiny, 5, &district, &()).unwrap();
    let dir = DataDir::init(&tmp.join("data")).await.unwrap();
    let catalog = Catalog::open(dir.clone()).await.unwrap();
    let batch = Batch::from_json(&std::fs::read(district.join("catalog.json")).unwrap()).unwrap();
    catalog.register(batch, &Actor::Operator).await.unwrap();
    (dir, catalog, district)
}

fn options() -> ReadOptions {
    ReadOptions {
        encoding: Encoding::Auto,
        sheet: None,
        header_row: None,
    }
}

fn quiet() -> tongchou_exchange::Progress {
    Arc::new(())
}

async fn exit_entry_code(catalog: &Catalog) -> String {
    let query = tongchou_catalog::SearchQuery {
        text: "出入境记录".into(),
        limit: 1,
        ..Default::default()
    };
    catalog.search(&query).await.unwrap()[0].code.clone()
}

async fn load(
    dir: &DataDir,
    catalog: &Catalog,
    code: &str,
    file: &Path,
    mode: Mode,
) -> tongchou_exchange::LoadReport {
    let load = tongchou_exchange::Load {
        resource: code,
        file,
        mode,
        read: &options(),
        actor: "test",
    };
    tongchou_exchange::ingest(dir, catalog, &load, quiet())
        .await
        .unwrap()
}

async fn count_rows(dir: &DataDir, code: &str) -> i64 {
    let table = tongchou_exchange::table::open(&tongchou_exchange::table::table_dir(
        &dir.tables_dir(),
        code,
    ))
    .await
    .unwrap()
    .unwrap();
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    ctx.register_table("t", table.table_provider().await.unwrap())
        .unwrap();
    let batches = ctx
        .sql("SELECT count(*) FROM t")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<deltalake::arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_district_loads_with_exactly_the_planted_rows_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, district) = setup(tmp.path()).await;
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(district.join("manifest.json")).unwrap()).unwrap();
    let truth: Value =
        serde_json::from_slice(&std::fs::read(district.join("ground_truth.json")).unwrap())
            .unwrap();
    let planted: BTreeSet<(String, u64)> = truth["invalid_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["file"].as_str().unwrap().to_string(),
                r["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut quarantined = BTreeSet::new();
    for entry in manifest["exports"].as_array().unwrap() {
        let code = entry["resource_code"].as_str().unwrap();
        let file = entry["file"].as_str().unwrap();
        let report = tongchou_exchange::ingest(
            &dir,
            &catalog,
            &tongchou_exchange::Load {
                resource: code,
                file: &district.join(file),
                mode: Mode::Append,
                read: &options(),
                actor: "test",
            },
            quiet(),
        )
        .await
        .unwrap();
        assert_eq!(report.rows_read, entry["rows"].as_u64().unwrap(), "{file}");
        assert_eq!(report.accepted + report.quarantined, report.rows_read);
        assert_eq!(
            report.header_row,
            entry["header_row"].as_u64().unwrap(),
            "{file}"
        );
        for q in tongchou_exchange::quarantine(&dir, code).await.unwrap() {
            quarantined.insert((file.to_string(), q.line));
        }
    }
    let missed: Vec<_> = planted.difference(&quarantined).take(5).collect();
    let extra: Vec<_> = quarantined.difference(&planted).take(5).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}, extra {extra:?}"
    );
    assert_eq!(catalog.inventory().await.unwrap().resources_without_data, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_replace_versions_and_quarantine_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, district) = setup(tmp.path()).await;
    let code = exit_entry_code(&catalog).await;
    let file = district.join("exports/exit_entry/出入境记录.csv");
    let first = load(&dir, &catalog, &code, &file, Mode::Append).await;
    let second = load(&dir, &catalog, &code, &file, Mode::Append).await;
    assert_eq!(second.version, first.version + 1);
    assert_eq!(
        (second.accepted, second.by_rule["duplicate_key"]),
        (0, first.accepted),
        "every record number is already in the first version"
    );
    assert_eq!(second.rows, first.accepted as i64);
    assert_eq!(count_rows(&dir, &code).await, second.rows);
    let replaced = load(&dir, &catalog, &code, &file, Mode::Replace).await;
    assert_eq!(count_rows(&dir, &code).await, first.accepted as i64);
    assert_eq!(replaced.rows, first.accepted as i64);
    let entries = tongchou_exchange::quarantine(&dir, &code).await.unwrap();
    let ids = entries.iter().filter(|e| e.rule != "duplicate_key");
    assert!(ids.clone().count() > 0);
    assert!(
        ids.clone()
            .all(|e| e.field == "person_id" && e.reason.contains("citizen ID"))
    );
    let loads = tongchou_exchange::loads(&dir, &code).await.unwrap();
    assert_eq!(loads.len(), 3);
}

/// Writes `rows` (person number, card number, op) as a CSV named `name`.
fn people(tmp: &Path, name: &str, rows: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let mut text = String::from("人员编号,卡号,_op\n");
    for (person, card, op) in rows {
        text.push_str(&format!("{person},{card},{op}\n"));
    }
    let path = tmp.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Asserts that the `i`th reason says `text`.
fn says(reasons: &[(u64, String, String)], i: usize, text: &str) {
    assert!(reasons[i].2.contains(text), "{reasons:?}");
}

/// Issue 26, item 2: the key and unique fields hold across versions, by mode; the key
/// index, deleted or damaged, is rebuilt from the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_unique_values_hold_across_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, _district) = setup(tmp.path()).await;
    let unit = catalog
        .get(&exit_entry_code(&catalog).await)
        .await
        .unwrap()
        .resource
        .unit;
    let resource = serde_json::json!([{"unit": unit, "name": "人员卡号", "share_type": "unconditional", "open_type": "none", "update_cycle": "daily", "key": ["person_no"],
        "fields": [{"name": "person_no", "label": "人员编号", "type": "string", "required": true},
                   {"name": "card_no", "label": "卡号", "type": "string", "unique": true}]}]);
    let batch = Batch::from_json(resource.to_string().as_bytes()).unwrap();
    let code = catalog.register(batch, &Actor::Operator).await.unwrap()[0].clone();
    let tmp = tmp.path();
    let step = async |name: &str, mode: Mode, rows: &[(&str, &str, &str)]| {
        let report = load(&dir, &catalog, &code, &people(tmp, name, rows), mode).await;
        let quarantine = tongchou_exchange::quarantine(&dir, &code).await.unwrap();
        let reasons: Vec<(u64, String, String)> = (quarantine.into_iter())
            .filter(|q| q.load_id == report.load_id)
            .map(|q| (q.line, q.rule, q.reason))
            .collect();
        (report.accepted, reasons)
    };
    let a = [("P1", "C1", ""), ("P2", "C2", ""), ("P3", "C3", "")];
    assert_eq!(step("a.csv", Mode::Append, &a).await.0, 3);

    let (accepted, reasons) = step(
        "b.csv",
        Mode::Append,
        &[("P4", "C4", ""), ("P1", "C9", ""), ("P5", "C2", "")],
    )
    .await;
    assert_eq!(accepted, 1);
    assert_eq!((reasons[0].0, reasons[0].1.as_str()), (3, "duplicate_key"));
    says(
        &reasons,
        0,
        "key P1 is already in version 1, line 2 of a.csv; this is line 3",
    );
    assert_eq!((reasons[1].0, reasons[1].1.as_str()), (4, "unique"));
    says(&reasons, 1, "'C2' is already in version 1, line 3 of a.csv");

    // An upsert replaces P1 (freeing C1), deletes P3 (freeing C3), and may not take C2 from P2.
    let (accepted, reasons) = step(
        "u.csv",
        Mode::Upsert,
        &[("P1", "C9", ""), ("P6", "C2", ""), ("P3", "", "D")],
    )
    .await;
    assert_eq!((accepted, reasons.len()), (2, 1), "{reasons:?}");
    assert_eq!((reasons[0].0, reasons[0].1.as_str()), (3, "unique"));
    let (accepted, reasons) = step(
        "c.csv",
        Mode::Append,
        &[("P3", "C3", ""), ("P7", "C1", ""), ("P8", "C9", "")],
    )
    .await;
    assert_eq!(accepted, 2, "{reasons:?}");
    says(&reasons, 0, "'C9' is already in version 3, line 2 of u.csv");

    // Deleted, then damaged: rebuilt from the table, it still knows every key, not its line.
    let index = tongchou_exchange::table::table_dir(&dir.tables_dir(), &code).join("_keys");
    std::fs::remove_dir_all(&index).unwrap();
    let (accepted, reasons) = step(
        "d.csv",
        Mode::Append,
        &[("P1", "C10", ""), ("P9", "C11", ""), ("P10", "C7", "")],
    )
    .await;
    assert_eq!(accepted, 2, "{reasons:?}");
    says(
        &reasons,
        0,
        "key P1 is already in version 4 (its line is not known",
    );
    for segment in std::fs::read_dir(&index).unwrap().flatten() {
        if segment.file_name().to_string_lossy().ends_with(".seg") {
            std::fs::write(segment.path(), b"not an index").unwrap();
        }
    }
    let (accepted, reasons) = step(
        "e.csv",
        Mode::Append,
        &[("P9", "C12", ""), ("P11", "C7", "")],
    )
    .await;
    assert_eq!(accepted, 0, "{reasons:?}");
    assert_eq!(reasons.len(), 2);

    // A replacing load starts the table again: only its own keys count afterwards.
    assert_eq!(step("f.csv", Mode::Replace, &[("P1", "C1", "")]).await.0, 1);
    let (accepted, reasons) =
        step("g.csv", Mode::Append, &[("P2", "C2", ""), ("P1", "C5", "")]).await;
    assert_eq!(accepted, 1);
    says(&reasons, 0, "line 2 of f.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_without_the_required_columns_fails_and_leaves_no_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, catalog, _district) = setup(tmp.path()).await;
    let code = exit_entry_code(&catalog).await;
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "姓名,电话\n张三,13812341234\n").unwrap();
    let err = tongchou_exchange::ingest(
        &dir,
        &catalog,
        &tongchou_exchange::Load {
            resource: &code,
            file: &bad,
            mode: Mode::Append,
            read: &options(),
            actor: "test",
        },
        quiet(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("公民身份号码（person_id）"),
        "{err}"
    );
    assert!(
        tongchou_exchange::loads(&dir, &code)
            .await
            .unwrap()
            .is_empty()
    );
}
