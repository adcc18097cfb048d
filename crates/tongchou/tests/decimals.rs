//! End-to-end: money is exact. A resource with 欠费金额 decimal(18,2) is loaded from a
//! CSV through the real binary; its sum leaves every door — CLI CSV and JSON, and the
//! PostgreSQL wire as NUMERIC — as exact decimal text, and a value wider than the field
//! is quarantined with the field, the value and the allowed precision.

mod common;

use std::path::Path;

use common::{add_user, ok_json, tongchou_ok};
use serde_json::{Value, json};

const STEWARD: &str = "arrears_steward";
const PASSWORD: &str = "Qiankuan-Mingxi-2026";
const PURPOSE: &str = "subsidy_review";

/// A data directory with 欠费明细 registered and loaded; its code and table name.
fn arrears_loaded(tmp: &Path) -> (std::path::PathBuf, String, String) {
    let data = tmp.join("data");
    tongchou_ok(&data, &["init"]);
    let unit = tongchou_sim::units()[13].clone();
    let catalog = json!({"units": [unit], "resources": [{
        "unit": unit.code, "name": "欠费明细", "share_type": "unconditional", "open_type": "none",
        "update_cycle": "monthly",
        "fields": [{"name": "payer", "label": "缴费人", "type": "string"},
                   {"name": "amount", "label": "欠费金额", "type": "decimal", "precision": 18, "scale": 2}]}]});
    let file = tmp.join("catalog.json");
    std::fs::write(&file, catalog.to_string()).unwrap();
    let code = common::register(&data, &file);
    add_user(&data, STEWARD, &unit.code, "steward", PASSWORD);
    // Ten times 0.10 is where a floating-point sum shows its binary noise.
    let mut rows = String::from("缴费人,欠费金额\n甲,\"1,234.50\"\n乙,0.20\n");
    rows += &"丙,0.10\n".repeat(10);
    rows += "丁,12345678901234567.89\n戊,0.125\n";
    let csv = tmp.join("arrears.csv");
    std::fs::write(&csv, rows).unwrap();
    let report = ok_json(&data, &["ingest", &code, csv.to_str().unwrap(), "--json"]);
    assert_eq!(
        (report["accepted"].as_u64(), report["quarantined"].as_u64()),
        (Some(12), Some(2))
    );
    let table = format!("\"{}\".\"欠费明细\"", unit.name);
    (data, code, table)
}

fn query(data: &Path, format: &str, sql: &str) -> String {
    let args = [
        "query",
        "--as",
        STEWARD,
        "--purpose",
        PURPOSE,
        "--format",
        format,
        sql,
    ];
    String::from_utf8(tongchou_ok(data, &args).stdout).unwrap()
}

#[test]
fn sums_of_money_are_exact_at_every_door_and_too_wide_values_are_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, code, table) = arrears_loaded(tmp.path());

    let sum = format!("SELECT sum(amount) AS total FROM {table}");
    assert_eq!(query(&data, "csv", &sum), "total\n1235.70\n");
    let both = format!("SELECT sum(amount) AS total, max(amount) AS most FROM {table}");
    let json = query(&data, "json", &both);
    assert_eq!(json, "[{\"total\":1235.70,\"most\":1234.50}]\n");

    let quarantined = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    let entries = quarantined.as_array().unwrap();
    let said: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap(),
                e["rule"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(said.len(), 2, "{quarantined}");
    assert!(
        said.iter()
            .all(|(field, rule, _)| (*field, *rule) == ("amount", "precision"))
    );
    for (value, (_, _, reason)) in ["12345678901234567.89", "0.125"].iter().zip(&said) {
        assert!(
            reason.contains(value) && reason.contains("decimal(18,2)"),
            "{reason}"
        );
    }
    assert_eq!(entries[0]["values"]["欠费金额"], "12345678901234567.89");

    over_the_postgresql_wire(&data, &sum);
}

/// psycopg reads a NUMERIC column (type 1700) as Python's exact `Decimal`.
fn over_the_postgresql_wire(data: &Path, sum: &str) {
    let (_server, _, port) = common::serve_pg(data, &common::agent());
    let script = r#"
import json, sys
import psycopg
port, user, password, purpose, sql = sys.argv[1:]
with psycopg.connect(host="127.0.0.1", port=int(port), user=user, password=password, dbname=purpose) as conn:
    cur = conn.execute(sql)
    total = cur.fetchone()[0]
    print(json.dumps({"type": cur.description[0].type_code, "python": type(total).__name__, "total": str(total)}))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &port.to_string(),
            STEWARD,
            PASSWORD,
            PURPOSE,
            sum,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "psycopg (installed by .ci/run): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        json!({"type": 1700, "python": "Decimal", "total": "1235.70"})
    );
}
