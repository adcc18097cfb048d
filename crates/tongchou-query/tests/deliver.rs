//! Subscriptions and pulls are governed statements: a subscriber gets exactly what `SELECT *`
//! gives them — the granted fields, masked, the rows the row filter keeps — and a change
//! feed that never tells of a row the grant hides; revoking the grant stops the next pull;
//! every enterprise a pull delivered is in the ledger's subject index.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tongchou_access::Principal;
use tongchou_access::requests::{self, Approval, NewRequest};
use tongchou_audit::{ALLOWED, Audit, Entry};
use tongchou_catalog::{Actor, Batch, Catalog};
use tongchou_exchange::changes::{self, OutputFormat};
use tongchou_exchange::{Encoding, Mode, ReadOptions};
use tongchou_model::UserRole;
use tongchou_query::deliver::{self, PullRequest};
use tongchou_query::front::render;
use tongchou_query::{Engine, QueryError};
use tongchou_store::DataDir;

const PURPOSE: &str = "subsidy_review";
const ANALYST: &str = "analyst";

fn codes() -> Vec<String> {
    ["12345678", "23456789", "34567890", "45678901", "56789012"]
        .iter()
        .map(|body| {
            tongchou_ids::credit_code::build("91", 440605, body.as_bytes().try_into().unwrap())
        })
        .collect()
}

struct World {
    tmp: tempfile::TempDir,
    dir: DataDir,
    catalog: Catalog,
    code: String,
    consumer: String,
    audit: Audit,
    engine: Engine,
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::init(&tmp.path().join("data")).await.unwrap();
        let catalog = Catalog::open(dir.clone()).await.unwrap();
        let units = tongchou_sim::units();
        catalog.add_units(&units, &Actor::Operator).await.unwrap();
        let resource = json!({"unit": units[13].code, "name": "纳税人登记", "share_type": "conditional", "share_condition": "用于补贴审核", "legal_basis": "《政务信息资源共享管理暂行办法》", "open_type": "none", "update_cycle": "daily",
            "key": ["credit_code"],
            "fields": [{"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "unique": true},
                       {"name": "name", "label": "纳税人名称", "type": "string"},
                       {"name": "employees", "label": "从业人数", "type": "integer"}]});
        let code = catalog
            .register(
                Batch::from_json(resource.to_string().as_bytes()).unwrap(),
                &Actor::Operator,
            )
            .await
            .unwrap()
            .remove(0);
        let (audit, engine) = common::engine_with(
            &dir,
            &[
                ("steward", &units[13].code, UserRole::Steward),
                (ANALYST, &units[27].code, UserRole::Analyst),
            ],
        )
        .await;
        World {
            tmp,
            dir,
            catalog,
            code,
            consumer: units[27].code.clone(),
            audit,
            engine,
        }
    }

