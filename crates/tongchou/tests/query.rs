//! Governed query through the real binary on the tiny demo: the procuratorate's analyst
//! reads the exit-entry records under the grant the exit-entry administration gave
//! (destination = '澳门' only, person IDs as pseudonyms, names masked), and each attack of
//! the suite below fails to see a raw value, a hidden row or the policy.

mod common;

use std::path::Path;

use common::{accounts, ledger_search, ok_json, password_of, tiny_demo, tongchou, tongchou_ok};
use serde_json::Value;

const TABLE: &str = r#""佛山市公安局南海分局出入境管理大队"."出入境记录""#;
const ANALYST: &str = "procuratorate_analyst";
const OWNER: &str = "exit_entry_steward";
const PURPOSE: &str = "procuratorial_supervision";

fn query(data: &Path, user: &str, sql: &str) -> std::process::Output {
    tongchou(
        data,
        &[
            "query",
            "--as",
            user,
            "--purpose",
            PURPOSE,
            "--format",
            "json",
            sql,
        ],
    )
}

fn rows(data: &Path, user: &str, sql: &str) -> Vec<Value> {
    let out = query(data, user, sql);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("{sql}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
        .as_array()
        .unwrap()
        .clone()
}

/// Raw values the analyst must never see: IDs and full names of every traveller, and the
/// rows to other destinations.
struct Secrets {
    ids: Vec<String>,
    names: Vec<String>,
}

fn secrets(data: &Path) -> Secrets {
    let all = rows(
        data,
        OWNER,
        &format!("SELECT DISTINCT person_id, name FROM {TABLE}"),
    );
    Secrets {
        ids: all
            .iter()
            .map(|r| r["person_id"].as_str().unwrap().to_string())
            .collect(),
        names: all
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .filter(|n| n.chars().count() >= 2)
            .collect(),
    }
}

fn assert_nothing_leaks(secrets: &Secrets, what: &str, text: &str) {
    for id in &secrets.ids {
        assert!(!text.contains(id.as_str()), "{what} shows a raw ID: {text}");
    }
    for name in &secrets.names {
        assert!(
            !text.contains(name.as_str()),
            "{what} shows a raw name {name}: {text}"
        );
    }
}

#[test]
fn the_grant_is_enforced_inside_the_engine_and_attacks_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    assert!(secrets.ids.len() > 10);
    let owner_total = rows(&data, OWNER, &format!("SELECT count(*) AS n FROM {TABLE}"))[0]["n"]
        .as_u64()
        .unwrap();

    // What the grant gives: 澳门 rows only, pseudonyms, masked names.
    let seen = rows(&data, ANALYST, &format!("SELECT * FROM {TABLE}"));
    assert!(!seen.is_empty() && (seen.len() as u64) < owner_total);
    assert!(seen.iter().all(|r| r["destination"] == "澳门"));
    assert!(
        seen.iter()
            .all(|r| r["person_id"].as_str().unwrap().starts_with('P')
                && r["person_id"].as_str().unwrap().len() == 21)
    );
    assert!(
        seen.iter()
            .all(|r| r["name"].as_str().unwrap().contains('*'))
    );
    assert_nothing_leaks(&secrets, "SELECT *", &serde_json::to_string(&seen).unwrap());

    // Attacks that must return nothing hidden and run without error oracles.
    let raw_id = &secrets.ids[0];
    let attacks = [
        format!("SELECT count(*) AS n FROM {TABLE} WHERE person_id = '{raw_id}'"),
        format!("SELECT count(*) AS n FROM {TABLE} WHERE person_id LIKE '{}%'", &raw_id[..6]),
        format!("SELECT CASE WHEN destination <> '澳门' THEN 1/0 ELSE 0 END AS x FROM {TABLE}"),
        format!("SELECT CASE WHEN person_id = '{raw_id}' THEN 1/0 ELSE 0 END AS x FROM {TABLE}"),
        format!("SELECT CAST(destination AS INT) AS x FROM {TABLE} WHERE destination <> '澳门'"),
        format!("SELECT min(person_id) AS a, max(person_id) AS b, min(name) AS c FROM {TABLE}"),
        format!("SELECT name, count(*) AS n FROM {TABLE} GROUP BY name ORDER BY n DESC LIMIT 3"),
        format!("SELECT * FROM {TABLE} ORDER BY person_id LIMIT 1"),
        format!("WITH t AS (SELECT * FROM {TABLE}) SELECT count(*) AS n FROM t WHERE destination = '香港'"),
        format!("SELECT count(*) AS n FROM (SELECT destination FROM {TABLE} UNION ALL SELECT destination FROM {TABLE}) u WHERE destination <> '澳门'"),
        format!("SELECT person_id, row_number() OVER (PARTITION BY person_id ORDER BY crossed_on) AS k FROM {TABLE} LIMIT 5"),
        format!("SELECT upper(person_id) AS u, substr(name, 1, 1) AS s FROM {TABLE} LIMIT 5"),
        format!("SELECT a.person_id FROM {TABLE} a JOIN {TABLE} b ON a.person_id = b.person_id WHERE b.destination = '泰国'"),
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_name = '出入境记录'".to_string(),
        // Predicates on clear columns cross into the trusted plan (for lookups by key):
        // they still see only the rows the grant lets through.
        format!("SELECT count(*) AS n FROM {TABLE} WHERE destination = '香港'"),
        format!("SELECT count(*) AS n FROM {TABLE} WHERE destination IN ('香港', '泰国') OR destination IS NULL AND port <> ''"),
        format!("SELECT count(*) AS n FROM (SELECT * FROM {TABLE} WHERE destination = '香港' LIMIT 1) t"),
        format!("SELECT count(*) AS n FROM {TABLE} WHERE destination = '香港' AND 1 / (length(person_id) - 21) = 0"),
    ];
    for sql in &attacks {
        let out = query(&data, ANALYST, sql);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains("Divide by zero"),
            "{sql}: an error oracle fired: {text}"
        );
        assert_nothing_leaks(&secrets, sql, &text);
        if sql.contains("count(*)") && sql.contains(raw_id.as_str())
            || sql.contains("'香港'")
            || sql.contains("<> '澳门'") && sql.contains("UNION")
        {
            assert!(out.status.success(), "{sql}: {text}");
            let n: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(n[0]["n"], 0, "{sql} counted hidden rows");
        }
    }

    // A row limit crosses too, beneath the row filter.
    let first = rows(
        &data,
        ANALYST,
        &format!("SELECT destination FROM {TABLE} LIMIT 1"),
    );
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["destination"], "澳门");

    // Who looked at a traveller: a lookup by pseudonym is traced back to the person.
    let pseudonym = seen[0]["person_id"].as_str().unwrap();
    let record = seen[0]["record_no"].as_str().unwrap();
    let found = rows(
        &data,
        ANALYST,
        &format!("SELECT crossed_on, port FROM {TABLE} WHERE person_id = '{pseudonym}'"),
    );
    assert!(!found.is_empty());
    let raw = rows(
        &data,
        OWNER,
        &format!("SELECT person_id FROM {TABLE} WHERE record_no = '{record}'"),
    );
    let raw = raw[0]["person_id"].as_str().unwrap();
    let tracked = ok_json(&data, &["ledger", "subject", raw, "--json"]);
    assert!(
        tracked
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == ANALYST && e["purpose"] == PURPOSE),
        "{tracked}"
    );

    // EXPLAIN shows the governed leaf only: no policy, no mask, no raw path.
    let out = tongchou(
        &data,
        &[
            "query",
            "--as",
            ANALYST,
            "--purpose",
            PURPOSE,
            &format!("EXPLAIN SELECT name FROM {TABLE} WHERE person_id = 'x'"),
        ],
    );
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && plan.contains("GovernedScan"),
        "{plan}"
    );
    for hidden in ["governed_mask", "澳门", "destination =", "tables/", "raw"] {
        assert!(!plan.contains(hidden), "EXPLAIN shows '{hidden}': {plan}");
    }

    // Statements that are not queries are refused, and change nothing.
    for sql in [
        "SET datafusion.execution.batch_size = 1".to_string(),
        format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'",
            data.join("tables").display()
        ),
        format!("CREATE VIEW v AS SELECT * FROM {TABLE}"),
        format!("COPY (SELECT * FROM {TABLE}) TO '/tmp/leak.csv'"),
        format!("INSERT INTO {TABLE} VALUES (1)"),
        format!("EXPLAIN ANALYZE SELECT * FROM {TABLE}"),
        format!("SELECT 1; SELECT * FROM {TABLE}"),
    ] {
        let out = query(&data, ANALYST, &sql);
        assert!(!out.status.success(), "{sql} ran");
    }
    assert!(!Path::new("/tmp/leak.csv").exists());

    // A resource without a grant does not exist for the analyst.
    let out = query(
        &data,
        ANALYST,
        r#"SELECT * FROM "佛山市南海区人力资源和社会保障局"."社会保险参保缴费信息""#,
    );
    assert!(!out.status.success());

    // Every statement is in the ledger: what was read, how masked, filtered, returned.
    let entries = ledger_search(
        &data,
        &["--kind", "statement", "--user", ANALYST, "--limit", "500"],
    );
    assert!(entries.len() >= attacks.len() + 8);
    assert!(entries.iter().any(|e| e["outcome"] == "denied"));
    let last_ok = ok_json(&data, &["ledger", "tail", "--json", "-n", "400"]);
    let full = last_ok
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["kind"] == "statement"
                && e["user"] == ANALYST
                && e["statement"] == format!("SELECT * FROM {TABLE}")
        })
        .expect("the first statement is in the ledger");
    assert_eq!(full["rows"], seen.len());
    assert_eq!(full["masks"]["308001003/000003:person_id"], "pseudonym");
    assert_eq!(
        full["row_filters"]["308001003/000003"],
        "destination = '澳门'"
    );
    assert!(
        full["result_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_nothing_leaks(
        &secrets,
        "the ledger",
        &serde_json::to_string(&last_ok).unwrap(),
    );
}

