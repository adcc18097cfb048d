//! The bypass suite (issue 7): attack statements sent by the procuratorate's analyst over
//! REST and over the PostgreSQL wire to a running server, each checked for raw values of
//! masked or ungranted columns, rows outside the grant, the mask key and the policy in
//! results, error messages and EXPLAIN output. The grant: exit-entry records with
//! destination = '澳门' only, person IDs as keyed pseudonyms, names masked.

mod common;

use std::path::Path;
use std::process::Output;

use common::{ok_json, password_of, tiny_demo, tongchou};
use serde_json::Value;

const TABLE: &str = r#""佛山市公安局南海分局出入境管理大队"."出入境记录""#;
const RESOURCE_DIR: &str = "308001003_000003";
const ANALYST: &str = "procuratorate_analyst";
const OWNER: &str = "exit_entry_steward";
const PURPOSE: &str = "procuratorial_supervision";

/// What the analyst must never see.
struct Secrets {
    ids: Vec<String>,
    names: Vec<String>,
    /// Record numbers of rows outside the grant (other destinations).
    hidden_records: Vec<String>,
    mask_key: String,
}

fn owner_rows(data: &Path, sql: &str) -> Vec<Value> {
    let out = tongchou(
        data,
        &[
            "query",
            "--as",
            OWNER,
            "--purpose",
            PURPOSE,
            "--format",
            "json",
            sql,
        ],
    );
    assert!(out.status.success(), "{sql}");
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn secrets(data: &Path) -> Secrets {
    let all = owner_rows(
        data,
        &format!("SELECT record_no, person_id, name, destination FROM {TABLE}"),
    );
    let text = |r: &Value, k: &str| r[k].as_str().unwrap().to_string();
    let mut secrets = Secrets {
        ids: all.iter().map(|r| text(r, "person_id")).collect(),
        names: all
            .iter()
            .map(|r| text(r, "name"))
            .filter(|n| n.chars().count() >= 2)
            .collect(),
        hidden_records: all
            .iter()
            .filter(|r| r["destination"] != "澳门")
            .map(|r| text(r, "record_no"))
            .collect(),
        mask_key: std::fs::read_to_string(data.join("config/mask-master.key"))
            .unwrap()
            .trim()
            .to_string(),
    };
    for list in [&mut secrets.ids, &mut secrets.names] {
        list.sort();
        list.dedup();
    }
    assert!(secrets.ids.len() > 10 && !secrets.hidden_records.is_empty());
    secrets
}

/// Checks `text` for what the analyst must never see — except what `sql` itself spelled
/// out (an error or EXPLAIN may quote the statement back).
fn assert_nothing_leaks(secrets: &Secrets, sql: &str, what: &str, text: &str) {
    let leaked = secrets
        .ids
        .iter()
        .chain(&secrets.names)
        .chain(&secrets.hidden_records)
        .map(String::as_str)
        .chain([
            secrets.mask_key.as_str(),
            "Divide by zero",
            "governed_mask",
            "tables/",
            "mask-master",
        ])
        .find(|s| text.contains(s) && !sql.contains(s));
    assert!(leaked.is_none(), "{what} shows {leaked:?}: {text}");
}

/// What an attack must also do, beyond leaking nothing.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Runs or fails; either way nothing leaks.
    Anything,
    /// Succeeds and counts zero rows (column `n`).
    Zero,
    /// Is refused.
    Refused,
}

