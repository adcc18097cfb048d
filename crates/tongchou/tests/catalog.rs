//! End-to-end: the catalog through the real binary — the CLI and `tongchou serve`.

mod common;

use std::path::Path;

use common::{add_user, agent, bearer, ok_json, serve, tiny_demo, token, tongchou, tongchou_ok};
use serde_json::{Value, json};

fn unit(data: &Path, slug: &str) -> String {
    let units = ok_json(data, &["catalog", "units", "--json"]);
    units
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["slug"] == slug)
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn catalog_cli_registers_searches_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let stats = ok_json(&data, &["catalog", "stats", "--json"]);
    assert_eq!(
        (stats["units"].as_i64(), stats["resources"].as_i64()),
        (Some(65), Some(100))
    );
    let units = ok_json(&data, &["catalog", "units", "--json"]);
    assert!(
        units
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["code"].is_string() && u["name"].is_string())
    );
    let hits = ok_json(&data, &["catalog", "search", "社保 欠费", "--json"]);
    assert_eq!(hits[0]["name"], "社会保险费欠缴明细");
    assert!(hits[0]["code"].is_string() && hits[0]["unit"].is_string());

    let tax = unit(&data, "tax");
    let file = tmp.path().join("resource.json");
    let resource = json!({"unit": tax, "name": "纳税信用等级评价结果", "abstract": "A、B、C、D级纳税人名单", "share_type": "unconditional",
        "open_type": "unconditional", "update_cycle": "yearly",
        "fields": [{"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "required": true, "sensitivity": "public"},
                   {"name": "grade", "label": "信用等级", "type": "string", "required": true}]});
    std::fs::write(&file, resource.to_string()).unwrap();
    let code = common::register(&data, &file);
    let hits = ok_json(&data, &["catalog", "search", "纳税 信用", "--json"]);
    assert_eq!(hits[0]["code"], code.as_str());
    assert_eq!(
        ok_json(&data, &["catalog", "stats", "--json"])["resources"],
        101
    );

    // Bad input: a per-row report, a non-zero exit, nothing registered.
    let bad = json!([resource, {"unit": "nope", "name": "x", "share_type": "sometimes", "open_type": "none", "update_cycle": "daily", "fields": [{"name": "a", "label": "甲"}]}]);
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = tongchou(
        &data,
        &["catalog", "register", "--file", file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "资源 1 「纳税信用等级评价结果」, name: unit",
        "already has a resource named",
        "资源 2 「x」, share_type: 'sometimes'",
        "信息项 1 (a): type is required",
        "nothing was registered",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
    assert_eq!(
        ok_json(&data, &["catalog", "stats", "--json"])["resources"],
        101
    );

    // A new version, listed and compared.
    let mut changed = resource.clone();
    changed["share_type"] = json!("conditional");
    changed["share_condition"] = json!("仅限税收征管");
    changed["legal_basis"] = json!("《税收征收管理法》");
    std::fs::write(&file, changed.to_string()).unwrap();
    tongchou_ok(
        &data,
        &["catalog", "update", &code, "--file", file.to_str().unwrap()],
    );
    let history = ok_json(&data, &["catalog", "history", &code, "--json"]);
    assert_eq!(history.as_array().unwrap().len(), 2);
    let diff = tongchou(&data, &["catalog", "diff", &code, "1", "2"]);
    assert!(
        String::from_utf8_lossy(&diff.stdout)
            .contains("share_type: \"unconditional\" → \"conditional\"")
    );

    // The workbook template round trip through the CLI.
    let template = tmp.path().join("template.xlsx");
    assert!(
        tongchou(
            &data,
            &["catalog", "template", "--out", template.to_str().unwrap()]
        )
        .status
        .success()
    );
    let out = tongchou(
        &data,
        &["catalog", "register", "--file", template.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no resource rows"));
    let exported = tmp.path().join("tax.xlsx");
    assert!(
        tongchou(
            &data,
            &[
                "catalog",
                "export",
                "--out",
                exported.to_str().unwrap(),
                "--unit",
                &tax
            ]
        )
        .status
        .success()
    );
    let out = tongchou(
        &data,
        &["catalog", "register", "--file", exported.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is already registered"),
        "re-registering the export is refused as duplicates"
    );
}

#[test]
fn stewards_act_for_their_own_unit_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let tax = unit(&data, "tax");
    add_user(
        &data,
        "税务管理员",
        &tax,
        "steward",
        "a long enough password",
    );
    let users = ok_json(&data, &["user", "list", "--json"]);
    let added = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "税务管理员")
        .unwrap();
    assert_eq!(
        (&added["role"], &added["unit"]),
        (&json!("steward"), &json!(tax))
    );
    let health = unit(&data, "health");
    let file = tmp.path().join("r.json");
    std::fs::write(&file, json!({"unit": health, "name": "医院床位", "share_type": "unconditional", "open_type": "none", "update_cycle": "monthly",
        "fields": [{"name": "beds", "label": "床位数", "type": "integer"}]}).to_string()).unwrap();
    let out = tongchou(
        &data,
        &[
            "catalog",
            "register",
            "--file",
            file.to_str().unwrap(),
            "--as",
            "税务管理员",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not register resources of unit"));
    let out = tongchou(
        &data,
        &[
            "catalog",
            "register",
            "--file",
            file.to_str().unwrap(),
            "--as",
            "nobody",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("user 'nobody' does not exist"));
}

#[test]
fn inference_from_a_department_export() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let file = data.join("district/exports/household_registration/户籍人口信息.csv");
    let draft = tmp.path().join("draft.json");
    let tax = unit(&data, "household_registration");
    let result = ok_json(
        &data,
        &[
            "catalog",
            "infer",
            file.to_str().unwrap(),
            "--json",
            "--draft",
            draft.to_str().unwrap(),
            "--unit",
            &tax,
            "--name",
            "户籍人口（草稿）",
        ],
    );
    assert_eq!(result["encoding"], "gbk");
    let fields = result["fields"].as_array().unwrap();
    let role = |label: &str| fields.iter().find(|f| f["label"] == label).unwrap()["role"].clone();
    assert_eq!(role("公民身份号码"), "person_id");
    assert_eq!(role("母亲公民身份号码"), "person_id");
    assert_eq!(role("联系电话"), "phone");
    assert_eq!(role("出生日期"), "birth_date");
    assert!(
        fields[0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("GB 11643")
    );
    let mut value: Value = serde_json::from_slice(&std::fs::read(&draft).unwrap()).unwrap();
    value["share_condition"] = json!("户籍核验");
    value["legal_basis"] = json!("《户口登记条例》");
    std::fs::write(&draft, value.to_string()).unwrap();
    ok_json(
        &data,
        &[
            "catalog",
            "register",
            "--file",
            draft.to_str().unwrap(),
            "--json",
        ],
    );
}

/// Asks the server, signed out, for every path and method the OpenAPI document lists: each
/// is routed, none unknown (404) or of another method (405), as a path the document does
/// not list is; and every one but health and signing in and out refuses the caller (401).
fn every_documented_route_is_served(http: &ureq::Agent, base: &str, openapi: &Value) {
    let unknown = http
        .get(format!("{base}/api/no-such-route"))
        .call()
        .unwrap();
    assert_eq!(
        unknown.status().as_u16(),
        404,
        "the probe tells unknown paths apart"
    );
    let paths = openapi["paths"].as_object().unwrap();
    assert!(paths.len() >= 45, "{} paths documented", paths.len());
    for (path, operations) in paths {
        let url = format!(
            "{base}{}",
            path.replace("{id}", "1")
                .replace("{seq}", "1")
                .replace("{name}", "x")
        );
        for method in operations.as_object().unwrap().keys() {
            let response = match method.as_str() {
                "get" => http.get(&url).call(),
                "delete" => http.delete(&url).call(),
                "post" => http.post(&url).send_empty(),
                "put" => http.put(&url).send_empty(),
                "patch" => http.patch(&url).send_empty(),
                other => panic!("{path}: unexpected method {other}"),
            };
            let status = response.unwrap().status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} documented but answered {status}"
            );
            if !["/healthz", "/api/auth/sign-in", "/api/auth/sign-out"].contains(&path.as_str()) {
                assert_eq!(status, 401, "{method} {path} answered a signed-out caller");
            }
        }
    }
}

#[test]
fn rest_api_registers_and_searches_with_openapi() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = agent();
    let admin = bearer(&token(&data, "admin", "all"));
    let anonymous = http
        .get(format!("{base}/api/catalog/search?q=x"))
        .call()
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let get = |path: &str| -> (u16, Value) {
        let mut r = http
            .get(format!("{base}{path}"))
            .header("authorization", &admin)
            .call()
            .unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };
    let (status, openapi) = get("/openapi.json");
    assert_eq!(status, 200);
    for path in [
        "/api/catalog/search",
        "/api/catalog/resources",
        "/api/catalog/workbook",
        "/api/catalog/stats",
        "/api/catalog/infer",
        "/api/query",
        "/api/exchange/ingest",
        "/api/exchange/pull",
        "/api/exchange/subscriptions",
        "/api/ledger/tail",
        "/api/ledger/entries",
        "/api/ledger/proof/{seq}",
        "/api/access/requests/{id}/approve",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    let (_, hits) = get("/api/catalog/search?q=%E7%A4%BE%E4%BF%9D%20%E6%AC%A0%E8%B4%B9");
    assert_eq!(hits[0]["name"], "社会保险费欠缴明细");
    let (status, err) = get("/api/catalog/search?q=x&share_type=maybe");
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("share_type 'maybe'")
    );
    let (_, units) = get("/api/catalog/units");
    let planning = units
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["slug"] == "planning")
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();

    let body = json!({"unit": planning, "name": "农贸市场布点规划", "abstract": "固定农贸市场的规划布点", "share_type": "unconditional", "open_type": "unconditional",
        "update_cycle": "yearly", "fields": [{"name": "market", "label": "市场名称", "type": "string"}, {"name": "longitude", "label": "经度", "type": "decimal", "role": "coordinates"}]});
    let mut r = http
        .post(format!("{base}/api/catalog/resources"))
        .header("authorization", &admin)
        .header("content-type", "application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let code = created["code"].as_str().unwrap().to_string();
    let (_, hits) = get("/api/catalog/search?q=%E5%86%9C%E8%B4%B8%E5%B8%82%E5%9C%BA");
    assert_eq!(hits[0]["code"], code.as_str());
    let (status, record) = get(&format!(
        "/api/catalog/resource?code={}",
        code.replace('/', "%2F")
    ));
    assert_eq!((status, record["version"].as_i64()), (200, Some(1)));

    let mut r = http
        .post(format!("{base}/api/catalog/resources"))
        .header("authorization", &admin)
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let rejected: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert!(
        rejected["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already has a resource named")
    );

    let mut r = http
        .get(format!("{base}/api/catalog/template.xlsx"))
        .header("authorization", &admin)
        .call()
        .unwrap();
    let bytes = r.body_mut().read_to_vec().unwrap();
    assert!(bytes.starts_with(b"PK"));
    let mut r = http
        .post(format!("{base}/api/catalog/workbook"))
        .header("authorization", &admin)
        .send(&bytes[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("has no resource rows")
    );

    let sample = std::fs::read(data.join("district/exports/exit_entry/出入境记录.csv")).unwrap();
    let mut r = http
        .post(format!("{base}/api/catalog/infer?name=sample.csv"))
        .header("authorization", &admin)
        .send(&sample[..])
        .unwrap();
    let inference: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(inference["fields"][1]["role"], "person_id");
    let (_, stats) = get("/api/catalog/stats");
    assert_eq!(stats["resources"], 101);
    every_documented_route_is_served(&http, &base, &openapi);
}