#[test]
fn revoking_the_grant_stops_the_next_statement() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    assert!(
        query(&data, ANALYST, &format!("SELECT count(*) FROM {TABLE}"))
            .status
            .success()
    );
    let grants = ok_json(
        &data,
        &[
            "access", "list", "--grants", "--view", "provided", "--as", OWNER, "--json",
        ],
    );
    let grant = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["resource"] == "308001003/000003")
        .expect("the demo's grant");
    let id = grant["id"].as_i64().unwrap().to_string();
    tongchou_ok(
        &data,
        &[
            "access",
            "revoke",
            &id,
            "--as",
            OWNER,
            "--reason",
            "监督结束 supervision closed",
        ],
    );
    let out = query(&data, ANALYST, &format!("SELECT count(*) FROM {TABLE}"));
    assert!(!out.status.success(), "the revoked grant still reads");
}

#[test]
fn rest_runs_the_same_governed_statement_and_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let analyst = common::bearer(&common::token(&data, ANALYST, "read,query"));
    let reader = common::bearer(&common::token(&data, ANALYST, "read"));
    let (_server, base) = common::serve(&data);
    let http = common::agent();
    let post = |auth: &str, body: Value| common::post_query(&http, &base, auth, &body);
    let sql = format!("SELECT person_id, name, destination FROM {TABLE} LIMIT 20");
    let (status, text) = post(
        &analyst,
        serde_json::json!({"sql": sql, "purpose": PURPOSE}),
    );
    assert_eq!(status, 200, "{text}");
    let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter()
            .all(|r| r["destination"] == "澳门" && r["name"].as_str().unwrap().contains('*'))
    );
    let (status, text) = post(
        &analyst,
        serde_json::json!({"sql": sql, "purpose": PURPOSE, "format": "csv"}),
    );
    assert_eq!(status, 200);
    assert!(text.starts_with("person_id,name,destination\n"), "{text}");
    let mut xlsx = http
        .post(format!("{base}/api/query"))
        .header("Authorization", &analyst)
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"sql": sql, "purpose": PURPOSE, "format": "xlsx"}).to_string())
        .unwrap();
    assert_eq!(xlsx.status().as_u16(), 200);
    assert!(
        xlsx.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("spreadsheetml")
    );
    let book = xlsx.body_mut().read_to_vec().unwrap();
    assert!(book.starts_with(b"PK"), "an XLSX file is a zip archive");
    let (status, _) = post(&reader, serde_json::json!({"sql": sql, "purpose": PURPOSE}));
    assert_eq!(status, 403, "a read-only token cannot query");
    let (status, text) = post(
        &analyst,
        serde_json::json!({"sql": r#"SELECT * FROM "佛山市南海区人力资源和社会保障局"."社会保险参保缴费信息""#, "purpose": PURPOSE}),
    );
    assert_eq!(status, 404, "{text}");
    let (status, _) = post(
        &analyst,
        serde_json::json!({"sql": "DROP TABLE x", "purpose": PURPOSE}),
    );
    assert_eq!(status, 403);

    let entries = ledger_search(&data, &["--kind", "statement"]);
    let rest: Vec<&Value> = entries
        .iter()
        .filter(|e| e["front_door"] == "rest")
        .collect();
    assert!(rest.len() >= 5, "{rest:?}");
    assert!(rest.iter().any(|e| e["outcome"] == "denied"));
    let tail = ok_json(&data, &["ledger", "tail", "--json", "-n", "30"]);
    let ok = tail
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["front_door"] == "rest" && e["kind"] == "statement" && e["rows"] == 20)
        .expect("the REST statement is recorded with its rows");
    assert_eq!(ok["statement"], sql);
    assert_eq!(ok["purpose"], PURPOSE);
    assert_eq!(
        ok["row_filters"]["308001003/000003"],
        "destination = '澳门'"
    );
}