    async fn load(&self, text: &str, mode: Mode) {
        let path = self.tmp.path().join(format!(
            "load-{}.csv",
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::write(&path, text).unwrap();
        let options = ReadOptions {
            encoding: Encoding::Auto,
            sheet: None,
            header_row: None,
        };
        tongchou_exchange::ingest(
            &self.dir,
            &self.catalog,
            &tongchou_exchange::Load {
                resource: &self.code,
                file: &path,
                mode,
                read: &options,
                actor: "test",
            },
            Arc::new(()),
        )
        .await
        .unwrap();
    }

    async fn who(&self, name: &str) -> Principal {
        Principal::of_user(self.dir.metadata(), name).await.unwrap()
    }

    /// The analyst's grant for PURPOSE: the key pseudonymised, rows with 15 or more
    /// employees.
    async fn grant(&self) -> i64 {
        self.grant_for(PURPOSE, Some("employees >= 15")).await
    }

    async fn grant_for(&self, purpose: &str, row_filter: Option<&str>) -> i64 {
        let request = requests::file_request(
            &self.dir,
            &self.who(ANALYST).await,
            &NewRequest {
                resource: self.code.clone(),
                fields: vec!["credit_code".into(), "name".into(), "employees".into()],
                purpose: purpose.into(),
                purpose_detail: "补贴审核".into(),
                legal_basis: "《政务信息资源共享管理暂行办法》".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let approval = Approval {
            row_filter: row_filter.map(str::to_string),
            masks: [("credit_code".to_string(), "pseudonym".to_string())].into(),
            ..Default::default()
        };
        requests::approve(&self.dir, &self.who("steward").await, request, &approval)
            .await
            .unwrap()
            .id
    }

    async fn cursor(&self, id: i64) -> i64 {
        changes::subscription(&self.dir, id)
            .await
            .unwrap()
            .unwrap()
            .cursor
    }

    async fn pull(&self, id: i64, format: OutputFormat) -> Result<Vec<Value>, QueryError> {
        let out = self.tmp.path().join(format!(
            "pull-{}.json",
            jiff::Timestamp::now().as_nanosecond()
        ));
        let mut entry = Entry::new("pull", "cli", ALLOWED);
        entry.user = Some(ANALYST.into());
        let request = PullRequest {
            user: ANALYST,
            unit: &self.consumer,
            subscription: id,
            format,
            out: &out,
            entry,
        };
        deliver::pull(&self.engine, &self.audit, request).await?;
        let text = std::fs::read_to_string(&out).unwrap();
        Ok(text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect())
    }

    /// What `SELECT *` gives the analyst, as JSON objects.
    async fn select_all(&self) -> Vec<Value> {
        let readable = self.engine.readable(ANALYST, PURPOSE).await.unwrap();
        let (unit, name, _) = &readable[0];
        let sql = format!("SELECT * FROM \"{unit}\".\"{name}\"");
        let answer = self.engine.run(ANALYST, PURPOSE, &sql).await.unwrap();
        serde_json::from_slice(&render(&answer, "json").unwrap()).unwrap()
    }

    async fn pulls_touching(&self, id: &str) -> usize {
        tongchou_audit::index::subject(&self.audit, id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "pull")
            .count()
    }
}

/// (name, change) of each row, with the row as delivered.
fn by_name(rows: &[Value]) -> BTreeSet<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["_change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn without_change_columns(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            let object = r.as_object_mut().unwrap();
            object.remove("_change");
            object.remove("_version");
            r.to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_gives_what_select_star_gives_and_the_feed_hides_what_the_grant_hides() {
    let w = World::new().await;
    let c = codes();
    w.load(
        &format!(
            "统一社会信用代码,纳税人名称,从业人数\n{},甲公司,10\n{},乙公司,20\n{},丙公司,30\n{},戊公司,50\n",
            c[0], c[1], c[2], c[4]
        ),
        Mode::Append,
    )
    .await;

    let refused = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, PURPOSE)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, QueryError::Access(_)) && refused.to_string().contains("access request"),
        "{refused}"
    );
    let grant = w.grant().await;
    let sub = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, PURPOSE)
        .await
        .unwrap();

    let first = w.pull(sub.id, OutputFormat::Json).await.unwrap();
    assert_eq!(
        without_change_columns(&first),
        without_change_columns(&w.select_all().await),
        "the first pull is SELECT * as the analyst sees it"
    );
    assert_eq!(
        first.len(),
        3,
        "甲 (10 employees) is outside the row filter"
    );
    assert!(first.iter().all(|r| r["_change"] == "insert"));
    assert!(
        first
            .iter()
            .all(|r| r["credit_code"].as_str().unwrap().starts_with('P')),
        "the key is pseudonymised: {first:?}"
    );
    assert_eq!(w.pulls_touching(&c[1]).await, 1, "乙 was delivered");
    assert_eq!(w.pulls_touching(&c[0]).await, 0, "甲 was not touched");

    // 甲 enters the filter, 乙 is deleted, 丙 leaves it, 丁 is new, 戊 changes inside it.
    w.load(
        &format!(
            "_op,统一社会信用代码,纳税人名称,从业人数\n,{},甲公司,16\nD,{},,\n,{},丙公司,5\n,{},丁公司,40\n,{},戊公司,60\n",
            c[0], c[1], c[2], c[3], c[4]
        ),
        Mode::Upsert,
    )
    .await;
    let second = w.pull(sub.id, OutputFormat::Json).await.unwrap();
    let expected: BTreeSet<(String, String)> = [
        ("甲公司", "insert"),
        ("乙公司", "delete"),
        ("丙公司", "delete"),
        ("丁公司", "insert"),
        ("戊公司", "update"),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), k.to_string()))
    .collect();
    assert_eq!(by_name(&second), expected);
    let left = second.iter().find(|r| r["name"] == "丙公司").unwrap();
    assert_eq!(
        left["employees"], 30,
        "a row leaving the filter is deleted as the consumer had it, its new value unseen"
    );
    let updated = second.iter().find(|r| r["name"] == "戊公司").unwrap();
    assert_eq!(updated["employees"], 60);
    assert_eq!(w.pulls_touching(&c[3]).await, 1, "丁 was delivered");

    assert!(w.pull(sub.id, OutputFormat::Json).await.unwrap().is_empty());
    let volume: i64 = changes::volume(&w.dir)
        .await
        .unwrap()
        .iter()
        .map(|v| v.records)
        .sum();
    assert_eq!(volume, 8);

    let before = w.cursor(sub.id).await;
    requests::revoke(&w.dir, None, grant, "项目结束")
        .await
        .unwrap();
    w.load(
        &format!(
            "_op,统一社会信用代码,纳税人名称,从业人数\n,{},丁公司,41\n",
            c[3]
        ),
        Mode::Upsert,
    )
    .await;
    let refused = w.pull(sub.id, OutputFormat::Json).await.unwrap_err();
    assert!(matches!(refused, QueryError::Access(_)), "{refused}");
    assert_eq!(
        w.cursor(sub.id).await,
        before,
        "a refused pull does not move the cursor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_units_subscription_is_not_found() {
    let w = World::new().await;
    w.load(
        &format!(
            "统一社会信用代码,纳税人名称,从业人数\n{},甲公司,20\n",
            codes()[0]
        ),
        Mode::Append,
    )
    .await;
    w.grant().await;
    let sub = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, PURPOSE)
        .await
        .unwrap();
    let out = w.tmp.path().join("x.csv");
    let request = PullRequest {
        user: "steward",
        unit: "someone else",
        subscription: sub.id,
        format: OutputFormat::Csv,
        out: &out,
        entry: Entry::new("pull", "cli", ALLOWED),
    };
    let err = deliver::pull(&w.engine, &w.audit, request)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::NotFound(_)), "{err}");
    assert!(!out.exists());
}

