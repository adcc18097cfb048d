//! `tongchou-bench exchange [ROWS]`: ingest of a department-style CSV (12 columns, UTF-8 and
//! its GBK twin) by the release `tongchou` binary, beside DuckDB's CSV → Parquet COPY of
//! the same file (GBK: iconv to UTF-8, then the same COPY); then a pull of 1 M changed rows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const HEADER: &str = "记录编号,公民身份号码,姓名,性别,出生日期,手机号码,住址,统一社会信用代码,单位名称,金额,登记日期,状态\n";

fn resource(unit: &str, name: &str) -> serde_json::Value {
    serde_json::json!({"unit": unit, "name": name, "share_type": "unconditional", "open_type": "none", "update_cycle": "daily",
        "fields": [
            {"name": "record_no", "label": "记录编号", "type": "string", "unique": true},
            {"name": "person_id", "label": "公民身份号码", "type": "string", "role": "person_id", "required": true},
            {"name": "name", "label": "姓名", "type": "string", "role": "person_name"},
            {"name": "gender", "label": "性别", "type": "string", "allowed_values": ["男", "女"]},
            {"name": "birth_date", "label": "出生日期", "type": "date"},
            {"name": "mobile", "label": "手机号码", "type": "string", "role": "phone"},
            {"name": "address", "label": "住址", "type": "string", "role": "address"},
            {"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id"},
            {"name": "employer", "label": "单位名称", "type": "string"},
            {"name": "amount", "label": "金额", "type": "decimal"},
            {"name": "registered_on", "label": "登记日期", "type": "date"},
            {"name": "status", "label": "状态", "type": "string", "allowed_values": ["有效", "注销"]}]})
}

/// Writes `rows` rows of the 12-column export, about 240 bytes a row in UTF-8.
fn write_csv(path: &Path, rows: u64) -> Result<()> {
    let ids: Vec<String> = (0..997)
        .map(|i| {
            tongchou_ids::citizen_id::build(440605, 1950 + i % 50, 1 + i % 12, 1 + i % 28, i % 1000)
        })
        .collect();
    let codes: Vec<String> = (0..991)
        .map(|i| {
            tongchou_ids::credit_code::build(
                "91",
                440605,
                format!("{:08}", 10_000_000 + i * 7919)
                    .as_bytes()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    let surnames = ["陈", "梁", "黄", "李", "何", "张", "罗", "林"];
    let given = ["伟明", "丽芳", "志强", "秀英", "嘉乐", "晓彤", "国华", "静"];
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    out.write_all(HEADER.as_bytes())?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % 997) as usize;
        writeln!(
            out,
            "JL{n:011},{},{}{},{},{}-{:02}-{:02},13{:09},佛山市南海区桂城街道南海大道北{}号{}座,{},佛山市南海区宏达五金制品有限公司第{}分公司,{}.{:02},2015/{}/{},{}",
            ids[i],
            surnames[(x >> 8) as usize % 8],
            given[(x >> 12) as usize % 8],
            if (x >> 20).is_multiple_of(2) {
                "男"
            } else {
                "女"
            },
            1950 + (x >> 24) % 50,
            1 + (x >> 30) % 12,
            1 + (x >> 34) % 28,
            (x >> 3) % 1_000_000_000,
            (x >> 40) % 500,
            (x >> 44) % 30,
            codes[(x % 991) as usize],
            (x >> 50) % 90,
            (x >> 16) % 100_000,
            (x >> 36) % 100,
            1 + (x >> 38) % 12,
            1 + (x >> 42) % 28,
            if (x >> 46).is_multiple_of(10) {
                "注销"
            } else {
                "有效"
            },
        )?;
    }
    out.flush()?;
    Ok(())
}

fn gbk_twin(utf8: &Path, gbk: &Path) -> Result<()> {
    let mut reader = std::io::BufReader::with_capacity(1 << 22, std::fs::File::open(utf8)?);
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(gbk)?);
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut reader, &mut line)? > 0 {
        out.write_all(&encoding_rs::GBK.encode(&line).0)?;
        line.clear();
    }
    out.flush()?;
    Ok(())
}