fn psql(port: u16, user: &str, password: &str, database: &str, sql: &str) -> std::process::Output {
    common::psql(port, user, password, database, &[sql])
}

/// One statement over the simple query protocol, spoken by hand: the `DataRow` messages
/// the client received, byte for byte (type, length and body), as a wire capture shows them.
fn data_rows_received(port: u16, user: &str, password: &str, database: &str, sql: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend(((body.len() + 4) as i32).to_be_bytes());
        m.extend(body);
        m
    }
    fn next(socket: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        socket.read_exact(&mut head).unwrap();
        let len = i32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        socket.read_exact(&mut body).unwrap();
        assert_ne!(head[0], b'E', "{}", String::from_utf8_lossy(&body));
        (head[0], body)
    }
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut startup = 196_608i32.to_be_bytes().to_vec();
    for text in ["user", user, "database", database, ""] {
        startup.extend(text.as_bytes());
        startup.push(0);
    }
    let mut framed = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
    framed.extend(startup);
    socket.write_all(&framed).unwrap();
    loop {
        match next(&mut socket) {
            (b'R', body) if body[..4] == 3i32.to_be_bytes() => socket
                .write_all(&message(b'p', format!("{password}\0").as_bytes()))
                .unwrap(),
            (b'Z', _) => break,
            _ => {}
        }
    }
    socket
        .write_all(&message(b'Q', format!("{sql}\0").as_bytes()))
        .unwrap();
    let mut rows = Vec::new();
    loop {
        match next(&mut socket) {
            (b'D', body) => rows.extend(message(b'D', &body)),
            (b'Z', _) => return rows,
            _ => {}
        }
    }
}

