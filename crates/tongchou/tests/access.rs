//! Identity and access end to end: the CLI interface, the demo's accounts and grants, sign-in
//! and throttling over REST, decisions by the providing steward, revocation, a
//! privilege-escalation suite and HTTPS.

mod common;

use std::path::Path;

use common::{
    accounts, add_user, agent, bearer, ok_json, password_of, serve, serve_with, tiny_demo, token,
    tongchou, tongchou_ok, unit_code,
};
use serde_json::{Value, json};

const PASSWORD: &str = "a long enough password";

fn resource_code(data: &Path, name: &str) -> String {
    let hits = ok_json(data, &["catalog", "search", name, "--json"]);
    hits.as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap_or_else(|| panic!("no resource {name}"))["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A REST call with an optional credential (a `Bearer …` value or a `tongchou_session=…`
/// cookie); returns the status and the JSON body (Null when empty).
fn call(
    http: &ureq::Agent,
    method: &str,
    url: &str,
    credential: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(c) = credential {
        request = if c.starts_with("Bearer ") {
            request.header("authorization", c)
        } else {
            request.header("cookie", c)
        };
    }
    let response = match body {
        Some(b) => http.run(
            request
                .header("content-type", "application/json")
                .body(b.to_string())
                .unwrap(),
        ),
        None => http.run(request.body(()).unwrap()),
    };
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Signs in and returns the session cookie (`tongchou_session=…`).
fn sign_in(
    http: &ureq::Agent,
    base: &str,
    name: &str,
    password: &str,
) -> Result<String, (u16, Value)> {
    let response = http
        .post(format!("{base}/api/auth/sign-in"))
        .header("content-type", "application/json")
        .send(json!({"name": name, "password": password}).to_string())
        .unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        let mut response = response;
        let body = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        return Err((status, body));
    }
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    Ok(cookie.split(';').next().unwrap().to_string())
}

/// The arguments of `access decide` for a user, resource and purpose.
fn decide<'a>(user: &'a str, resource: &'a str, purpose: &'a str) -> [&'a str; 8] {
    [
        "access",
        "decide",
        "--as",
        user,
        "--resource",
        resource,
        "--purpose",
        purpose,
    ]
}

/// Signs a demo account in with its password; returns the session cookie.
fn session(http: &ureq::Agent, base: &str, data: &Path, user: &str) -> String {
    sign_in(http, base, user, &password_of(data, user)).unwrap()
}

#[test]
fn cli_request_narrowed_approval_refusal_and_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let arrears = resource_code(&data, "社会保险费欠缴明细");
    add_user(
        &data,
        "kj_wang",
        &unit_code(&data, "science_technology"),
        "analyst",
        PASSWORD,
    );
    let out = tongchou_ok(
        &data,
        &[
            "access",
            "request",
            "--as",
            "kj_wang",
            "--resource",
            &arrears,
            "--fields",
            "credit_code,employer_name,months,amount",
            "--purpose",
            "subsidy_review",
            "--until",
            "2099-12-31",
        ],
    );
    let id: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // Not the provider's steward: refused, and the request stays pending.
    let out = tongchou(
        &data,
        &["access", "approve", &id.to_string(), "--as", "tax_steward"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("providing unit"));
    let grant = ok_json(
        &data,
        &[
            "access",
            "approve",
            &id.to_string(),
            "--as",
            "social_insurance_steward",
            "--fields",
            "credit_code,months",
            "--row-filter",
            "months >= 3",
            "--mask",
            "credit_code=keep_first_last(6,0)",
            "--until",
            "2099-06-30",
            "--json",
        ],
    );
    assert_eq!(
        grant["fields"],
        json!([{"name": "credit_code", "mask": "keep_first_last(6,0)"}, {"name": "months"}])
    );
    assert_eq!(grant["row_filter"], "months >= 3");
    let access = ok_json(&data, &decide("kj_wang", &arrears, "subsidy_review"));
    assert_eq!(access["basis"], json!({"kind": "grant", "id": grant["id"]}));
    assert_eq!(access["fields"].as_array().unwrap().len(), 2);

    // A second request is refused with a reason; a secret field cannot even be asked for.
    let out = tongchou(
        &data,
        &[
            "access",
            "request",
            "--as",
            "kj_wang",
            "--resource",
            &arrears,
            "--fields",
            "amount",
            "--purpose",
            "statistics",
        ],
    );
    let second = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = tongchou(
        &data,
        &[
            "access",
            "refuse",
            &second,
            "--as",
            "social_insurance_steward",
            "--reason",
            "统计用途请使用汇总数据",
        ],
    );
    assert!(out.status.success());
    let mine = ok_json(&data, &["access", "list", "--as", "kj_wang", "--json"]);
    let refused = mine
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"].as_i64() == second.parse().ok())
        .unwrap();
    assert_eq!(
        (refused["state"].as_str(), refused["reason"].as_str()),
        (Some("refused"), Some("统计用途请使用汇总数据"))
    );
    let subsidies = resource_code(&data, "科技计划项目奖励表彰信息");
    let out = tongchou(
        &data,
        &[
            "access",
            "request",
            "--as",
            "tax_analyst",
            "--resource",
            &subsidies,
            "--fields",
            "bank_account",
            "--purpose",
            "tax_administration",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("涉密 secret"));
    let unshared = resource_code(&data, "外国人住宿登记奖励表彰信息");
    let out = tongchou(
        &data,
        &[
            "access",
            "request",
            "--as",
            "kj_wang",
            "--resource",
            &unshared,
            "--fields",
            "person_id",
            "--purpose",
            "statistics",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("不予共享"));

    // Revocation: the next decision refuses.
    let out = tongchou(
        &data,
        &[
            "access",
            "revoke",
            &grant["id"].to_string(),
            "--as",
            "social_insurance_steward",
            "--reason",
            "项目结束",
        ],
    );
    assert!(out.status.success());
    let out = tongchou(&data, &decide("kj_wang", &arrears, "subsidy_review"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no grant"));
    let events = ok_json(&data, &["access", "events", "-n", "50", "--json"]);
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "request_filed",
        "request_approved",
        "request_refused",
        "grant_revoked",
        "user_added",
    ] {
        assert!(actions.contains(&action), "{action} recorded: {actions:?}");
    }
}

#[test]
fn demo_accounts_reach_only_what_their_grants_say() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let all = accounts(&data);
    for role in [
        "platform_admin",
        "steward",
        "analyst",
        "leader",
        "inspector",
    ] {
        assert!(all.iter().any(|a| a["role"] == role), "a demo {role}");
    }
    for a in &all {
        assert!(a["password"].as_str().unwrap().len() >= 10 && a["unit"].is_string());
    }
    let exits = resource_code(&data, "出入境记录");
    let access = ok_json(
        &data,
        &decide("procuratorate_analyst", &exits, "procuratorial_supervision"),
    );
    assert_eq!(access["row_filter"], "destination = '澳门'");
    let person_id = access["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "person_id")
        .unwrap();
    assert_eq!(person_id["mask"], "pseudonym");
    // Every grant was decided by a steward of the providing unit.
    let grants = ok_json(
        &data,
        &["access", "list", "--view", "all", "--grants", "--json"],
    );
    assert!(grants.as_array().unwrap().len() >= 9);
    for g in grants.as_array().unwrap() {
        let steward = all.iter().find(|a| a["user"] == g["granted_by"]).unwrap();
        assert_eq!(
            (&steward["role"], &steward["unit"]),
            (&json!("steward"), &g["provider"])
        );
    }
    // Other analysts, other purposes, unshared resources: refused.
    for (user, purpose) in [
        ("planning_analyst", "procuratorial_supervision"),
        ("procuratorate_analyst", "statistics"),
    ] {
        let out = tongchou(&data, &decide(user, &exits, purpose));
        assert!(!out.status.success(), "{user} {purpose}");
    }
    let licences = resource_code(&data, "营业执照信息");
    let access = ok_json(&data, &decide("inspector", &licences, "market_inspection"));
    assert_eq!(access["basis"]["kind"], "unconditional");
    // The leader-only tax returns: the tax bureau's own analyst as owner, the leader's
    // request waiting in the steward's queue, nobody else.
    let returns = resource_code(&data, "企业纳税申报信息");
    let queue = ok_json(
        &data,
        &[
            "access",
            "list",
            "--as",
            "tax_steward",
            "--view",
            "queue",
            "--json",
        ],
    );
    assert_eq!(queue[0]["requester"], "leader");
    let out = tongchou(
        &data,
        &[
            "access",
            "request",
            "--as",
            "science_analyst",
            "--resource",
            &returns,
            "--fields",
            "revenue",
            "--purpose",
            "subsidy_review",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaders of level 3"));
    let owner = ok_json(
        &data,
        &decide("tax_analyst", &returns, "tax_administration"),
    );
    assert_eq!(owner["basis"]["kind"], "owner");
}

#[test]
fn rest_sign_in_requests_decisions_and_throttling() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = agent();
    let analyst = session(&http, &base, &data, "science_analyst");
    let steward = session(&http, &base, &data, "social_insurance_steward");
    let (status, me) = call(
        &http,
        "GET",
        &format!("{base}/api/me"),
        Some(&analyst),
        None,
    );
    assert_eq!(
        (status, me["user"]["role"].as_str()),
        (200, Some("analyst"))
    );

    let insured = resource_code(&data, "社会保险参保缴费明细");
    let (status, filed) = call(
        &http,
        "POST",
        &format!("{base}/api/access/requests"),
        Some(&analyst),
        Some(
            json!({"resource": insured, "fields": ["credit_code", "insured", "due", "paid"], "purpose": "subsidy_review", "legal_basis": "补贴办法第五条"}),
        ),
    );
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_i64().unwrap();
    let (_, queue) = call(
        &http,
        "GET",
        &format!("{base}/api/access/requests?view=queue"),
        Some(&steward),
        None,
    );
    assert!(queue.as_array().unwrap().iter().any(|r| r["id"] == id));
    let (status, _) = call(
        &http,
        "GET",
        &format!("{base}/api/access/requests?view=queue"),
        Some(&analyst),
        None,
    );
    assert_eq!(status, 403);
    let (status, grant) = call(
        &http,
        "POST",
        &format!("{base}/api/access/requests/{id}/approve"),
        Some(&steward),
        Some(
            json!({"fields": ["credit_code", "insured"], "masks": {"insured": "bucket(10)"}, "until": "2099-01-01"}),
        ),
    );
    assert_eq!(status, 200, "{grant}");
    let decide = format!(
        "{base}/api/access/decide?resource={}&purpose=subsidy_review",
        insured.replace('/', "%2F")
    );
    let (status, access) = call(&http, "GET", &decide, Some(&analyst), None);
    assert_eq!(
        (status, access["fields"][1]["mask"].as_str()),
        (200, Some("bucket(10)"))
    );
    let (status, _) = call(
        &http,
        "POST",
        &format!("{base}/api/access/grants/{}/revoke", grant["id"]),
        Some(&steward),
        Some(json!({"reason": "到期"})),
    );
    assert_eq!(status, 200);
    let (status, denied) = call(&http, "GET", &decide, Some(&analyst), None);
    assert_eq!(status, 403, "{denied}");

    // Signing out ends the session.
    let (status, _) = call(
        &http,
        "POST",
        &format!("{base}/api/auth/sign-out"),
        Some(&analyst),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = call(
        &http,
        "GET",
        &format!("{base}/api/me"),
        Some(&analyst),
        None,
    );
    assert_eq!(status, 401);

    // Five wrong passwords lock the account for a while, even for the right one.
    for _ in 0..5 {
        assert_eq!(
            sign_in(&http, &base, "planning_analyst", "not the password")
                .unwrap_err()
                .0,
            401
        );
    }
    let (status, body) = sign_in(
        &http,
        &base,
        "planning_analyst",
        &password_of(&data, "planning_analyst"),
    )
    .unwrap_err();
    assert_eq!(status, 429);
    assert!(body["error"].as_str().unwrap().contains("try again in"));
    let (status, body) = sign_in(&http, &base, "nobody_here", "whatever it is").unwrap_err();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("用户名或密码错误 wrong user name or password"))
    );
}

#[test]
fn privilege_escalation_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = agent();
    let analyst = session(&http, &base, &data, "planning_analyst");
    let steward = session(&http, &base, &data, "tax_steward");
    let read_only = bearer(&token(&data, "tax_steward", "read"));
    let url = |path: &str| format!("{base}{path}");
    let (_, queue) = call(
        &http,
        "GET",
        &url("/api/access/requests?view=queue"),
        Some(&steward),
        None,
    );
    let leader_request = queue[0]["id"].as_i64().unwrap();
    let (_, grants) = call(
        &http,
        "GET",
        &url("/api/access/grants?view=all"),
        Some(&bearer(&token(&data, "admin", "all"))),
        None,
    );
    let someone_elses_grant = grants[0]["id"].as_i64().unwrap();
    let registry = resource_code(&data, "企业登记信息");
    let attempts: Vec<(&str, String, &str, Option<Value>, u16)> = vec![
        (
            "analyst edits own role",
            url("/api/users/planning_analyst"),
            "PATCH",
            Some(json!({"role": "platform_admin"})),
            403,
        ),
        (
            "steward edits own level",
            url("/api/users/tax_steward"),
            "PATCH",
            Some(json!({"role": "leader", "level": 10})),
            403,
        ),
        (
            "analyst adds an admin",
            url("/api/users"),
            "POST",
            Some(
                json!({"name": "mole", "unit": unit_code(&data, "planning"), "role": "platform_admin", "password": PASSWORD}),
            ),
            403,
        ),
        (
            "analyst lists accounts",
            url("/api/users"),
            "GET",
            None,
            403,
        ),
        (
            "analyst approves a request",
            url(&format!("/api/access/requests/{leader_request}/approve")),
            "POST",
            Some(json!({})),
            403,
        ),
        (
            "steward revokes another unit's grant",
            url(&format!("/api/access/grants/{someone_elses_grant}/revoke")),
            "POST",
            Some(json!({})),
            403,
        ),
        (
            "steward sets another unit's policy",
            url(&format!(
                "/api/access/policy?code={}",
                registry.replace('/', "%2F")
            )),
            "PUT",
            Some(json!({"min_leader_level": 1})),
            403,
        ),
        (
            "analyst reads the access record",
            url("/api/access/events"),
            "GET",
            None,
            403,
        ),
        (
            "analyst adds a purpose",
            url("/api/access/purposes"),
            "POST",
            Some(json!({"code": "anything", "label": "任意"})),
            403,
        ),
        (
            "analyst sees every request",
            url("/api/access/requests?view=all"),
            "GET",
            None,
            403,
        ),
        (
            "analyst reads another unit's quarantine",
            url(&format!(
                "/api/exchange/quarantine?resource={}",
                registry.replace('/', "%2F")
            )),
            "GET",
            None,
            403,
        ),
        (
            "analyst registers for another unit",
            url("/api/catalog/resources"),
            "POST",
            Some(
                json!({"unit": unit_code(&data, "tax"), "name": "假资源", "share_type": "unconditional", "open_type": "none", "update_cycle": "monthly", "fields": [{"name": "x", "label": "x", "type": "string"}]}),
            ),
            422,
        ),
    ];
    for (what, url, method, body, expected) in attempts {
        let (status, reply) = call(&http, method, &url, Some(&analyst), body);
        assert_eq!(status, expected, "{what}: {reply}");
    }
    // The steward's read-only token: cannot decide, cannot mint tokens.
    let (status, _) = call(
        &http,
        "POST",
        &url(&format!("/api/access/requests/{leader_request}/approve")),
        Some(&read_only),
        Some(json!({})),
    );
    assert_eq!(status, 403, "a read token approving");
    let (status, _) = call(
        &http,
        "POST",
        &url("/api/tokens"),
        Some(&read_only),
        Some(json!({"scopes": "all"})),
    );
    assert_eq!(status, 403, "a token minting a token");
    let (status, _) = call(
        &http,
        "POST",
        &url("/api/tokens"),
        Some(&steward),
        Some(json!({"scopes": "admin"})),
    );
    assert_eq!(status, 403, "a steward minting an admin token");
    // No credential, a forged one, a revoked one.
    for credential in [
        None,
        Some("tongchou_session=ts_0123456789abcdef_00".to_string()),
        Some(bearer("tc_0123456789abcdef_ff")),
    ] {
        let (status, _) = call(
            &http,
            "GET",
            &url("/api/catalog/stats"),
            credential.as_deref(),
            None,
        );
        assert_eq!(status, 401);
    }
    let (status, issued) = call(
        &http,
        "POST",
        &url("/api/tokens"),
        Some(&steward),
        Some(json!({"scopes": "read", "label": "报表"})),
    );
    assert_eq!(status, 201);
    let fresh = bearer(issued["secret"].as_str().unwrap());
    assert_eq!(
        call(&http, "GET", &url("/api/catalog/stats"), Some(&fresh), None).0,
        200
    );
    let (status, _) = call(
        &http,
        "DELETE",
        &url(&format!("/api/tokens/{}", issued["id"].as_str().unwrap())),
        Some(&steward),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(
        call(&http, "GET", &url("/api/catalog/stats"), Some(&fresh), None).0,
        401
    );
    // The right steward, with a session, decides.
    let (status, _) = call(
        &http,
        "POST",
        &url(&format!("/api/access/requests/{leader_request}/refuse")),
        Some(&steward),
        Some(json!({"reason": "请使用汇总统计"})),
    );
    assert_eq!(status, 200);
    // Token secrets are stored hashed only.
    let db = std::fs::read(data.join("metadata.sqlite")).unwrap();
    let secret = issued["secret"].as_str().unwrap();
    let wal = std::fs::read(data.join("metadata.sqlite-wal")).unwrap_or_default();
    let in_store = |bytes: &[u8]| bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    assert!(
        !in_store(&db) && !in_store(&wal),
        "the token secret is not stored"
    );
}

#[test]
fn https_with_a_certificate_and_secure_cookies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (cert, key) = common::self_signed(tmp.path());
    let https = common::https_agent();
    let (_server, base) = serve_with(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        "https",
        &https,
    );
    assert!(base.starts_with("https://"));
    let response = https
        .post(format!("{base}/api/auth/sign-in"))
        .header("content-type", "application/json")
        .send(json!({"name": "leader", "password": password_of(&data, "leader")}).to_string())
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(
        agent()
            .get(base.replace("https", "http") + "/healthz")
            .call()
            .map(|r| r.status() != 200)
            .unwrap_or(true)
    );
    let out = tongchou(
        &data,
        &[
            "serve",
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.key",
            "--http",
            "127.0.0.1:0",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the TLS certificate"));
}

const ANALYST: &str = "procuratorate_analyst";
const PURPOSE: &str = "procuratorial_supervision";
const COUNT: &str = r#"SELECT count(*) FROM "佛山市公安局南海分局出入境管理大队"."出入境记录""#;

/// The command line of the real binary on `data`, for a shell: `\! …` in psql or Python's
/// `subprocess`, so that it runs between two statements of one open connection.
fn command_line(data: &Path, args: &str) -> String {
    format!(
        "{} --data-dir {} {args}",
        env!("CARGO_BIN_EXE_tongchou"),
        data.display()
    )
}

/// Runs `COUNT`, then `between` (a `\!` command), then `COUNT` again on one psql connection:
/// the first answers, the second is refused and the connection ends.
fn refused_after(port: u16, password: &str, between: &str) {
    let out = common::psql(port, ANALYST, password, PURPOSE, &[COUNT, between, COUNT]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let answers = stdout.lines().filter(|l| l.parse::<u64>().is_ok()).count();
    assert_eq!(answers, 1, "{between}: {stdout}{stderr}");
    assert!(!out.status.success(), "{between}: {stdout}{stderr}");
    assert!(
        stderr.contains("FATAL") && stderr.contains("no longer valid"),
        "{between}: {stderr}"
    );
}

#[test]
fn an_open_postgresql_connection_stops_when_its_credential_does() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, _, port) = common::serve_pg(&data, &agent());

    let token = token(&data, ANALYST, "read,query");
    let id = token.split('_').nth(1).unwrap();
    let revoke = format!("token revoke {id} --as {ANALYST}");
    refused_after(
        port,
        &token,
        &format!("\\! {}", command_line(&data, &revoke)),
    );

    let old = password_of(&data, ANALYST);
    let new = "a brand new password";
    let change = command_line(&data, &format!("user password {ANALYST}"));
    refused_after(port, &old, &format!("\\! echo '{new}' | {change}"));
    let signed_in = |password: &str| {
        common::psql(port, ANALYST, password, PURPOSE, &[COUNT])
            .status
            .success()
    };
    assert!(!signed_in(&old) && signed_in(new));

    let disable = command_line(&data, &format!("user set {ANALYST} --disable"));
    refused_after(port, new, &format!("\\! {disable}"));
    assert!(!signed_in(new));

    let entries = ok_json(&data, &["ledger", "tail", "--json", "-n", "80"]);
    let refused: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["front_door"] == "pg" && e["outcome"] == "denied")
        .filter(|e| e["kind"] == "statement" && e["statement"] == COUNT)
        .collect();
    assert_eq!(refused.len(), 3, "{entries}");
    assert!(
        refused
            .iter()
            .all(|e| e["user"] == ANALYST && e["reason"].as_str().unwrap().contains("sign in")),
        "{refused:?}"
    );
}

/// psycopg speaks the extended protocol: Parse, Bind, Describe and Execute of the next
/// statement meet the revoked token.
#[test]
fn the_extended_protocol_meets_a_revoked_token_at_the_next_statement() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, _, port) = common::serve_pg(&data, &agent());
    let token = token(&data, ANALYST, "read,query");
    let id = token.split('_').nth(1).unwrap();
    let revoke = command_line(&data, &format!("token revoke {id} --as {ANALYST}"));
    let script = r#"
import json, subprocess, sys
import psycopg
port, user, token, purpose, sql, revoke = sys.argv[1:]
out = {}
conn = psycopg.connect(host="127.0.0.1", port=int(port), user=user, password=token, dbname=purpose, autocommit=True)
cur = conn.cursor()
cur.execute(sql, ("澳门",))
out["before"] = cur.fetchone()[0]
subprocess.run(revoke, shell=True, check=True, stdout=subprocess.DEVNULL)
try:
    cur.execute(sql, ("澳门",))
    out["after"] = cur.fetchone()[0]
except psycopg.Error as e:
    out["error"] = str(e)
out["closed"] = conn.closed
print(json.dumps(out, ensure_ascii=False))
"#;
    let sql = format!("{COUNT} WHERE destination = %s");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([&port.to_string(), ANALYST, &token, PURPOSE, &sql, &revoke])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "psycopg (installed by .ci/run): {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert!(answer["before"].as_u64().unwrap() > 0, "{answer}");
    assert!(answer.get("after").is_none(), "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("no longer valid"),
        "{answer}"
    );
    assert_eq!(answer["closed"], true, "{answer}");
}

#[test]
fn a_password_is_changed_by_its_owner_with_the_old_one_or_by_the_bureau() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base) = serve(&data);
    let http = agent();
    let url = format!("{base}/api/users/{ANALYST}/password");
    let new = "a brand new password";
    let own = session(&http, &base, &data, ANALYST);
    let change =
        |credential: &str, body: Value| call(&http, "POST", &url, Some(credential), Some(body));
    let (status, body) = change(&own, json!({"new_password": new}));
    assert_eq!(status, 422, "{body}");
    let (status, _) = change(
        &own,
        json!({"old_password": "a guess", "new_password": new}),
    );
    assert_eq!(status, 401);
    let leader = session(&http, &base, &data, "leader");
    let (status, _) = change(&leader, json!({"new_password": new}));
    assert_eq!(status, 403, "only the bureau sets other people's passwords");
    let (status, body) = change(
        &own,
        json!({"old_password": password_of(&data, ANALYST), "new_password": new}),
    );
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(&http, "GET", &format!("{base}/api/me"), Some(&own), None);
    assert_eq!(status, 401, "the session ended with the old password");
    assert!(sign_in(&http, &base, ANALYST, &password_of(&data, ANALYST)).is_err());
    let again = sign_in(&http, &base, ANALYST, new).unwrap();

    let admin = bearer(&token(&data, "admin", "read,admin"));
    let (status, body) = change(&admin, json!({"new_password": "set by the bureau"}));
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(&http, "GET", &format!("{base}/api/me"), Some(&again), None);
    assert_eq!(status, 401);
    assert!(sign_in(&http, &base, ANALYST, "set by the bureau").is_ok());
}

