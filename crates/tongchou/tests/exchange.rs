//! End-to-end: loading and exchanging data through the real binary — CLI and REST — and
//! what happens when a load is killed, races another, or fills the disk.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{
    add_user, agent, bearer, bin, ok_json, serve, token, tongchou, tongchou_ok, unit_code,
};
use serde_json::Value;

/// Generates the tiny district (seed 9) into `district`.
fn generate_tiny(district: &Path) {
    assert!(
        bin()
            .args(["sim", "generate", "--scale", "tiny", "--seed", "9", "--out"])
            .arg(district)
            .output()
            .unwrap()
            .status
            .success()
    );
}

/// A data directory with the tiny district's catalog registered but nothing loaded.
fn catalog_only(tmp: &Path) -> (PathBuf, PathBuf) {
    let data = tmp.join("data");
    let district = tmp.join("district");
    generate_tiny(&district);
    init_with_catalog(&data, &district);
    (data, district)
}

/// Initialises `data` and registers the district's catalog in it.
fn init_with_catalog(data: &Path, district: &Path) {
    assert!(tongchou(data, &["init"]).status.success());
    let out = tongchou(
        data,
        &[
            "catalog",
            "register",
            "--file",
            district.join("catalog.json").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn code_of(district: &Path, file_part: &str) -> (String, PathBuf) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(district.join("manifest.json")).unwrap()).unwrap();
    let e = manifest["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["file"].as_str().unwrap().contains(file_part))
        .unwrap()
        .clone();
    (
        e["resource_code"].as_str().unwrap().to_string(),
        district.join(e["file"].as_str().unwrap()),
    )
}

#[test]
fn cli_ingest_quarantine_subscribe_and_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, file) = code_of(&district, "户籍人口信息");
    let report = ok_json(&data, &["ingest", &code, file.to_str().unwrap(), "--json"]);
    assert_eq!(report["quarantined"], 0);
    assert_eq!(report["encoding"], "gbk");
    assert!(report["accepted"].as_u64().unwrap() > 1000 && report["version"].is_number());

    let (code, file) = code_of(&district, "婚姻登记信息");
    let report = ok_json(
        &data,
        &[
            "ingest",
            &code,
            file.to_str().unwrap(),
            "--sheet",
            "数据",
            "--json",
        ],
    );
    assert_eq!(report["header_row"], 2);
    let quarantined = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    let entries = quarantined.as_array().unwrap();
    assert_eq!(
        entries.len() as u64,
        report["quarantined"].as_u64().unwrap()
    );
    assert!(entries.iter().all(|e| e["line"].as_u64().unwrap() > 2
        && e["field"].as_str().unwrap().ends_with("_id")
        && e["reason"].as_str().unwrap().contains("citizen ID")));

    // Correct the quarantined rows and resubmit them.
    let fixed = tmp.path().join("fixed.csv");
    assert!(
        tongchou(
            &data,
            &[
                "quarantine",
                "export",
                &code,
                "--out",
                fixed.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
    tongchou_ok(
        &data,
        &[
            "ingest",
            &code,
            fixed.to_str().unwrap(),
            "--resubmit",
            "--json",
        ],
    );
    let still = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    assert_eq!(
        still.as_array().unwrap().len(),
        entries.len(),
        "uncorrected rows are quarantined again, under the new load"
    );

    // The providing unit's own analyst: what others may pull is governed query's to
    // decide, tested with grants in tongchou-query's deliver tests and in attacks.rs.
    let provider = ok_json(&data, &["catalog", "show", &code, "--json"])["unit"]
        .as_str()
        .unwrap()
        .to_string();
    add_user(
        &data,
        "hukou_analyst",
        &provider,
        "analyst",
        "a long enough password",
    );
    let refused = tongchou(
        &data,
        &[
            "exchange",
            "subscribe",
            &code,
            "--as",
            "hukou_analyst",
            "--purpose",
            "no_such_purpose",
        ],
    );
    assert!(!refused.status.success());
    let sub = ok_json(
        &data,
        &[
            "exchange",
            "subscribe",
            &code,
            "--as",
            "hukou_analyst",
            "--purpose",
            "subsidy_review",
            "--json",
        ],
    );
    let out_file = tmp.path().join("changes.csv");
    let pulled = ok_json(
        &data,
        &[
            "exchange",
            "pull",
            &sub["id"].to_string(),
            "--as",
            "hukou_analyst",
            "--out",
            out_file.to_str().unwrap(),
            "--format",
            "csv",
            "--json",
        ],
    );
    assert_eq!(pulled["rows"], report["accepted"]);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        text.lines().count() as u64,
        1 + report["accepted"].as_u64().unwrap()
    );
    assert!(text.lines().next().unwrap().contains("_change"));
    let volume = ok_json(&data, &["exchange", "volume", "--json"]);
    assert_eq!(volume[0]["records"], report["accepted"]);

    let out = tongchou(&data, &["ingest", &code, "/nonexistent/file.csv"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the table is unchanged"));
}

/// Issue 26, item 3: a quarantined row's line is its line in the file (title row, header
/// and blank lines counted), in a GBK export with Windows line endings.
#[test]
fn quarantined_rows_carry_their_line_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, export) = code_of(&district, "户籍人口信息");
    let text = encoding_rs::GB18030
        .decode(&std::fs::read(&export).unwrap())
        .0
        .into_owned();
    let mut rows: Vec<String> = text.lines().take(4).map(str::to_string).collect();
    rows[2].replace_range(..18, "110105194912310021");
    let lines = [
        "南海区户籍人口信息表,,,",
        &rows[0],
        &rows[1],
        "",
        &rows[2],
        &rows[3],
    ];
    let file = tmp.path().join("户籍人口信息.csv");
    std::fs::write(&file, encoding_rs::GB18030.encode(&lines.join("\r\n")).0).unwrap();

    let report = ok_json(&data, &["ingest", &code, file.to_str().unwrap(), "--json"]);
    assert_eq!(
        (
            report["header_row"].as_u64(),
            report["quarantined"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let entries = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    assert_eq!(entries[0]["line"], 5, "{entries}");
    let fixed = tmp.path().join("fixed.csv");
    tongchou_ok(
        &data,
        &[
            "quarantine",
            "export",
            &code,
            "--out",
            fixed.to_str().unwrap(),
        ],
    );
    let exported = std::fs::read_to_string(&fixed).unwrap();
    let row = exported.lines().nth(1).unwrap();
    assert!(row.ends_with(",5"), "{exported}");
}

/// A long load killed with SIGKILL at random moments leaves the table at the previous
/// version or at the new one, readable, never in between.
#[test]
fn kill_nine_mid_load_leaves_a_whole_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, _) = code_of(&district, "出入境记录");
    let big = tmp.path().join("big.csv");
    // Each load brings new record numbers (the key): a repeated one would be quarantined.
    let write_big = |load: u32| {
        let mut text = String::from(EXIT_HEADER);
        for i in 0..200_000 {
            text.push_str(&exit_row(&format!("K{load:02}{i:09}")));
        }
        std::fs::write(&big, text).unwrap();
    };
    write_big(0);
    let started = std::time::Instant::now();
    let first = ok_json(&data, &["ingest", &code, big.to_str().unwrap(), "--json"]);
    let load_time = started.elapsed();
    let per_load = first["accepted"].as_i64().unwrap();
    assert_eq!(per_load, 200_000);
    let mut seed = 0x5eed_u64;
    let (mut whole_before, mut whole_after) = (0, 0);
    for k in 0..20u32 {
        let before = ok_json(&data, &["exchange", "info", &code, "--json"])["rows"]
            .as_i64()
            .unwrap();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Kill points spread over the whole load, its commit and a little after, jittered.
        let jitter = 0.9 + ((seed >> 33) % 200) as f64 / 1000.0;
        let delay = load_time.mul_f64((0.05 + 1.25 * f64::from(k) / 20.0) * jitter);
        write_big(k + 1);
        let mut child = bin()
            .arg("--data-dir")
            .arg(&data)
            .args(["ingest", &code, big.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let after = ok_json(&data, &["exchange", "info", &code, "--json"])["rows"]
            .as_i64()
            .unwrap();
        assert!(
            after == before || after == before + per_load,
            "killed after {delay:?}: {before} → {after}"
        );
        if after == before {
            whole_before += 1
        } else {
            whole_after += 1
        }
    }
    eprintln!(
        "load {load_time:?}; kills that left the previous version: {whole_before}, the new one: {whole_after}"
    );
    assert!(
        whole_before > 0 && whole_after > 0,
        "the kill points did not span the load"
    );
    // Every version that landed is on record, and none that did not.
    let rows = ok_json(&data, &["exchange", "info", &code, "--json"])["rows"]
        .as_i64()
        .unwrap();
    let history = ok_json(&data, &["exchange", "history", &code, "--json"]);
    assert_eq!(history.as_array().unwrap().len() as i64, rows / per_load);
    // The table still takes loads.
    write_big(99);
    let report = ok_json(&data, &["ingest", &code, big.to_str().unwrap(), "--json"]);
    assert_eq!(report["accepted"], 200_000);
}

/// Loads of one resource run one after the other: the later checks its keys against the
/// version the earlier committed (the same file twice: every record number repeats).
#[test]
fn two_concurrent_loads_take_turns() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, file) = code_of(&district, "出入境记录");
    let spawn = || {
        bin()
            .arg("--data-dir")
            .arg(&data)
            .args(["ingest", &code, file.to_str().unwrap(), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut reports: Vec<Value> = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()]
        .iter()
        .map(|r| {
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            serde_json::from_slice(&r.stdout).unwrap()
        })
        .collect();
    reports.sort_by_key(|r| r["version"].as_i64());
    let accepted = reports[0]["accepted"].as_i64().unwrap();
    assert!(accepted > 0);
    assert_eq!(reports[1]["accepted"], 0);
    assert_eq!(reports[1]["by_rule"]["duplicate_key"], accepted);
    let rows = ok_json(&data, &["exchange", "info", &code, "--json"])["rows"]
        .as_i64()
        .unwrap();
    assert_eq!(rows, accepted);
    let history = ok_json(&data, &["exchange", "history", &code, "--json"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "every landed load is recorded"
    );
}

const EXIT_HEADER: &str =
    "记录编号,公民身份号码,姓名,出入境类型,出入境日期,口岸,前往地,证件类型,证件号码\n";

fn exit_row(record_no: &str) -> String {
    format!(
        "{record_no},11010519491231002X,张三,出境,2015-01-02,拱北口岸,澳门,往来港澳通行证,C{record_no}\n"
    )
}

/// An exit-entry file of these record numbers, one a line after the header.
fn exit_file(dir: &Path, name: &str, records: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let rows: String = records.iter().map(|r| exit_row(r)).collect();
    std::fs::write(&path, format!("{EXIT_HEADER}{rows}")).unwrap();
    path
}

/// Issue 26, item 2: a key (出入境记录's record number) holds across versions; by mode.
#[test]
fn an_appended_key_already_in_an_earlier_version_is_quarantined_naming_both_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, _) = code_of(&district, "出入境记录");
    let first = exit_file(tmp.path(), "first.csv", &["K1", "K2", "K3", "K4", "K5"]);
    let second = exit_file(tmp.path(), "second.csv", &["K6", "K2", "K7", "K4"]);
    let ingest = |file: &Path, mode: &str| {
        ok_json(
            &data,
            &[
                "ingest",
                &code,
                file.to_str().unwrap(),
                "--mode",
                mode,
                "--json",
            ],
        )
    };
    assert_eq!(ingest(&first, "append")["accepted"], 5);
    let report = ingest(&second, "append");
    assert_eq!(
        (report["accepted"].as_u64(), report["quarantined"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(report["by_rule"]["duplicate_key"], 2);
    let entries = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    let reasons: Vec<(u64, &str, &str)> = (entries.as_array().unwrap().iter())
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["rule"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{entries}");
    for ((line, rule, reason), key) in reasons.iter().zip(["K2", "K4"]) {
        assert_eq!(*rule, "duplicate_key");
        let earlier = format!(
            "key {key} is already in version 1, line {line} of first.csv; this is line {line}"
        );
        assert!(reason.contains(&earlier), "{reason}");
    }

    // An upsert of the same file replaces the rows of its keys.
    let report = ingest(&second, "upsert");
    assert_eq!(
        (report["accepted"].as_u64(), report["rows"].as_u64()),
        (Some(4), Some(7))
    );

    // After a replacing load only its keys count.
    let only_k1 = exit_file(tmp.path(), "only-k1.csv", &["K1"]);
    assert_eq!(ingest(&only_k1, "replace")["rows"], 1);
    assert_eq!(ingest(&second, "append")["accepted"], 4);
    let report = ingest(&first, "append");
    assert_eq!(
        report["by_rule"]["duplicate_key"], 3,
        "K1, K2, K4: {report}"
    );

    // A damaged index is not trusted: rebuilt from the table, it still knows every key.
    let index = data
        .join("tables")
        .join(code.replace('/', "_"))
        .join("_keys");
    std::fs::write(index.join("current"), b"{").unwrap();
    let report = ingest(&first, "append");
    assert_eq!(
        (
            report["accepted"].as_u64(),
            report["by_rule"]["duplicate_key"].as_u64()
        ),
        (Some(0), Some(5))
    );
    let entries = ok_json(&data, &["quarantine", "list", &code, "--json"]);
    let last = entries.as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.contains("key K5 is already in version 6 (its line is not known"),
        "{last}"
    );
}

/// The data directory on a small tmpfs: a load that fills it fails cleanly and the table
/// stays readable at its previous version.
#[test]
fn a_full_disk_fails_the_load_and_keeps_the_table() {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let district = tmp.path().join("district");
    generate_tiny(&district);
    let mount = tmp.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap()
            .success()
    );
    let data = mount.join("data");
    let result = std::panic::catch_unwind(|| {
        init_with_catalog(&data, &district);
        let (code, file) = code_of(&district, "出入境记录");
        let small = ok_json(&data, &["ingest", &code, file.to_str().unwrap(), "--json"]);
        let big = tmp.path().join("big.csv");
        let mut text = String::from(
            "记录编号,公民身份号码,姓名,出入境类型,出入境日期,口岸,前往地,证件类型,证件号码\n",
        );
        let mut x = 1u64;
        for i in 0..400_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            text.push_str(&format!("R{i:09}{x:016x},11010519491231002X,张{x:x},出境,2015-01-02,拱北口岸,澳门,往来港澳通行证,C{:016x}\n", x.rotate_left(17)));
        }
        std::fs::write(&big, text).unwrap();
        let out = tongchou(&data, &["ingest", &code, big.to_str().unwrap()]);
        assert!(
            !out.status.success(),
            "a load larger than the disk cannot succeed"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the table is unchanged"), "{err}");
        let info = ok_json(&data, &["exchange", "info", &code, "--json"]);
        assert_eq!(info["rows"], small["accepted"]);
        assert_eq!(info["version"], small["version"]);
    });
    Command::new("umount").arg(&mount).status().unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn rest_upload_and_streamed_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, district) = catalog_only(tmp.path());
    let (code, file) = code_of(&district, "出入境记录");
    add_user(
        &data,
        "ee_steward",
        &unit_code(&data, "exit_entry"),
        "steward",
        "a long enough password",
    );
    add_user(
        &data,
        "pro_analyst",
        &unit_code(&data, "procuratorate"),
        "analyst",
        "a long enough password",
    );
    let steward = bearer(&token(&data, "ee_steward", "read,write,query"));
    let analyst = bearer(&token(&data, "pro_analyst", "read,query,write"));
    let (_server, base) = serve(&data);
    let http = agent();
    let boundary = "tongchou-boundary-7d1";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"出入境记录.csv\"\r\nContent-Type: text/csv\r\n\r\n").into_bytes();
    body.extend(std::fs::read(&file).unwrap());
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let url = format!(
        "{base}/api/exchange/ingest?resource={}",
        code.replace('/', "%2F")
    );
    let refused = http
        .post(&url)
        .header("authorization", &analyst)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&b"--x--"[..])
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403, "only the provider loads");
    let mut r = http
        .post(&url)
        .header("authorization", &steward)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..])
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert!(report["accepted"].as_u64().unwrap() > 100);
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert_eq!(
        report["rows_read"].as_u64().unwrap(),
        lines - report["header_row"].as_u64().unwrap(),
        "every row of the upload is read, none cut off: {report}"
    );
    let mut r = http
        .get(format!(
            "{base}/api/exchange/quarantine?resource={}",
            code.replace('/', "%2F")
        ))
        .header("authorization", &steward)
        .call()
        .unwrap();
    let q: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        q.as_array().unwrap().len() as u64,
        report["quarantined"].as_u64().unwrap()
    );

    // Another unit without a grant is refused; the providing unit's steward subscribes.
    let subscribe = |auth: &str| {
        let mut r = http
            .post(format!("{base}/api/exchange/subscriptions"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .send(
                serde_json::json!({"resource": code, "purpose": "procuratorial_supervision"})
                    .to_string(),
            )
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, text) = subscribe(&analyst);
    assert_eq!(status, 403, "{text}");
    let (status, text) = subscribe(&steward);
    assert_eq!(status, 200, "{text}");
    let sub: Value = serde_json::from_str(&text).unwrap();
    let mut r = http
        .get(format!(
            "{base}/api/exchange/pull?subscription={}&format=json",
            sub["id"]
        ))
        .header("authorization", &steward)
        .call()
        .unwrap();
    assert_eq!(
        r.headers()
            .get("x-tongchou-rows")
            .unwrap()
            .to_str()
            .unwrap(),
        report["accepted"].to_string()
    );
    let lines = r.body_mut().read_to_string().unwrap();
    assert_eq!(
        lines.lines().count() as u64,
        report["accepted"].as_u64().unwrap()
    );
    // A bad parameter is refused before the upload is read; a small body, so that the
    // early answer does not race the client still sending.
    let small = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\r\na,b\r\n--{boundary}--\r\n"
    );
    let bad = http
        .post(format!(
            "{base}/api/exchange/ingest?resource={}&mode=sideways",
            code.replace('/', "%2F")
        ))
        .header("authorization", &steward)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .send(small.as_bytes())
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}
