//! End-to-end tests of the audit ledger through the real binary and server: every front
//! door leaves entries, people can see who used their data, proofs check without the data
//! directory, tampering is named, and a ledger that cannot be written stops the statement.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{agent, bearer, ok_json, serve, tiny_demo, token, tongchou, tongchou_ok};
use serde_json::{Value, json};

const EXIT_ENTRY: &str = "308001003/000003";

fn get(http: &ureq::Agent, url: &str, auth: &str) -> (u16, Value) {
    let mut r = http.get(url).header("Authorization", auth).call().unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Subscribes the procuratorate to the exit-entry records; returns the subscription.
fn subscribe(http: &ureq::Agent, base: &str, analyst: &str) -> i64 {
    let mut r = http
        .post(format!("{base}/api/exchange/subscriptions"))
        .header("Authorization", analyst)
        .header("Content-Type", "application/json")
        .send(json!({"resource": EXIT_ENTRY, "purpose": "procuratorial_supervision"}).to_string())
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// Pulls a subscription's changes as JSON lines.
fn pull(http: &ureq::Agent, base: &str, analyst: &str, subscription: i64) -> (u16, Vec<Value>) {
    let mut r = http
        .get(format!(
            "{base}/api/exchange/pull?subscription={subscription}&format=json"
        ))
        .header("Authorization", analyst)
        .call()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    let rows = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (status, rows)
}

fn pull_exit_entries(http: &ureq::Agent, base: &str, analyst: &str) -> (u16, Vec<Value>) {
    let subscription = subscribe(http, base, analyst);
    pull(http, base, analyst, subscription)
}

/// A raw ID of someone who went to Macau, read by the providing unit's steward.
fn macau_traveller(data: &Path) -> String {
    let rows = ok_json(
        data,
        &[
            "query",
            "--as",
            "exit_entry_steward",
            "--purpose",
            "procuratorial_supervision",
            "--format",
            "json",
            "SELECT person_id FROM \"佛山市公安局南海分局出入境管理大队\".\"出入境记录\" WHERE destination = '澳门' ORDER BY person_id LIMIT 1",
        ],
    );
    rows[0]["person_id"].as_str().unwrap().to_string()
}

fn tail(data: &Path, n: u64) -> Vec<Value> {
    ok_json(data, &["ledger", "tail", "--json", "-n", &n.to_string()])
        .as_array()
        .unwrap()
        .clone()
}

fn verify(data: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["ledger", "verify"];
    args.extend_from_slice(extra);
    tongchou(data, &args)
}

#[test]
fn front_doors_are_recorded_subjects_answer_and_proofs_check_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    // Index the people of results up to this size (the default is 1,000 rows).
    std::fs::write(data.join("config/ledger.toml"), "subject_rows = 100000\n").unwrap();
    let analyst = bearer(&token(&data, "procuratorate_analyst", "read,query"));
    let admin = bearer(&token(&data, "admin", "read,admin"));
    let (_server, base) = serve(&data);
    let http = agent();

    let (status, rows) = pull_exit_entries(&http, &base, &analyst);
    assert_eq!(status, 200);
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["destination"] == "澳门"),
        "the pull keeps the grant's row filter"
    );
    // The pull shows IDs masked; the providing unit knows whom it delivered (it reads the
    // raw rows: that read is its own entry).
    let person = macau_traveller(&data);
    assert!(rows.iter().all(|r| r["person_id"] != person.as_str()));
    // A denied attempt: the quarantine of a resource the procuratorate does not provide.
    let (status, _) = get(
        &http,
        &format!("{base}/api/exchange/quarantine?resource={EXIT_ENTRY}"),
        &analyst,
    );
    assert_eq!(status, 403);
    // And a command line.
    ok_json(&data, &["catalog", "search", "出入境", "--json"]);

    let entries = tail(&data, 30);
    let pull = entries
        .iter()
        .find(|e| e["kind"] == "pull")
        .expect("the pull is in the ledger");
    assert_eq!(pull["front_door"], "rest");
    assert_eq!(pull["user"], "procuratorate_analyst");
    assert_eq!(pull["purpose"], "procuratorial_supervision");
    assert_eq!(pull["resources"], json!([EXIT_ENTRY]));
    assert_eq!(pull["rows"], rows.len());
    assert!(
        pull["result_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        pull["fields"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{EXIT_ENTRY}:person_id")))
    );
    assert!(pull["masks"][format!("{EXIT_ENTRY}:person_id")].is_string());
    assert_eq!(pull["row_filters"][EXIT_ENTRY], "destination = '澳门'");
    let denied = entries
        .iter()
        .find(|e| e["kind"] == "download" && e["outcome"] == "denied")
        .expect("the denied attempt is in the ledger");
    assert!(denied["reason"].as_str().is_some());
    assert!(
        entries
            .iter()
            .any(|e| e["front_door"] == "cli" && e["kind"] == "catalog")
    );
    // Who looked at this person: the CLI and the bureau over REST agree.
    let seen = ok_json(&data, &["ledger", "subject", &person, "--json"]);
    let pulls = |seen: &Value| -> Vec<Value> {
        seen.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "pull")
            .cloned()
            .collect()
    };
    let seen = pulls(&seen);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["user"], "procuratorate_analyst");
    assert_eq!(seen[0]["purpose"], "procuratorial_supervision");
    assert!(seen[0]["unit"].is_string() && seen[0]["time"].is_string());
    let url = format!("{base}/api/ledger/subject?id={person}");
    let (status, over_rest) = get(&http, &url, &admin);
    assert_eq!(status, 200);
    assert_eq!(pulls(&over_rest), seen);
    assert_eq!(
        get(&http, &url, &analyst).0,
        403,
        "only the bureau looks people up"
    );
    let nobody = ok_json(
        &data,
        &["ledger", "subject", "440605199001011234", "--json"],
    );
    assert_eq!(nobody, json!([]));

    let everything = serde_json::to_string(&tail(&data, 10_000)).unwrap();
    assert!(
        !everything.contains(&person),
        "no ID is written in clear in the ledger, lookups included"
    );

    // A proof of the pull's entry checks in another directory, without the data.
    let seq = pull["seq"].as_u64().unwrap().to_string();
    let proof = tmp.path().join("proof.json");
    tongchou_ok(
        &data,
        &["ledger", "prove", &seq, "--out", proof.to_str().unwrap()],
    );
    let key = String::from_utf8(tongchou(&data, &["ledger", "key"]).stdout).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let check = |file: &Path| {
        common::bin()
            .current_dir(elsewhere.path())
            .env("TONGCHOU_DATA", elsewhere.path().join("nothing-here"))
            .args([
                "ledger",
                "check-proof",
                file.to_str().unwrap(),
                "--key",
                key.trim(),
            ])
            .output()
            .unwrap()
    };
    let checked = check(&proof);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    forged["entry"] = json!(
        forged["entry"]
            .as_str()
            .unwrap()
            .replace("procuratorate_analyst", "someone_else")
    );
    let forged_path = tmp.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    assert!(!check(&forged_path).status.success());

    // Today's ledger extends the checkpoint someone kept earlier.
    let (status, cp) = get(&http, &format!("{base}/api/ledger/checkpoint"), &analyst);
    assert_eq!(status, 200);
    let kept = tmp.path().join("kept.note");
    std::fs::write(&kept, cp["checkpoint"].as_str().unwrap()).unwrap();
    pull_exit_entries(&http, &base, &analyst);
    let consistency = tmp.path().join("consistency.json");
    tongchou_ok(
        &data,
        &[
            "ledger",
            "consistency",
            kept.to_str().unwrap(),
            "--out",
            consistency.to_str().unwrap(),
        ],
    );
    assert!(check(&consistency).status.success());

    // An inspector's export of today's entries checks too.
    let export = tmp.path().join("export.json");
    tongchou_ok(
        &data,
        &["ledger", "export", "--out", export.to_str().unwrap()],
    );
    assert!(check(&export).status.success());

    // The bureau's views: use by unit and purpose, denied attempts.
    let usage = ok_json(&data, &["ledger", "usage", "--json"]);
    assert!(
        usage.as_array().unwrap().iter().any(
            |u| u["purpose"] == "procuratorial_supervision" && u["entries"].as_i64() >= Some(1)
        )
    );
    let denied = Value::Array(common::ledger_search(&data, &["--outcome", "denied"]));
    assert!(
        denied
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "download")
    );

    let out = verify(&data, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn segment(data: &Path) -> PathBuf {
    data.join("ledger/segments/00000000000000000000.seg")
}

#[test]
fn verify_names_a_changed_entry_and_a_rebuilt_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    assert!(verify(&data, &[]).status.success());
    let original = std::fs::read(segment(&data)).unwrap();

    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(segment(&data), &bytes).unwrap();
    let out = verify(&data, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("first at entry "), "{said}");

    // Someone replaces the whole ledger with one made elsewhere, under another key.
    std::fs::write(segment(&data), &original).unwrap();
    assert!(verify(&data, &[]).status.success());
    let other = tiny_demo(&tmp.path().join("other"));
    std::fs::remove_dir_all(data.join("ledger")).unwrap();
    copy_dir(&other.join("ledger"), &data.join("ledger"));
    let out = verify(&data, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not the log that was started here"), "{said}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), target).unwrap();
        }
    }
}