fn attacks(secrets: &Secrets, data: &Path) -> Vec<(String, Expect)> {
    use Expect::*;
    let id = &secrets.ids[0];
    let id2 = &secrets.ids[1];
    let name = &secrets.names[0];
    let hidden = &secrets.hidden_records[0];
    let tables = data.join("tables").display().to_string();
    let t = TABLE;
    let at = |suffix: &str| format!("{}{suffix}\"", t.trim_end_matches('"'));
    let (v1, as_of, history) = (at("@v1"), at("@2100-01-01"), at("$history"));
    let mut list: Vec<(String, Expect)> = [
        // Predicates on masked columns and on the row filter's column.
        (format!("SELECT count(*) AS n FROM {t} WHERE person_id = '{id}'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE person_id LIKE '{}%'", &id[..10]), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE person_id IN ('{id}', '{id2}')"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE person_id BETWEEN '440000' AND '449999'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE starts_with(person_id, '{}')", &id[..6]), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE name = '{name}'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE destination = '泰国'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE destination <> '澳门'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE destination IN ('泰国', '香港') OR destination IS NULL"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE record_no = '{hidden}'"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE record_no >= '{hidden}' AND destination <> '澳门'"), Zero),
        // Error oracles: an error only excluded rows or raw values could raise.
        (format!("SELECT CASE WHEN destination <> '澳门' THEN 1/0 ELSE 0 END AS x FROM {t}"), Anything),
        (format!("SELECT CASE WHEN person_id = '{id}' THEN 1/0 ELSE 0 END AS x FROM {t}"), Anything),
        (format!("SELECT 1 / (CASE WHEN record_no = '{hidden}' THEN 0 ELSE 1 END) AS x FROM {t}"), Anything),
        (format!("SELECT * FROM {t} WHERE destination = '泰国' AND 1 / 0 = 1"), Anything),
        (format!("SELECT * FROM {t} WHERE record_no = '{hidden}' AND CAST(name AS INT) = 1"), Anything),
        (format!("SELECT CAST(person_id AS BIGINT) AS x FROM {t}"), Anything),
        (format!("SELECT CAST(destination AS INT) AS x FROM {t} WHERE destination <> '澳门'"), Anything),
        (format!("SELECT arrow_cast(person_id, 'Int64') AS x FROM {t}"), Anything),
        (format!("SELECT to_date(person_id) AS x FROM {t} LIMIT 5"), Anything),
        (format!("SELECT to_timestamp(name) AS x FROM {t} LIMIT 5"), Anything),
        // Aggregates, grouping, ordering, limits.
        (format!("SELECT min(person_id) AS a, max(person_id) AS b, min(name) AS c, max(name) AS d FROM {t}"), Anything),
        (format!("SELECT count(DISTINCT person_id) AS n, approx_distinct(name) AS m FROM {t}"), Anything),
        (format!("SELECT string_agg(name, ',') AS s FROM {t}"), Anything),
        (format!("SELECT array_agg(person_id) AS a FROM {t}"), Anything),
        (format!("SELECT destination, count(*) AS n FROM {t} GROUP BY destination"), Anything),
        (format!("SELECT name, count(*) AS n FROM {t} GROUP BY name ORDER BY n DESC LIMIT 3"), Anything),
        (format!("SELECT * FROM {t} ORDER BY person_id LIMIT 1"), Anything),
        (format!("SELECT * FROM {t} ORDER BY name DESC LIMIT 1 OFFSET 2"), Anything),
        (format!("SELECT * FROM {t} LIMIT 1"), Anything),
        // Windows.
        (format!("SELECT person_id, row_number() OVER (PARTITION BY person_id ORDER BY crossed_on) AS k FROM {t} LIMIT 5"), Anything),
        (format!("SELECT lag(name) OVER (ORDER BY record_no) AS l, first_value(person_id) OVER (ORDER BY crossed_on) AS f FROM {t} LIMIT 5"), Anything),
        // CTEs, subqueries, set operations, joins.
        (format!("WITH x AS (SELECT * FROM {t}) SELECT count(*) AS n FROM x WHERE destination = '香港'"), Zero),
        (format!("WITH RECURSIVE r(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM r WHERE k < 3) SELECT (SELECT count(*) FROM {t} WHERE destination <> '澳门') AS n FROM r LIMIT 1"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE person_id IN (SELECT person_id FROM {t} WHERE destination = '泰国')"), Zero),
        (format!("SELECT count(*) AS n FROM {t} WHERE EXISTS (SELECT 1 FROM {t} WHERE record_no = '{hidden}')"), Zero),
        (format!("SELECT (SELECT max(person_id) FROM {t}) AS m"), Anything),
        (format!("SELECT destination FROM {t} UNION SELECT destination FROM {t}"), Anything),
        (format!("SELECT person_id FROM {t} INTERSECT SELECT person_id FROM {t}"), Anything),
        (format!("SELECT record_no FROM {t} EXCEPT SELECT record_no FROM {t} WHERE destination = '澳门'"), Anything),
        (format!("SELECT count(*) AS n FROM (SELECT destination FROM {t} UNION ALL SELECT destination FROM {t}) u WHERE destination <> '澳门'"), Zero),
        (format!("SELECT a.person_id FROM {t} a JOIN {t} b ON a.person_id = b.person_id WHERE b.destination = '泰国'"), Anything),
        (format!("SELECT count(*) AS n FROM {t} a CROSS JOIN {t} b WHERE a.destination <> b.destination"), Zero),
        (format!("SELECT count(*) AS n FROM {t} a JOIN (SELECT '{id}' AS id) b ON a.person_id = b.id"), Zero),
        // String functions over masked values.
        (format!("SELECT upper(person_id) AS a, lower(name) AS b, reverse(name) AS c FROM {t} LIMIT 5"), Anything),
        (format!("SELECT substr(person_id, 1, 6) AS a, left(name, 1) AS b, right(person_id, 4) AS c FROM {t} LIMIT 5"), Anything),
        (format!("SELECT replace(person_id, 'P', '') AS a, regexp_replace(name, '[*]', '', 'g') AS b FROM {t} LIMIT 5"), Anything),
        (format!("SELECT md5(person_id) AS a, sha256(name) AS b FROM {t} LIMIT 3"), Anything),
        (format!("SELECT encode(CAST(person_id AS BYTEA), 'hex') AS a FROM {t} LIMIT 3"), Anything),
        (format!("SELECT length(name) AS a, octet_length(person_id) AS b, ascii(name) AS c FROM {t} LIMIT 3"), Anything),
        // The catalog, settings and plans.
        ("SELECT * FROM information_schema.tables".into(), Anything),
        ("SELECT * FROM information_schema.columns".into(), Anything),
        ("SELECT * FROM information_schema.views".into(), Anything),
        ("SELECT * FROM information_schema.df_settings".into(), Anything),
        ("SHOW ALL".into(), Anything),
        ("SHOW TABLES".into(), Anything),
        ("SELECT * FROM pg_catalog.pg_tables".into(), Anything),
        ("SELECT * FROM pg_catalog.pg_class".into(), Anything),
        (format!("DESCRIBE {t}"), Anything),
        (format!("EXPLAIN SELECT * FROM {t} WHERE person_id = '{id}'"), Anything),
        (format!("EXPLAIN VERBOSE SELECT * FROM {t} WHERE destination = '泰国'"), Anything),
        (format!("EXPLAIN ANALYZE SELECT * FROM {t}"), Refused),
        // Statements that are not queries, and ways around the catalog.
        (format!("COPY (SELECT * FROM {t}) TO '/tmp/tongchou-attack-leak.csv'"), Refused),
        (format!("CREATE VIEW v AS SELECT * FROM {t}"), Refused),
        (format!("CREATE TABLE x AS SELECT * FROM {t}"), Refused),
        (format!("CREATE EXTERNAL TABLE raw STORED AS PARQUET LOCATION '{tables}/{RESOURCE_DIR}'"), Refused),
        ("SET datafusion.execution.batch_size = 1".into(), Refused),
        (format!("INSERT INTO {t} SELECT * FROM {t}"), Refused),
        (format!("DELETE FROM {t}"), Refused),
        (format!("DROP TABLE {t}"), Refused),
        (format!("SELECT 1; SELECT * FROM {t}"), Refused),
        (format!("SELECT * FROM '{tables}/{RESOURCE_DIR}'"), Refused),
        (r#"SELECT * FROM "佛山市南海区人力资源和社会保障局"."社会保险参保缴费信息""#.into(), Refused),
        (format!("SELECT * FROM {t} FOR SYSTEM_TIME AS OF '2014-01-01'"), Refused),
        // Time travel and history obey the same grant.
        (format!("SELECT count(*) AS n FROM {v1} WHERE person_id = '{id}'"), Zero),
        (format!("SELECT count(*) AS n FROM {v1} WHERE destination <> '澳门'"), Zero),
        (format!("SELECT count(*) AS n FROM {v1} WHERE record_no = '{hidden}'"), Zero),
        (format!("SELECT CASE WHEN destination <> '澳门' THEN 1/0 ELSE 0 END AS x FROM {v1}"), Anything),
        (format!("SELECT min(person_id) AS a, max(name) AS b FROM {as_of}"), Anything),
        (format!("SELECT * FROM {history}"), Anything),
        (format!("EXPLAIN SELECT * FROM {v1} WHERE person_id = '{id}'"), Anything),
        (r#"SELECT * FROM "佛山市南海区人力资源和社会保障局"."社会保险参保缴费信息@v1""#.into(), Refused),
        (r#"SELECT * FROM "佛山市南海区人力资源和社会保障局"."社会保险参保缴费信息$history""#.into(), Refused),
    ]
    .into_iter()
    .collect();
    list.push((
        format!("SELECT count(*) AS n FROM tongchou.{t} WHERE destination = '泰国'"),
        Zero,
    ));
    list
}

fn psql(port: u16, password: &str, sql: &str) -> Output {
    std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U", ANALYST, "-d", PURPOSE, "-X", "-A", "-F", "|", "-c", sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is installed (.ci/run installs postgresql-client)")
}

/// The `n` a count attack returned: the JSON body over REST, the row under the header
/// over psql.
fn counted(text: &str, over_rest: bool) -> Option<u64> {
    if over_rest {
        serde_json::from_str::<Value>(text).ok()?[0]["n"].as_u64()
    } else {
        text.lines().nth(1)?.trim().parse().ok()
    }
}

#[test]
fn every_attack_fails_over_rest_and_the_postgresql_wire() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    let attacks = attacks(&secrets, &data);
    assert!(attacks.len() >= 60, "{} attacks", attacks.len());
    let http = common::agent();
    let (_server, base, port) = common::serve_pg(&data, &http);
    let password = password_of(&data, ANALYST);
    let auth = common::bearer(&common::token(&data, ANALYST, "read,query"));
    let rest = |sql: &str| {
        let body = serde_json::json!({"sql": sql, "purpose": PURPOSE});
        let (status, text) = common::post_query(&http, &base, &auth, &body);
        (status == 200, text)
    };

    for (sql, expect) in &attacks {
        let out = psql(port, &password, sql);
        let wire = (
            out.status.success() && out.stderr.is_empty(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        for (door, (ok, text)) in [("REST", rest(sql)), ("psql", wire)] {
            let what = format!("{door}: {sql}");
            assert_nothing_leaks(&secrets, sql, &what, &text);
            match expect {
                Expect::Refused => assert!(!ok, "{what} ran: {text}"),
                Expect::Zero => {
                    assert!(ok, "{what} failed: {text}");
                    assert_eq!(
                        counted(&text, door == "REST"),
                        Some(0),
                        "{what} counted hidden rows: {text}"
                    );
                }
                Expect::Anything => {}
            }
        }
    }
    assert!(!Path::new("/tmp/tongchou-attack-leak.csv").exists());

    // Every attack is in the ledger, from both doors, and the ledger leaks nothing either.
    let tail = ok_json(&data, &["ledger", "tail", "--json", "-n", "1000"]);
    let statements: Vec<&Value> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "statement" && e["user"] == ANALYST)
        .collect();
    for door in ["rest", "pg"] {
        let n = statements
            .iter()
            .filter(|e| e["front_door"] == door)
            .count();
        assert!(n >= attacks.len(), "{n} {door} statements in the ledger");
    }
    // Statements are recorded as typed, except ID-shaped words; results never are.
    let ledger = serde_json::to_string(&tail).unwrap();
    for id in &secrets.ids {
        assert!(!ledger.contains(id.as_str()), "the ledger holds a raw ID");
    }
    assert!(!ledger.contains(&secrets.mask_key));
}

const EXIT_ENTRY: &str = "308001003/000003";

/// The code of the first resource of the demo district's catalog that `pick` chooses.
fn resource_where(data: &Path, pick: impl Fn(&Value) -> bool) -> String {
    let catalog: Value =
        serde_json::from_slice(&std::fs::read(data.join("district/catalog.json")).unwrap())
            .unwrap();
    catalog["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| pick(r))
        .expect("the demo district has such a resource")["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// JSON objects without the change columns, as comparable text.
fn rows_without_changes(rows: &[Value]) -> std::collections::BTreeSet<String> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with('_'));
            r.to_string()
        })
        .collect()
}

/// Issue 25: the exchange door handed every row and field of any resource to anyone who
/// subscribed. A subscription now asks the same decision as a query, and a pull is the
/// subscriber's governed statement.
#[test]
fn subscriptions_and_pulls_obey_the_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_demo(tmp.path());
    let secrets = secrets(&data);
    // Reads of more than 100 people keep them in a set beside their entry.
    std::fs::write(data.join("config/ledger.toml"), "subject_rows = 100\n").unwrap();
    let http = common::agent();
    let (_server, base) = common::serve(&data);
    let auth = common::bearer(&common::token(&data, ANALYST, "read,query"));
    let send = |method: &str, path: &str, body: Option<Value>| -> (u16, String) {
        let url = format!("{base}{path}");
        let mut r = match body {
            Some(body) => http
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.to_string())
                .unwrap(),
            None => {
                assert_eq!(method, "GET");
                http.get(&url)
                    .header("Authorization", &auth)
                    .call()
                    .unwrap()
            }
        };
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let subscribe = |code: &str, purpose: &str| {
        send(
            "POST",
            "/api/exchange/subscriptions",
            Some(serde_json::json!({"resource": code, "purpose": purpose})),
        )
    };
    let pull = |id: i64, format: &str| {
        send(
            "GET",
            &format!("/api/exchange/pull?subscription={id}&format={format}"),
            None,
        )
    };

    // The grant's resource: exactly what SELECT * gives, plus the change columns.
    let (status, text) = subscribe(EXIT_ENTRY, PURPOSE);
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, pulled) = pull(id, "json");
    assert_eq!(status, 200, "{pulled}");
    assert_nothing_leaks(&secrets, "", "the pull", &pulled);
    let rows: Vec<Value> = pulled
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1550, "the Macau rows only");
    let body = serde_json::json!({"sql": format!("SELECT * FROM {TABLE}"), "purpose": PURPOSE});
    let (status, selected) = common::post_query(&http, &base, &auth, &body);
    assert_eq!(status, 200, "{selected}");
    let selected: Vec<Value> = serde_json::from_str(&selected).unwrap();
    assert_eq!(rows_without_changes(&rows), rows_without_changes(&selected));
    let (status, again) = pull(id, "csv");
    assert_eq!(status, 200);
    assert_eq!(again.lines().count(), 1, "nothing changed: the header only");
    assert_nothing_leaks(&secrets, "", "the csv pull", &again);

    // Without a grant for the purpose, for a resource never shared, for leaders only.
    let (status, text) = subscribe(EXIT_ENTRY, "subsidy_review");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("access request"), "{text}");
    let never_shared = resource_where(&data, |r| r["share_type"] == "none");
    let (status, text) = subscribe(&never_shared, PURPOSE);
    assert_eq!(status, 403, "{text}");
    let leaders_only = resource_where(&data, |r| r["name"] == "企业纳税申报信息");
    let (status, text) = subscribe(&leaders_only, PURPOSE);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("leaders"), "{text}");
    // An unconditional resource shows its public fields only, never a secret one.
    let with_secret = resource_where(&data, |r| {
        r["share_type"] == "unconditional"
            && r["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == "bank_account")
    });
    let (status, text) = subscribe(&with_secret, PURPOSE);
    assert_eq!(status, 200, "{text}");
    let open_id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, text) = pull(open_id, "csv");
    assert_eq!(status, 200, "{text}");
    let header = text.lines().next().unwrap();
    assert!(!header.contains("bank_account"), "{header}");
    assert!(header.ends_with("_change,_version"), "{header}");

    // Someone else's subscription does not exist for the analyst.
    assert_eq!(pull(id + 1000, "json").0, 404);
    // Loads (with the server's paths) are the provider's; volume shows the analyst's own unit.
    assert_eq!(
        send(
            "GET",
            &format!("/api/exchange/loads?resource={EXIT_ENTRY}"),
            None
        )
        .0,
        403
    );
    let (status, volume) = send("GET", "/api/exchange/volume", None);
    assert_eq!(status, 200);
    let volume: Vec<Value> = serde_json::from_str(&volume).unwrap();
    assert!(!volume.is_empty());
    let mine = &volume[0]["consumer"];
    assert!(
        volume
            .iter()
            .all(|v| &v["consumer"] == mine || &v["provider"] == mine)
    );

    // The portal's preview and the console's downloads are the same statement.
    let mut r = http
        .get(format!("{base}/resource?code={EXIT_ENTRY}"))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_nothing_leaks(
        &secrets,
        "",
        "the preview",
        &r.body_mut().read_to_string().unwrap(),
    );
    let sql = format!("SELECT * FROM {TABLE}");
    for format in ["csv", "html"] {
        let mut r = http
            .post(format!("{base}/console"))
            .header("Authorization", &auth)
            .send_form([
                ("purpose", PURPOSE),
                ("sql", sql.as_str()),
                ("format", format),
            ])
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.body_mut().read_to_string().unwrap();
        assert_nothing_leaks(&secrets, &sql, &format!("the console's {format}"), &text);
        if format == "csv" {
            assert_eq!(
                text.trim_end().lines().count(),
                1 + 1550,
                "the Macau rows only"
            );
        }
    }

    // Every person a read touches is traced, whatever the alias or mask: the pull of 1,550
    // rows, an aliased and concatenated read of one record. Naming someone the statement
    // did not touch (a traveller to elsewhere only) puts nobody in their view.
    let traveller = &owner_rows(
        &data,
        &format!(
            "SELECT record_no, person_id FROM {TABLE} WHERE destination = '澳门' ORDER BY record_no LIMIT 1"
        ),
    )[0];
    let macau: std::collections::BTreeSet<String> = owner_rows(
        &data,
        &format!("SELECT DISTINCT person_id FROM {TABLE} WHERE destination = '澳门'"),
    )
    .iter()
    .map(|r| r["person_id"].as_str().unwrap().to_string())
    .collect();
    assert!(macau.len() > 100, "the pull's subjects are a set");
    let elsewhere = secrets.ids.iter().find(|id| !macau.contains(*id)).unwrap();
    for sql in [
        format!(
            "SELECT concat(person_id, '') AS pid FROM {TABLE} WHERE record_no = '{}'",
            traveller["record_no"].as_str().unwrap()
        ),
        format!("SELECT count(*) AS n FROM {TABLE} WHERE person_id = '{elsewhere}'"),
    ] {
        let body = serde_json::json!({"sql": sql, "purpose": PURPOSE});
        let (status, text) = common::post_query(&http, &base, &auth, &body);
        assert_eq!(status, 200, "{text}");
    }
    let uses_by_analyst = |id: &str| -> Vec<String> {
        ok_json(&data, &["ledger", "subject", id, "--json"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["user"] == ANALYST && e["front_door"] == "rest")
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    };
    // SELECT * above and the count over a masked column read every Macau row: they touched
    // the traveller too, among more people than their entries list.
    let mut seen = uses_by_analyst(traveller["person_id"].as_str().unwrap());
    seen.sort();
    assert_eq!(seen, ["pull", "statement", "statement", "statement"]);
    assert_eq!(uses_by_analyst(elsewhere), Vec::<String>::new());

    // An error raised while rows flow quotes no value: no rows leave through the message.
    let record = traveller["record_no"].as_str().unwrap();
    let sql = format!("SELECT CAST(string_agg(record_no, ';') AS INT) AS n FROM {TABLE}");
    let body = serde_json::json!({"sql": sql, "purpose": PURPOSE});
    let (status, text) = common::post_query(&http, &base, &auth, &body);
    assert_eq!(status, 400, "{text}");
    assert!(!text.contains(record), "the error carries rows: {text}");

    // IDs typed where no statement is expected are not written into the ledger either.
    let raw = &secrets.ids[0];
    let changes = TABLE.replace("出入境记录\"", &format!("出入境记录$changes@v{raw}\""));
    for (sql, purpose) in [
        (format!("SELECT count(*) AS n FROM {changes}"), PURPOSE),
        ("SELECT 1".to_string(), raw.as_str()),
    ] {
        let body = serde_json::json!({"sql": sql, "purpose": purpose});
        common::post_query(&http, &base, &auth, &body);
    }
    assert_eq!(pull(raw.parse::<i64>().unwrap_or(i64::MAX), "json").0, 404);
    let _ = http
        .post(format!("{base}/api/auth/sign-in"))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"name": raw, "password": "wrong password here"}).to_string());
    let tail = ok_json(&data, &["ledger", "tail", "--json", "-n", "60"]);
    let holding: Vec<&Value> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains(raw.as_str()))
        .collect();
    assert!(holding.is_empty(), "a raw ID in the ledger: {holding:?}");
    let failed = tail
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["statement"]
                .as_str()
                .is_some_and(|t| t.contains("string_agg"))
        })
        .expect("the failed statement is recorded");
    assert!(
        !failed["reason"].as_str().unwrap().contains(record),
        "the error's rows in the ledger: {failed}"
    );

    // The grant revoked: the next pull is refused, and the refusal is in the ledger.
    let grant = ok_json(
        &data,
        &[
            "access",
            "decide",
            "--as",
            ANALYST,
            "--resource",
            EXIT_ENTRY,
            "--purpose",
            PURPOSE,
        ],
    )["basis"]["id"]
        .as_i64()
        .unwrap();
    let revoked = tongchou(
        &data,
        &[
            "access",
            "revoke",
            &grant.to_string(),
            "--as",
            OWNER,
            "--reason",
            "调查结束",
        ],
    );
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let (status, text) = pull(id, "json");
    assert_eq!(status, 403, "{text}");
    let tail = ok_json(&data, &["ledger", "tail", "--json", "-n", "5"]);
    assert!(
        tail.as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "pull" && e["outcome"] == "denied" && e["user"] == ANALYST),
        "{tail}"
    );
}