/// Runs a command under GNU time: (seconds, peak RSS in MiB, stdout).
fn timed(command: Command) -> Result<(f64, f64, String)> {
    let started = Instant::now();
    let program = command.get_program().to_owned();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped.arg("-v").arg(&program).args(command.get_args());
    let out = wrapped
        .output()
        .with_context(|| format!("run {program:?} under /usr/bin/time"))?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{program:?} failed: {stderr}");
    }
    let rss = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    Ok((
        seconds,
        rss,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn tongchou_bin() -> Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("tongchou");
    if !bin.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release`",
            bin.display()
        );
    }
    Ok(bin)
}

/// Runs `tongchou` on `data` with `env` set: its standard output.
fn tongchou(bin: &Path, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    if !out.status.success() {
        bail!(
            "tongchou {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn duckdb_copy(csv: &Path, parquet: &Path) -> Command {
    let mut c = Command::new("python3");
    c.arg("-c").arg(format!(
        "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_csv('{}')) TO '{}' (FORMAT parquet)\")",
        csv.display(),
        parquet.display()
    ));
    c
}

pub fn run(rows: u64, work: &Path) -> Result<()> {
    let bin = tongchou_bin()?;
    std::fs::create_dir_all(work)?;
    let (utf8, gbk) = (work.join("export-utf8.csv"), work.join("export-gbk.csv"));
    let t = Instant::now();
    // Generated files are kept, with their row count, for the next run.
    let generated = work.join("generated-rows");
    if std::fs::read_to_string(&generated).ok() != Some(rows.to_string()) {
        write_csv(&utf8, rows)?;
        gbk_twin(&utf8, &gbk)?;
        std::fs::write(&generated, rows.to_string())?;
    }
    println!(
        "generated {rows} rows: UTF-8 {:.2} GB, GBK {:.2} GB in {:.0} s",
        std::fs::metadata(&utf8)?.len() as f64 / 1e9,
        std::fs::metadata(&gbk)?.len() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let data = work.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let tc = |args: &[&str]| tongchou(&bin, &data, args, &[]);
    tc(&["init"])?;
    let register = |file: &Path| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&tc(&[
            "catalog",
            "register",
            "--file",
            file.to_str().unwrap(),
            "--json",
        ])?)?)
    };
    let units = tongchou_sim::units();
    let catalog = work.join("catalog.json");
    std::fs::write(&catalog, serde_json::json!({"units": units, "resources": [resource(&units[11].code, "从业人员登记（UTF-8）"), resource(&units[11].code, "从业人员登记（GBK）")]}).to_string())?;
    let registered = register(&catalog)?;
    let codes: Vec<String> = registered["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    for (label, file, code) in [("UTF-8", &utf8, &codes[0]), ("GBK", &gbk, &codes[1])] {
        let mut ingest = Command::new(&bin);
        ingest
            .arg("--data-dir")
            .arg(&data)
            .args(["ingest", code])
            .arg(file)
            .arg("--json");
        let (ours, rss, out) = timed(ingest)?;
        let report: serde_json::Value = serde_json::from_str(&out)?;
        let parquet = work.join("duckdb.parquet");
        let (duck, duck_rss) = if label == "GBK" {
            let converted = work.join("iconv-utf8.csv");
            let started = Instant::now();
            let status = Command::new("iconv")
                .args(["-f", "GBK", "-t", "UTF-8", "-o"])
                .arg(&converted)
                .arg(file)
                .status()?;
            if !status.success() {
                bail!("iconv failed");
            }
            let (copy, rss, _) = timed(duckdb_copy(&converted, &parquet))?;
            let _ = std::fs::remove_file(&converted);
            (started.elapsed().as_secs_f64().max(copy), rss)
        } else {
            let (copy, rss, _) = timed(duckdb_copy(file, &parquet))?;
            (copy, rss)
        };
        let _ = std::fs::remove_file(&parquet);
        println!(
            "{label}: tongchou ingest {:.1} s ({} accepted, {} quarantined, peak RSS {rss:.0} MiB); DuckDB COPY {duck:.1} s (peak RSS {duck_rss:.0} MiB); ratio {:.2}",
            ours,
            report["accepted"],
            report["quarantined"],
            ours / duck
        );
    }

    // A consumer pulls 1 M changed rows.
    let million = work.join("million.csv");
    write_csv(&million, 1_000_000)?;
    std::fs::write(
        &catalog,
        serde_json::json!([resource(&units[11].code, "从业人员变更")]).to_string(),
    )?;
    let registered = register(&catalog)?;
    let code = registered["code"].as_str().unwrap().to_string();
    tc(&["ingest", &code, million.to_str().unwrap()])?;
    // The providing unit's analyst subscribes: the pull is a governed statement (owner's
    // basis: every field, no mask), its subjects traced.
    let mut add = Command::new(&bin)
        .arg("--data-dir")
        .arg(&data)
        .args([
            "user",
            "add",
            "bench_analyst",
            "--unit",
            &units[11].code,
            "--role",
            "analyst",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(
        &mut add.stdin.take().expect("piped"),
        b"a long enough password\n",
    )?;
    if !add.wait()?.success() {
        bail!("tongchou user add failed");
    }
    let sub: serde_json::Value = serde_json::from_str(&tc(&[
        "exchange",
        "subscribe",
        &code,
        "--as",
        "bench_analyst",
        "--purpose",
        "subsidy_review",
        "--json",
    ])?)?;
    let out = work.join("pull-sub.parquet");
    let started = Instant::now();
    let pulled: serde_json::Value = serde_json::from_str(&tc(&[
        "exchange",
        "pull",
        &sub["id"].to_string(),
        "--as",
        "bench_analyst",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ])?)?;
    println!(
        "subscription pull of {} changed rows as parquet: {:.2} s (target < 5 s)",
        pulled["rows"],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes a two-column file (record number, amount), one row per key.
fn write_keyed(path: &Path, rows: impl Iterator<Item = String>) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?);
    out.write_all("记录编号,金额\n".as_bytes())?;
    for (i, key) in rows.enumerate() {
        writeln!(out, "{key},{}", i % 10_000)?;
    }
    out.flush()?;
    Ok(())
}

fn base_key(n: u64) -> String {
    format!("B{n:010}")
}

/// `tongchou-bench keys [ROWS] [WORK_DIR]`: an append of 100,000 new keys to a table of
/// `rows` keyed rows, beside the same append to a twin resource that declares no key (no
/// key work at all: the cost before the key index, and then some), each from the same copy
/// of the data directory; then an append where 1,000 of the 100,000 keys are already in
/// the table.
pub fn keys(rows: u64, work: &Path) -> Result<()> {
    let bin = tongchou_bin()?;
    std::fs::create_dir_all(work)?;
    let (base, fresh, colliding) = (
        work.join("base.csv"),
        work.join("fresh.csv"),
        work.join("colliding.csv"),
    );
    write_keyed(&base, (0..rows).map(base_key))?;
    write_keyed(&fresh, (0..100_000).map(|n| format!("N{n:010}")))?;
    let step = (rows / 1_000).max(1);
    let repeated = (0..1_000).map(|n| base_key(n * step % rows));
    write_keyed(
        &colliding,
        (0..99_000).map(|n| format!("C{n:010}")).chain(repeated),
    )?;
    let (data, copy) = (work.join("data"), work.join("data-base"));
    let _ = std::fs::remove_dir_all(&data);
    let tc = |args: &[&str]| tongchou(&bin, &data, args, &[]);
    tc(&["init"])?;
    let units = tongchou_sim::units();
    let fields = serde_json::json!([{"name": "record_no", "label": "记录编号", "type": "string", "required": true},
                   {"name": "amount", "label": "金额", "type": "integer"}]);
    let resource = |name: &str, key: &[&str]| {
        serde_json::json!({"unit": units[11].code, "name": name, "share_type": "unconditional", "open_type": "none", "update_cycle": "daily",
        "key": key, "fields": fields})
    };
    let resource = serde_json::json!([
        resource("键值登记", &["record_no"]),
        resource("无键登记", &[])
    ]);
    let catalog = work.join("keys-catalog.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"units": units, "resources": resource}).to_string(),
    )?;
    let registered: serde_json::Value = serde_json::from_str(&tc(&[
        "catalog",
        "register",
        "--file",
        catalog.to_str().unwrap(),
        "--json",
    ])?)?;
    let code = registered["codes"][0].as_str().unwrap().to_string();
    let keyless = registered["codes"][1].as_str().unwrap().to_string();
    tc(&["ingest", &keyless, base.to_str().unwrap()])?;
    let started = Instant::now();
    tc(&["ingest", &code, base.to_str().unwrap()])?;
    println!(
        "base load of {rows} keyed rows (key index written): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let index: u64 = std::fs::read_dir(
        data.join("tables")
            .join(code.replace('/', "_"))
            .join("_keys"),
    )?
    .flatten()
    .filter_map(|f| f.metadata().ok())
    .map(|m| m.len())
    .sum();
    println!("key index: {:.0} MB", index as f64 / 1e6);
    copy_dir(&data, &copy)?;
    let append = |code: &str, file: &Path| -> Result<(f64, serde_json::Value)> {
        std::fs::remove_dir_all(&data)?;
        copy_dir(&copy, &data)?;
        let started = Instant::now();
        let out = tc(&["ingest", code, file.to_str().unwrap(), "--json"])?;
        Ok((started.elapsed().as_secs_f64(), serde_json::from_str(&out)?))
    };
    let (mut with, mut without, mut colliding_times) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        with.push(append(&code, &fresh)?.0);
        without.push(append(&keyless, &fresh)?.0);
        let (t, report) = append(&code, &colliding)?;
        if report["by_rule"]["duplicate_key"] != 1_000 {
            bail!("expected 1,000 duplicate keys: {report}");
        }
        colliding_times.push(t);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on, off, collide) = (
        median(&mut with),
        median(&mut without),
        median(&mut colliding_times),
    );
    println!(
        "append of 100,000 new keys to {rows} rows, median of 7: keyed (key index) {on:.3} s, the keyless twin {off:.3} s: ratio {:.2} (target ≤ 1.3)",
        on / off
    );
    println!(
        "append of 100,000 keys of which 1,000 are in the table: {collide:.3} s (1,000 quarantined, duplicate_key)"
    );
    for path in [&data, &copy] {
        std::fs::remove_dir_all(path)?;
    }
    for path in [&base, &fresh, &colliding, &catalog] {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()?;
    if !status.success() {
        bail!("cp {} {} failed", from.display(), to.display());
    }
    Ok(())
}