#[test]
fn a_crash_mid_append_is_set_aside_and_the_ledger_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let before = tail(&data, 1)[0]["seq"].as_u64().unwrap();
    // Half of a record written when the power went.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(segment(&data))
        .unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{']).unwrap();
    drop(file);
    assert!(
        !verify(&data, &[]).status.success(),
        "verify shows the torn tail"
    );
    // The next process to write sets the bytes aside and says so in the ledger.
    ok_json(&data, &["catalog", "search", "出入境", "--json"]);
    let out = verify(&data, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = tail(&data, 5);
    let repaired = entries
        .iter()
        .find(|e| e["kind"] == "ledger_repaired")
        .expect("the repair is recorded");
    assert_eq!(
        repaired["seq"].as_u64().unwrap(),
        before + 1,
        "nothing acknowledged was lost"
    );
    assert_eq!(
        std::fs::read_dir(data.join("ledger/torn")).unwrap().count(),
        1
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The ledger on a small tmpfs that fills up: the statement fails with a clear error and
/// no data leaves; once there is room again, everything verifies.
#[test]
fn a_full_ledger_disk_fails_the_statement() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let analyst = bearer(&token(&data, "procuratorate_analyst", "read,query"));
    let mount = tmp.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap()
            .success()
    );
    let result = std::panic::catch_unwind(|| {
        copy_dir(&data.join("ledger"), &mount.join("ledger"));
        std::fs::remove_dir_all(data.join("ledger")).unwrap();
        std::os::unix::fs::symlink(mount.join("ledger"), data.join("ledger")).unwrap();
        let (_server, base) = serve(&data);
        let http = agent();
        let subscription = subscribe(&http, &base, &analyst);
        // Fill the disk.
        let filler = mount.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut file, &block).is_ok() {}
        while std::io::Write::write_all(&mut file, &[0u8]).is_ok() {}
        drop(file);
        // The ledger's files may still have room in their last pages: use it up.
        let mut said = String::new();
        for _ in 0..200 {
            let out = tongchou(&data, &["catalog", "search", "出入境"]);
            if !out.status.success() {
                said = String::from_utf8_lossy(&out.stderr).into_owned();
                break;
            }
        }
        assert!(
            said.contains("audit ledger"),
            "a command fails, saying why: {said}"
        );
        let (status, rows) = pull(&http, &base, &analyst, subscription);
        assert_eq!(status, 503, "the pull is refused when it cannot be traced");
        assert_eq!(rows.len(), 1, "one error object, no rows");
        let why = rows[0]["error"].as_str().unwrap();
        assert!(why.contains("audit ledger"), "{why}");
        // Room again: the same pull works, nothing was lost and the ledger verifies.
        std::fs::remove_file(&filler).unwrap();
        let (status, rows) = pull(&http, &base, &analyst, subscription);
        assert_eq!(status, 200);
        assert!(!rows.is_empty(), "the refused pull did not move the cursor");
        let out = verify(&data, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    });
    Command::new("umount")
        .arg("-l")
        .arg(&mount)
        .status()
        .unwrap();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn the_subject_view_answers_for_the_demos_people() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tongchou_ok(&data, &["demo", "--scale", "tiny", "--no-serve"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let official = text
        .lines()
        .find_map(|l| l.split("ledger subject ").nth(1))
        .expect("the demo names an official to look up")
        .trim()
        .to_string();
    let seen = ok_json(&data, &["ledger", "subject", &official, "--json"]);
    let seen = seen.as_array().unwrap();
    assert!(!seen.is_empty());
    assert_eq!(seen[0]["user"], "procuratorate_analyst");
    assert_eq!(seen[0]["purpose"], "procuratorial_supervision");
    assert!(seen[0]["unit"].is_string() && seen[0]["time"].is_string());
}

/// The ledger is read a page at a time, newest first: pages walked with `--before` (CLI)
/// and `before=` (REST) list every entry once, in time order, and say what is wrong with
/// a time that is not one or a page after an entry that does not exist.
#[test]
fn the_ledger_is_read_a_page_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let all = ok_json(&data, &["ledger", "search", "--limit", "100000", "--json"]);
    let all: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(all.len() > 30, "the demo leaves entries: {}", all.len());
    let mut walked: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut args = vec!["ledger", "search", "--limit", "8", "--json"];
        if let Some(b) = &before {
            args.extend(["--before", b.as_str()]);
        }
        let page = ok_json(&data, &args);
        let page = page.as_array().unwrap().clone();
        walked.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 8 => before = Some(last["seq"].to_string()),
            _ => break,
        }
    }
    // Later entries of this test (each search is recorded) are not in the pages.
    let seqs: Vec<i64> = walked.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs[..],
        all[..],
        "the pages are the one long list, in order"
    );
    let times: Vec<&str> = walked.iter().map(|e| e["time"].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );

    let bad = tongchou(&data, &["ledger", "search", "--since", "上周"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("since '上周'") && err.contains("2026-11-27"),
        "{err}"
    );

    let admin = bearer(&token(&data, "admin", "read,admin"));
    let (_server, base) = serve(&data);
    let http = agent();
    let (status, first) = get(
        &http,
        &format!("{base}/api/ledger/entries?limit=3&outcome=allowed"),
        &admin,
    );
    assert_eq!(status, 200);
    let first = first.as_array().unwrap();
    let last = first[2]["seq"].as_i64().unwrap();
    let (status, next) = get(
        &http,
        &format!("{base}/api/ledger/entries?limit=3&outcome=allowed&before={last}"),
        &admin,
    );
    assert_eq!(status, 200);
    let next = next.as_array().unwrap();
    assert!(
        !next.is_empty()
            && next.iter().all(|e| e["outcome"] == "allowed"
                && e["time"].as_str() <= first[2]["time"].as_str()
                && e["seq"] != first[2]["seq"]),
        "{next:?}"
    );
    let (status, err) = get(
        &http,
        &format!("{base}/api/ledger/entries?until=tomorrow"),
        &admin,
    );
    assert_eq!(status, 400, "{err}");
    let (status, err) = get(
        &http,
        &format!("{base}/api/ledger/entries?before=99999999"),
        &admin,
    );
    assert_eq!(status, 400);
    assert!(err.to_string().contains("no entry 99999999"), "{err}");
}
