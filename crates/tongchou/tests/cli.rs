//! End-to-end: the real `tongchou` binary, as a user runs it.

mod common;

use std::process::Output;

use common::tongchou;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tongchou(tmp.path(), &["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("tongchou {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn init_creates_and_reopens_a_data_directory_and_refuses_other_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tongchou(&data, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(data.join("tongchou.toml").is_file() && data.join("metadata.sqlite").is_file());
    let again = tongchou(&data, &["init"]);
    assert!(again.status.success());
    assert!(stdout(&again).contains("already initialised"));

    let marker = data.join("tongchou.toml");
    let text = std::fs::read_to_string(&marker).unwrap();
    std::fs::write(
        &marker,
        text.replace("format_version = 1", "format_version = 2"),
    )
    .unwrap();
    let out = tongchou(&data, &["demo", "--scale", "tiny", "--no-serve"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("format version 2"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&marker, "format_version = \"one\"").unwrap();
    let out = tongchou(&data, &["demo", "--scale", "tiny", "--no-serve"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
}

#[test]
fn init_refuses_a_directory_with_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = tongchou(tmp.path(), &["init"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn sim_generate_writes_the_district_and_reports_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("district");
    let out_arg = out_dir.to_str().unwrap();
    let out = tongchou(
        tmp.path(),
        &[
            "sim", "generate", "--scale", "tiny", "--seed", "3", "--out", out_arg, "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["units"], 65);
    assert_eq!(summary["resources"], 100);
    assert!(out_dir.join("ground_truth.json").is_file());

    let out = tongchou(
        tmp.path(),
        &["sim", "generate", "--scale", "tiny", "--out", out_arg],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let out = tongchou(
        tmp.path(),
        &[
            "sim",
            "generate",
            "--scale",
            "huge",
            "--out",
            tmp.path().join("x").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown scale 'huge'"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn demo_generates_the_district_and_prints_its_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tongchou(tmp.path(), &["demo", "--scale", "tiny", "--no-serve"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("units: 65"), "{text}");
    assert!(text.contains("resources: 100"), "{text}");
}