/// The unit's feed came under one purpose's grant: subscribing again for another purpose
/// starts it again from the resource as that grant shows it, never mid-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_purpose_starts_the_feed_again() {
    let w = World::new().await;
    let c = codes();
    w.load(
        &format!(
            "统一社会信用代码,纳税人名称,从业人数\n{},甲公司,10\n{},乙公司,20\n",
            c[0], c[1]
        ),
        Mode::Append,
    )
    .await;
    w.grant().await;
    let sub = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, PURPOSE)
        .await
        .unwrap();
    assert_eq!(w.pull(sub.id, OutputFormat::Json).await.unwrap().len(), 1);
    let cursor = w.cursor(sub.id).await;
    assert!(cursor >= 0);
    deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, PURPOSE)
        .await
        .unwrap();
    assert_eq!(
        w.cursor(sub.id).await,
        cursor,
        "the same purpose keeps its place"
    );
    let refused = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, "statistics").await;
    assert!(refused.is_err(), "no grant for statistics yet");
    assert_eq!(w.cursor(sub.id).await, cursor);
    w.grant_for("statistics", None).await;
    let again = deliver::subscribe(&w.engine, ANALYST, &w.consumer, &w.code, "statistics")
        .await
        .unwrap();
    assert_eq!((again.id, again.cursor), (sub.id, -1));
    let rows = w.pull(sub.id, OutputFormat::Json).await.unwrap();
    assert_eq!(by_name(&rows).len(), 2, "both rows, as inserts: {rows:?}");
    assert!(rows.iter().all(|r| r["_change"] == "insert"));
}