#[test]
fn psql_signs_in_with_the_platform_password_and_reads_governed_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    let (_server, _, port) = common::serve_pg(&data, &common::agent());
    let password = password_of(&data, ANALYST);

    let out = psql(
        port,
        ANALYST,
        &password,
        PURPOSE,
        &format!("SELECT person_id, name, destination FROM {TABLE} LIMIT 50"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 50, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.ends_with("|澳门") && l.starts_with('P')),
        "{text}"
    );
    assert_nothing_leaks(&secrets, "psql", &text);

    // The ledger's digest is of the rows as they crossed the wire: a client can check it.
    let sql = format!("SELECT person_id, destination FROM {TABLE} LIMIT 7");
    let received = data_rows_received(port, ANALYST, &password, PURPOSE, &sql);
    let entries = ok_json(&data, &["ledger", "tail", "--json", "-n", "20"]);
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["front_door"] == "pg" && e["statement"] == sql.as_str())
        .expect("the statement is in the ledger");
    assert_eq!(entry["rows"], 7);
    let analyst = accounts(&data)
        .into_iter()
        .find(|a| a["user"] == ANALYST)
        .unwrap();
    assert_eq!(
        entry["unit"], analyst["unit"],
        "the unit the statement ran as"
    );
    use sha2::Digest;
    assert_eq!(
        entry["result_digest"],
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&received)))
    );

    // Attacks over the wire fare no better.
    for sql in [
        format!(
            "SELECT count(*) FROM {TABLE} WHERE person_id = '{}'",
            secrets.ids[0]
        ),
        format!("SELECT CASE WHEN destination <> '澳门' THEN 1/0 ELSE 0 END FROM {TABLE}"),
        format!("EXPLAIN SELECT * FROM {TABLE}"),
        format!("COPY (SELECT * FROM {TABLE}) TO STDOUT"),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let out = psql(port, ANALYST, &password, PURPOSE, &sql);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("Divide by zero"), "{sql}: {text}");
        assert!(
            !text.contains("澳门'") && !text.contains("governed_mask"),
            "{sql}: {text}"
        );
        assert_nothing_leaks(&secrets, &sql, &text);
    }
    let entries = ok_json(&data, &["ledger", "tail", "--json", "-n", "20"]);
    let refused = entries
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["front_door"] == "pg" && e["outcome"] != "allowed")
        .expect("the refused statements are in the ledger");
    assert_eq!(refused["unit"], analyst["unit"], "{refused}");

    // A wrong password is refused; an API token with the query scope works as one.
    let out = psql(port, ANALYST, "not the password", PURPOSE, "SELECT 1");
    assert!(!out.status.success());
    let token = common::token(&data, ANALYST, "read,query");
    let out = psql(
        port,
        ANALYST,
        &token,
        PURPOSE,
        &format!("SELECT count(*) FROM {TABLE}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read_only = common::token(&data, ANALYST, "read");
    assert!(
        !psql(port, ANALYST, &read_only, PURPOSE, "SELECT 1")
            .status
            .success()
    );
    // An unknown purpose sees nothing.
    let out = psql(
        port,
        ANALYST,
        &password,
        "curiosity",
        &format!("SELECT count(*) FROM {TABLE}"),
    );
    assert!(!out.status.success());

    let entries = ledger_search(&data, &["--kind", "statement", "--limit", "100"]);
    let pg_entries: Vec<&Value> = entries.iter().filter(|e| e["front_door"] == "pg").collect();
    assert!(pg_entries.len() >= 7, "{pg_entries:?}");
    assert!(pg_entries.iter().any(|e| e["outcome"] == "denied"));
    assert!(!ledger_search(&data, &["--kind", "sign_in_failed"]).is_empty());
    assert!(tongchou(&data, &["ledger", "verify"]).status.success());
}

/// psql's meta-commands and JDBC's `DatabaseMetaData` read `pg_catalog`: it lists the
/// resources the user may read for the purpose, with the granted columns, and nothing else.
#[test]
fn catalog_listings_show_only_what_the_user_may_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (_server, _, port) = common::serve_pg(&data, &common::agent());
    let listed = |user: &str, command: &str| {
        let out = psql(port, user, &password_of(&data, user), PURPOSE, command);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tables = listed(ANALYST, "\\dt");
    assert!(
        tables.contains("佛山市公安局南海分局出入境管理大队|出入境记录|table"),
        "{tables}"
    );
    let described = listed(ANALYST, &format!("\\d {TABLE}"));
    for column in ["person_id|text", "crossed_on|date", "destination|text"] {
        assert!(described.contains(column), "{described}");
    }
    let schemas = listed(ANALYST, "\\dn");
    assert!(
        schemas.contains("佛山市公安局南海分局出入境管理大队"),
        "{schemas}"
    );

    // Another user, same purpose, no grant on the travel records: not listed anywhere.
    for command in [
        "\\dt",
        "\\dt *.*",
        "SELECT relname FROM pg_catalog.pg_class",
    ] {
        let text = listed("leader", command);
        assert!(!text.contains("出入境记录"), "{command}: {text}");
        assert!(!text.is_empty(), "{command} lists the open resources");
    }
    let out = psql(
        port,
        "leader",
        &password_of(&data, "leader"),
        PURPOSE,
        &format!("\\d {TABLE}"),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Did not find"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psycopg 3 speaks the extended protocol (Parse/Bind/Describe/Execute) inside a
/// transaction, with parameters bound server-side.
#[test]
fn psycopg_binds_parameters_through_the_extended_protocol() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    let (_server, _, port) = common::serve_pg(&data, &common::agent());
    let script = r#"
import datetime, json, sys
import psycopg
port, user, password, purpose, table, raw_id = sys.argv[1:]
out = {}
with psycopg.connect(host="127.0.0.1", port=int(port), user=user, password=password, dbname=purpose) as conn:
    cur = conn.cursor()
    cur.execute(f"SELECT person_id, destination, crossed_on FROM {table} WHERE destination = %s AND crossed_on >= %s ORDER BY record_no LIMIT 5", ("澳门", datetime.date(2000, 1, 1)))
    rows = cur.fetchall()
    out["rows"] = [[r[0], r[1], r[2].isoformat()] for r in rows]
    out["columns"] = [d.name for d in cur.description]
    cur.execute(f"SELECT count(*) FROM {table} WHERE person_id = %s", (raw_id,))
    out["raw_id_count"] = cur.fetchone()[0]
    cur.execute(f"SELECT count(*) FROM {table} WHERE destination = %s", ("泰国",))
    out["hidden_count"] = cur.fetchone()[0]
    try:
        cur.execute("SET datafusion.execution.batch_size = 1")
        out["set"] = "ran"
    except psycopg.Error as e:
        out["set"] = "refused"
print(json.dumps(out, ensure_ascii=False))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([
            &port.to_string(),
            ANALYST,
            &password_of(&data, ANALYST),
            PURPOSE,
            TABLE,
            &secrets.ids[0],
        ])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "psycopg (installed by .ci/run): {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_leaks(&secrets, "psycopg", &text);
    let answer: Value = serde_json::from_str(&text).unwrap();
    let rows = answer["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{answer}");
    assert!(
        rows.iter()
            .all(|r| r[1] == "澳门" && r[0].as_str().unwrap().starts_with('P'))
    );
    assert_eq!(
        answer["columns"],
        serde_json::json!(["person_id", "destination", "crossed_on"])
    );
    assert_eq!(answer["raw_id_count"], 0);
    assert_eq!(answer["hidden_count"], 0);
    assert_eq!(answer["set"], "refused");
    // Parameters are in the ledger with the statement, ID-shaped ones redacted.
    let tail = ok_json(&data, &["ledger", "tail", "--json", "-n", "20"]);
    let entries = tail.as_array().unwrap();
    let bound = entries
        .iter()
        .filter(|e| e["front_door"] == "pg")
        .filter_map(|e| e["statement"].as_str())
        .find(|s| s.contains("-- parameters: 泰国"));
    assert!(bound.is_some(), "{tail}");
    let ledger = tail.to_string();
    assert!(!ledger.contains(secrets.ids[0].as_str()));
}

#[test]
fn limits_are_set_per_role_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    std::fs::write(data.join("config/query.toml"), "[analyst]\nmax_rows = 3\n").unwrap();
    let out = query(&data, ANALYST, &format!("SELECT * FROM {TABLE}"));
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("more than 3 rows"), "{error}");
    assert_eq!(
        rows(&data, ANALYST, &format!("SELECT * FROM {TABLE} LIMIT 3")).len(),
        3
    );
    assert!(rows(&data, OWNER, &format!("SELECT * FROM {TABLE}")).len() > 3);

    std::fs::write(data.join("config/query.toml"), "[analysts]\nmax_rows = 3\n").unwrap();
    let out = query(&data, OWNER, "SELECT 1");
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && error.contains("query.toml"),
        "{error}"
    );
}