#[test]
fn sign_ins_and_commands_name_the_door_they_came_through() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, base, port) = common::serve_pg(&data, &agent());
    let token = token(&data, ANALYST, "read,query");
    for password in [password_of(&data, ANALYST), token] {
        let out = common::psql(port, ANALYST, &password, PURPOSE, &["SELECT 1"]);
        assert!(out.status.success(), "{out:?}");
    }
    session(&agent(), &base, &data, "leader");

    let entries = ok_json(&data, &["ledger", "tail", "--json", "-n", "60"]);
    let doors = |kind: &str, user: &str| -> Vec<String> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind && e["user"] == user)
            .map(|e| e["front_door"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(doors("sign_in", ANALYST), ["pg", "pg"], "{entries}");
    assert_eq!(doors("sign_in", "leader"), ["rest"]);
    assert_eq!(doors("token_created", ANALYST), ["cli"]);
}

#[test]
fn a_sensitive_field_leaves_raw_only_with_a_recorded_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let exit_entry = resource_code(&data, "出入境记录");
    // The demo's own approval chose a mask for the travel document number.
    let access = ok_json(&data, &decide(ANALYST, &exit_entry, PURPOSE));
    assert!(
        access["fields"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "document_no", "mask": "keep_first_last(1,2)"})),
        "{access}"
    );

    let out = tongchou_ok(
        &data,
        &[
            "access",
            "request",
            "--as",
            "science_analyst",
            "--resource",
            &exit_entry,
            "--fields",
            "record_no,document_no",
            "--purpose",
            "subsidy_review",
        ],
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let approve = |extra: &[&str]| {
        let mut args = vec![
            "access",
            "approve",
            &id,
            "--as",
            "exit_entry_steward",
            "--json",
        ];
        args.extend_from_slice(extra);
        tongchou(&data, &args)
    };
    for (extra, says) in [
        (&[][..], "document_no (证件号码)"),
        (&["--mask", "document_no=none"][..], "need a reason"),
    ] {
        let out = approve(extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
    }
    let reason = "核对证件真伪需原始号码 checking the documents needs the raw numbers";
    let out = approve(&["--mask", "document_no=none", "--raw-reason", reason]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grant: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        grant["fields"],
        json!([{"name": "record_no"}, {"name": "document_no"}])
    );
    let entries = ok_json(&data, &["ledger", "tail", "--json", "-n", "10"]);
    let decision = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "decision")
        .expect("the approval is in the ledger");
    assert_eq!(decision["detail"]["detail"]["raw_reason"], reason);
    assert_eq!(decision["detail"]["detail"]["raw"], json!(["document_no"]));
}