/// The PostgreSQL JDBC driver (DBeaver and other JDBC tools) with prepared statements.
#[test]
fn jdbc_runs_prepared_statements() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    let (_server, _, port) = common::serve_pg(&data, &common::agent());
    let out = std::process::Command::new("java")
        .args([
            "-cp",
            "/usr/share/java/postgresql.jar",
            "tests/jdbc/Probe.java",
        ])
        .args([
            &port.to_string(),
            ANALYST,
            &password_of(&data, ANALYST),
            PURPOSE,
            TABLE,
        ])
        .output()
        .expect("java runs (.ci/run installs a JDK and libpostgresql-jdbc-java)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_leaks(&secrets, "JDBC", &text);
    assert!(
        text.contains("table|佛山市公安局南海分局出入境管理大队|出入境记录"),
        "{text}"
    );
    assert!(text.contains("column|crossed_on|date"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("row|")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.ends_with("|澳门") && r.contains("|P"))
    );
    assert!(text.contains("hidden|0"), "{text}");
}

/// The travel records as they were (`@v1`, `@2026-11-27 18:00:00`) or their versions
/// (`$history`).
fn table_at(suffix: &str) -> String {
    format!("{}{suffix}\"", TABLE.trim_end_matches('"'))
}

/// A running server keeps sessions and small tables in memory; a load by another process
/// shows in its next statement, through the grant; earlier versions stay readable, through
/// the same grant.
#[test]
fn a_load_shows_in_the_next_statement_and_earlier_versions_stay_governed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    let (_server, base) = common::serve(&data);
    let http = common::agent();
    let answer = |user: &str, sql: &str| {
        let auth = common::bearer(&common::token(&data, user, "read,query"));
        let body = serde_json::json!({"sql": sql, "purpose": PURPOSE});
        common::post_query(&http, &base, &auth, &body)
    };
    let count_in = |user: &str, table: &str| {
        let (status, text) = answer(user, &format!("SELECT count(*) AS n FROM {table}"));
        assert_eq!(status, 200, "{text}");
        let rows: Value = serde_json::from_str(&text).unwrap();
        rows[0]["n"].as_u64().unwrap()
    };
    let count = |user: &str| count_in(user, TABLE);
    let (owner_before, analyst_before) = (count(OWNER), count(ANALYST));
    let person = rows(
        &data,
        OWNER,
        &format!("SELECT person_id, name FROM {TABLE} LIMIT 1"),
    );
    let (id, name) = (
        person[0]["person_id"].as_str().unwrap(),
        person[0]["name"].as_str().unwrap(),
    );
    let file = tmp.path().join("more.csv");
    std::fs::write(
        &file,
        format!(
            "record_no,person_id,name,direction,crossed_on,port,destination,document_type,document_no\n\
             CRJ9999999991,{id},{name},出境,2024-05-01,拱北口岸,澳门,往来港澳通行证,C00000001\n\
             CRJ9999999992,{id},{name},出境,2024-06-01,白云机场口岸,泰国,普通护照,E00000001\n"
        ),
    )
    .unwrap();
    tongchou_ok(
        &data,
        &["ingest", "308001003/000003", file.to_str().unwrap()],
    );
    assert_eq!(count(OWNER), owner_before + 2);
    assert_eq!(
        count(ANALYST),
        analyst_before + 1,
        "only the 澳门 row is granted"
    );

    // Time travel: version 1 (the demo's load) as it was, through the analyst's grant.
    assert_eq!(count_in(OWNER, &table_at("@v1")), owner_before);
    assert_eq!(count_in(ANALYST, &table_at("@v1")), analyst_before);
    assert_eq!(count_in(ANALYST, &table_at("@v2")), analyst_before + 1);
    let (status, text) = answer(
        ANALYST,
        &format!(
            "SELECT person_id, name, destination FROM {} ORDER BY record_no LIMIT 200",
            table_at("@v1")
        ),
    );
    assert_eq!(status, 200, "{text}");
    assert_nothing_leaks(&secrets, "time travel", &text);
    let old: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(
        old.iter().all(
            |r| r["destination"] == "澳门" && r["person_id"].as_str().unwrap().starts_with('P')
        )
    );
    let (status, text) = answer(
        ANALYST,
        &format!(
            "SELECT count(*) AS n FROM {} WHERE destination = '泰国'",
            table_at("@v1")
        ),
    );
    assert_eq!((status, text.contains("\"n\":0")), (200, true), "{text}");
    // A time: the end of a day before the first load had no data yet.
    let (status, text) = answer(
        ANALYST,
        &format!("SELECT * FROM {}", table_at("@2020-01-01")),
    );
    assert!(status >= 400 && text.contains("no data at"), "{text}");
    let (status, text) = answer(ANALYST, &format!("SELECT * FROM {}", table_at("@v99")));
    assert!(status >= 400 && text.contains("versions 0 to 2"), "{text}");
    let (status, text) = answer(
        ANALYST,
        &format!("SELECT * FROM {}", table_at("@yesterday")),
    );
    assert!(status >= 400 && text.contains("write @v3"), "{text}");

    // History: versions with time and operation, no row counts.
    let (status, text) = answer(
        ANALYST,
        &format!("SELECT * FROM {} ORDER BY version", table_at("$history")),
    );
    assert_eq!(status, 200, "{text}");
    let history: Vec<Value> = serde_json::from_str(&text).unwrap();
    let versions: Vec<u64> = history
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [0, 1, 2], "{text}");
    assert_eq!(
        history[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["committed_at", "operation", "version"]
    );

    // Without a grant, old versions and history do not exist either.
    for suffix in ["@v1", "$history"] {
        let (status, text) = answer(
            "leader",
            &format!("SELECT count(*) FROM {}", table_at(suffix)),
        );
        assert!(
            status >= 400 && text.contains("not found"),
            "{suffix}: {text}"
        );
    }
    let recent = ok_json(&data, &["ledger", "tail", "--json", "-n", "40"]);
    assert!(
        recent.as_array().unwrap().iter().any(|e| e["statement"]
            .as_str()
            .unwrap_or("")
            .contains("@v1")
            && e["user"] == ANALYST
            && e["resources"].to_string().contains("308001003/000003")),
        "{recent}"
    );
}

/// With a certificate, the PostgreSQL port offers TLS too: `sslmode=require` connects
/// (and fails against a server without one).
#[test]
fn the_postgresql_port_speaks_tls_with_the_servers_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let (cert, key) = common::self_signed(tmp.path());
    let https = common::https_agent();
    let (tls_port, plain_port) = (common::free_port(), common::free_port());
    let (_tls_server, _) = common::serve_with(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--pg",
            &format!("127.0.0.1:{tls_port}"),
        ],
        "https",
        &https,
    );
    let (_plain_server, _) = common::serve_with(
        &data,
        &["--pg", &format!("127.0.0.1:{plain_port}")],
        "http",
        &common::agent(),
    );
    let password = password_of(&data, ANALYST);
    let require_tls = |port: u16| {
        std::process::Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", ANALYST])
            .args(["-d", PURPOSE, "-X", "-A", "-t", "-c"])
            .arg(format!("SELECT count(*) FROM {TABLE}"))
            .env("PGPASSWORD", &password)
            .env("PGSSLMODE", "require")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    };
    let out = require_tls(tls_port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let out = require_tls(plain_port);
    assert!(
        !out.status.success(),
        "sslmode=require reached a server without TLS"
    );
}
