//! The resource catalog (清家底): every unit registers what it holds, with the metadata of
//! the national guide 政务信息资源目录编制指南, and everyone can find it.
//!
//! - [`Catalog::register`] takes a batch (JSON, a catalog workbook, the REST API) and
//!   registers it whole or not at all, reporting every problem with its place.
//! - Every change is a new version of the resource; [`Catalog::history`] and
//!   [`Catalog::diff`] list and compare them.
//! - [`search`] indexes the catalog with tantivy and jieba for Chinese search.
//! - [`infer`] proposes fields and detects personal data from a sample file.
//! - [`Catalog::inventory`] is the bureau's view of the whole stock.

pub mod infer;
pub mod sample;
pub mod search;
pub mod sheet;
pub mod validate;
pub mod values;
pub mod workbook;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;
use tongchou_model::{Classification, Resource, ShareType, Unit, UserRole};
use tongchou_store::DataDir;

pub use search::{Hit, SearchQuery};
pub use validate::Problem;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{} problem(s); nothing was registered:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Rejected(Vec<Problem>),
    #[error("resource {0} is not in the catalog")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("metadata database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Index(#[from] search::IndexError),
}

/// Who is changing the catalog: the local operator (the data directory's owner at the CLI)
/// or a signed-in user.
#[derive(Debug, Clone)]
pub enum Actor {
    Operator,
    User {
        name: String,
        unit: String,
        role: UserRole,
    },
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::Operator => "operator".into(),
            Actor::User { name, .. } => name.clone(),
        }
    }

    /// Whether the actor may act as the providing unit `unit` — register and change its
    /// resources, load and fix its data: its stewards, the bureau's admins and the operator.
    pub fn may_provide_for(&self, unit: &str) -> bool {
        match self {
            Actor::Operator => true,
            Actor::User {
                role: UserRole::PlatformAdmin,
                ..
            } => true,
            Actor::User {
                role: UserRole::Steward,
                unit: own,
                ..
            } => own == unit,
            Actor::User { .. } => false,
        }
    }

    fn may_add_units(&self) -> bool {
        matches!(
            self,
            Actor::Operator
                | Actor::User {
                    role: UserRole::PlatformAdmin,
                    ..
                }
        )
    }
}

/// What a registration brings: units (optional) and resources, each with where it came from.
#[derive(Debug, Default)]
pub struct Batch {
    pub units: Vec<Unit>,
    pub resources: Vec<(String, Resource)>,
    /// Problems already found in the input, so that one pass reports them all.
    pub problems: Vec<Problem>,
}

impl Batch {
    /// Reads a registration file: a resource object, an array of them, or
    /// `{"units": [...], "resources": [...]}` (the simulated district's catalog.json).
    pub fn from_json(bytes: &[u8]) -> Result<Batch, Vec<Problem>> {
        let bad = |message: String| {
            vec![Problem {
                at: "file".into(),
                resource: None,
                field: None,
                message,
            }]
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("is not valid JSON: {e}")))?;
        let (units, items) = match value {
            Value::Array(items) => (Vec::new(), items),
            Value::Object(mut obj) if obj.contains_key("resources") => {
                let units = match obj.remove("units") {
                    None => Vec::new(),
                    Some(u) => serde_json::from_value(u).map_err(|e| bad(format!("units: {e}")))?,
                };
                match obj.remove("resources") {
                    Some(Value::Array(items)) => (units, items),
                    _ => return Err(bad("resources must be an array".into())),
                }
            }
            single @ Value::Object(_) => (Vec::new(), vec![single]),
            _ => return Err(bad(
                "must be a resource object, an array of resources, or {\"units\", \"resources\"}"
                    .into(),
            )),
        };
        if items.len() > MAX_BATCH {
            return Err(bad(format!(
                "has {} resources; a batch may have at most {MAX_BATCH}: split it",
                items.len()
            )));
        }
        let mut problems = Vec::new();
        let mut resources = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("资源 {}", i + 1);
            match validate::resource(&at, item) {
                Ok(r) => resources.push((at, r)),
                Err(p) => problems.extend(p),
            }
        }
        Ok(Batch {
            units,
            resources,
            problems,
        })
    }

    /// Reads a filled-in catalog workbook.
    pub fn from_workbook(bytes: &[u8]) -> Result<Batch, Vec<Problem>> {
        let (resources, problems) = workbook::parse(bytes)?;
        Ok(Batch {
            units: Vec::new(),
            resources,
            problems,
        })
    }

    /// The batch, or every problem found in its input.
    pub fn checked(self) -> Result<Batch, Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(self)
        } else {
            Err(self.problems)
        }
    }
}

/// Resources in one batch: a district's whole catalog (Nanhai: 1,083) fits in one.
pub const MAX_BATCH: usize = 5_000;

/// A registered resource with its catalog state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    #[serde(flatten)]
    pub resource: Resource,
    pub unit_name: String,
    pub version: i64,
    pub registered_at: String,
    pub updated_at: String,
    pub has_data: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i64,
    pub changed_at: String,
    pub changed_by: String,
    pub summary: String,
}

/// One difference between two versions of a resource.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Change {
    pub path: String,
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnitInfo {
    pub code: String,
    pub name: String,
    pub name_en: String,
    pub slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub resources: i64,
    pub fields: i64,
}

/// The bureau's view of the stock (清家底).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Inventory {
    pub units: i64,
    pub resources: i64,
    pub fields: i64,
    pub by_share_type: BTreeMap<String, i64>,
    pub by_open_type: BTreeMap<String, i64>,
    pub per_unit: Vec<UnitInfo>,
    pub units_without_resources: Vec<UnitInfo>,
    pub resources_without_data: i64,
    /// Records in the resources' tables now.
    pub records: i64,
    /// Records delivered to subscribers (交换量).
    pub records_exchanged: i64,
}

macro_rules! record_sql {
    () => {
        "SELECT r.body, u.name AS unit_name, r.version, r.registered_at, r.updated_at, r.has_data FROM resources r JOIN units u ON u.code = r.unit"
    };
}

pub struct Catalog {
    dir: DataDir,
    index: Mutex<search::SearchIndex>,
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Catalog {
    /// Opens the catalog of a data directory, rebuilding its search index if it is stale.
    pub async fn open(dir: DataDir) -> Result<Catalog, CatalogError> {
        let index = search::SearchIndex::open(&dir.index_dir().join("catalog"))?;
        let catalog = Catalog {
            dir,
            index: Mutex::new(index),
        };
        let generation = catalog.generation().await?;
        let indexed = catalog.index.lock().await.generation();
        if indexed != Some(generation) {
            catalog.reindex().await?;
        }
        Ok(catalog)
    }

    fn pool(&self) -> &SqlitePool {
        self.dir.metadata()
    }

    async fn generation(&self) -> Result<i64, CatalogError> {
        let value: String =
            sqlx::query_scalar("SELECT value FROM instance WHERE key = 'catalog_generation'")
                .fetch_one(self.pool())
                .await?;
        Ok(value.parse().unwrap_or(0))
    }

    /// Rebuilds the search index from the metadata.
    pub async fn reindex(&self) -> Result<(), CatalogError> {
        let records = self.all_records().await?;
        self.index_records(&records, true).await
    }

    /// Adds `records` to the search index (or makes them its only content).
    async fn index_records(
        &self,
        records: &[Record],
        replace_all: bool,
    ) -> Result<(), CatalogError> {
        let generation = self.generation().await?;
        let units = self.unit_names().await?;
        let items: Vec<search::Indexed<'_>> = records
            .iter()
            .map(|r| {
                let (name, en) = units
                    .get(&r.resource.unit)
                    .map(|(n, e)| (n.as_str(), e.as_str()))
                    .unwrap_or(("", ""));
                search::Indexed {
                    resource: &r.resource,
                    code: r.resource.code.as_deref().unwrap_or(""),
                    unit_name: name,
                    unit_name_en: en,
                }
            })
            .collect();
        self.index
            .lock()
            .await
            .update(&items, replace_all, generation)?;
        Ok(())
    }

    async fn unit_names(&self) -> Result<HashMap<String, (String, String)>, CatalogError> {
        let rows = sqlx::query("SELECT code, name, name_en FROM units")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("code"), (r.get("name"), r.get("name_en"))))
            .collect())
    }

    /// Adds units (or confirms identical ones); all or nothing.
    pub async fn add_units(&self, units: &[Unit], actor: &Actor) -> Result<usize, CatalogError> {
        if !actor.may_add_units() {
            return Err(CatalogError::Forbidden(format!(
                "{} may not add units: only the bureau's platform admins may",
                actor.label()
            )));
        }
        let mut tx = self.pool().begin().await?;
        let added = insert_units(&mut tx, units).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Registers a batch: every resource is checked against the catalog and the batch, and
    /// the batch is registered whole or not at all. Returns the resource codes, in order.
    pub async fn register(&self, batch: Batch, actor: &Actor) -> Result<Vec<String>, CatalogError> {
        if !batch.units.is_empty() && !actor.may_add_units() {
            return Err(CatalogError::Forbidden(format!(
                "{} may not add units: only the bureau's platform admins may",
                actor.label()
            )));
        }
        let pool = self.pool();
        let mut units: HashSet<String> = sqlx::query_scalar("SELECT code FROM units")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
        units.extend(batch.units.iter().map(|u| u.code.clone()));
        let mut codes: HashSet<String> = sqlx::query_scalar("SELECT code FROM resources")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
        let mut names: HashSet<(String, String)> = sqlx::query("SELECT unit, name FROM resources")
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| (r.get("unit"), r.get("name")))
            .collect();
        let batch_codes: HashSet<String> = batch
            .resources
            .iter()
            .filter_map(|(_, r)| r.code.clone())
            .collect();
        let mut problems = batch.problems;
        let mut claimed: HashMap<String, String> = HashMap::new();
        for (at, r) in &batch.resources {
            let mut problem = |field: &str, message: String| {
                problems.push(Problem {
                    at: at.clone(),
                    resource: Some(r.name.clone()),
                    field: Some(field.into()),
                    message,
                });
            };
            if !units.contains(&r.unit) {
                problem(
                    "unit",
                    format!(
                        "unit {} is not registered; list units with `tongchou catalog units`",
                        r.unit
                    ),
                );
            } else if !actor.may_provide_for(&r.unit) {
                problem(
                    "unit",
                    format!(
                        "{} may not register resources of unit {}: stewards register their own unit's resources",
                        actor.label(),
                        r.unit
                    ),
                );
            }
            if let Some(code) = &r.code {
                if codes.contains(code) {
                    problem(
                        "code",
                        format!(
                            "{code} is already registered; change an existing resource with `catalog update`"
                        ),
                    );
                } else if let Some(other) = claimed.insert(code.clone(), at.clone()) {
                    problem("code", format!("{code} is also used by {other}"));
                }
            }
            if !names.insert((r.unit.clone(), r.name.clone())) {
                problem(
                    "name",
                    format!(
                        "unit {} already has a resource named 「{}」",
                        r.unit, r.name
                    ),
                );
            }
            for related in &r.related {
                if !codes.contains(related) && !batch_codes.contains(related) {
                    problem(
                        "related",
                        format!("related resource {related} is not registered"),
                    );
                }
            }
        }
        if !problems.is_empty() {
            return Err(CatalogError::Rejected(problems));
        }
        let mut tx = pool.begin().await?;
        insert_units(&mut tx, &batch.units).await?;
        // Generated 顺序码 continue after the highest one given explicitly.
        let given = batch_codes
            .iter()
            .filter_map(|c| c.split_once('/')?.1.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        let stored: i64 = sqlx::query_scalar("SELECT next FROM catalog_sequence")
            .fetch_one(&mut *tx)
            .await?;
        let mut sequence = stored.max(given + 1);
        let at = now();
        let mut registered = Vec::with_capacity(batch.resources.len());
        for (_, mut r) in batch.resources {
            if r.code.is_none() {
                // The unit's own sequence number, as stored (its batch's units included).
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM units WHERE code = ?")
                    .bind(&r.unit)
                    .fetch_one(&mut *tx)
                    .await?;
                let class = r.classification.clone().unwrap_or(Classification {
                    class: 3,
                    item: (seq % 100) as u8,
                    catalog: 1,
                    subcatalog: 1,
                });
                let code = loop {
                    let candidate = class.resource_code(sequence as u32);
                    sequence += 1;
                    if !codes.contains(&candidate) && !batch_codes.contains(&candidate) {
                        break candidate;
                    }
                };
                r.classification = Some(class);
                r.code = Some(code);
            }
            let code = r.code.clone().expect("assigned");
            codes.insert(code.clone());
            let body = serde_json::to_string(&r).expect("resource serialises");
            sqlx::query("INSERT INTO resources (code, unit, name, share_type, open_type, update_cycle, field_count, version, body, registered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)")
                .bind(&code).bind(&r.unit).bind(&r.name).bind(r.share_type.as_str()).bind(r.open_type.as_str()).bind(r.update_cycle.as_str())
                .bind(r.fields.len() as i64).bind(&body).bind(&at).bind(&at)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO resource_versions (code, version, body, changed_at, changed_by, summary) VALUES (?, 1, ?, ?, ?, '登记 registered')")
                .bind(&code).bind(&body).bind(&at).bind(actor.label())
                .execute(&mut *tx)
                .await?;
            registered.push(code);
        }
        sqlx::query("UPDATE catalog_sequence SET next = ?")
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        // Share types and field sensitivities feed access decisions.
        self.dir.note_policy_change();
        self.reindex_codes(&registered).await?;
        Ok(registered)
    }

    /// Replaces a resource's metadata with a new version (the code and unit stay).
    pub async fn update(
        &self,
        code: &str,
        mut resource: Resource,
        actor: &Actor,
    ) -> Result<i64, CatalogError> {
        let current = self.get(code).await?;
        if !actor.may_provide_for(&current.resource.unit) {
            return Err(CatalogError::Forbidden(format!(
                "{} may not change resources of unit {}",
                actor.label(),
                current.resource.unit
            )));
        }
        if resource.unit != current.resource.unit {
            return Err(CatalogError::Rejected(vec![Problem {
                at: code.into(),
                resource: Some(resource.name.clone()),
                field: Some("unit".into()),
                message: "a resource cannot move to another unit; register it anew there".into(),
            }]));
        }
        resource.code = Some(code.to_string());
        if resource.classification.is_none() {
            resource.classification = current.resource.classification.clone();
        }
        let changes = diff_resources(&current.resource, &resource);
        if changes.is_empty() {
            return Ok(current.version);
        }
        let summary = changes
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let version = current.version + 1;
        let body = serde_json::to_string(&resource).expect("resource serialises");
        let at = now();
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE resources SET name = ?, share_type = ?, open_type = ?, update_cycle = ?, field_count = ?, version = ?, body = ?, updated_at = ? WHERE code = ?")
            .bind(&resource.name).bind(resource.share_type.as_str()).bind(resource.open_type.as_str()).bind(resource.update_cycle.as_str())
            .bind(resource.fields.len() as i64).bind(version).bind(&body).bind(&at).bind(code)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO resource_versions (code, version, body, changed_at, changed_by, summary) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(code).bind(version).bind(&body).bind(&at).bind(actor.label()).bind(format!("修改 changed: {summary}"))
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        // Share types and field sensitivities feed access decisions.
        self.dir.note_policy_change();
        self.reindex_codes(&[code.to_string()]).await?;
        Ok(version)
    }

    async fn reindex_codes(&self, codes: &[String]) -> Result<(), CatalogError> {
        let mut records = Vec::with_capacity(codes.len());
        for code in codes {
            records.push(self.get(code).await?);
        }
        self.index_records(&records, false).await
    }

    fn record(row: &sqlx::sqlite::SqliteRow) -> Record {
        let body: String = row.get("body");
        Record {
            resource: serde_json::from_str(&body).expect("stored resources are valid"),
            unit_name: row.get("unit_name"),
            version: row.get("version"),
            registered_at: row.get("registered_at"),
            updated_at: row.get("updated_at"),
            has_data: row.get::<i64, _>("has_data") != 0,
        }
    }

    pub async fn get(&self, code: &str) -> Result<Record, CatalogError> {
        let row = sqlx::query(concat!(record_sql!(), " WHERE r.code = ?"))
            .bind(code)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| CatalogError::NotFound(code.to_string()))?;
        Ok(Self::record(&row))
    }

    pub async fn all_records(&self) -> Result<Vec<Record>, CatalogError> {
        let rows = sqlx::query(concat!(record_sql!(), " ORDER BY r.code"))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(Self::record).collect())
    }

    pub async fn resources_of_unit(&self, unit: &str) -> Result<Vec<Record>, CatalogError> {
        let rows = sqlx::query(concat!(record_sql!(), " WHERE r.unit = ? ORDER BY r.code"))
            .bind(unit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(Self::record).collect())
    }

    pub async fn history(&self, code: &str) -> Result<Vec<VersionInfo>, CatalogError> {
        self.get(code).await?;
        let rows = sqlx::query("SELECT version, changed_at, changed_by, summary FROM resource_versions WHERE code = ? ORDER BY version")
            .bind(code)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| VersionInfo {
                version: r.get("version"),
                changed_at: r.get("changed_at"),
                changed_by: r.get("changed_by"),
                summary: r.get("summary"),
            })
            .collect())
    }

    pub async fn version(&self, code: &str, version: i64) -> Result<Resource, CatalogError> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM resource_versions WHERE code = ? AND version = ?")
                .bind(code)
                .bind(version)
                .fetch_optional(self.pool())
                .await?;
        let body =
            body.ok_or_else(|| CatalogError::NotFound(format!("{code} version {version}")))?;
        Ok(serde_json::from_str(&body).expect("stored resources are valid"))
    }

    /// The changes from one version of a resource to another.
    pub async fn diff(&self, code: &str, from: i64, to: i64) -> Result<Vec<Change>, CatalogError> {
        Ok(diff_resources(
            &self.version(code, from).await?,
            &self.version(code, to).await?,
        ))
    }

    pub async fn units(&self) -> Result<Vec<UnitInfo>, CatalogError> {
        let rows = sqlx::query(
            "SELECT u.code, u.name, u.name_en, u.slug, u.parent, count(r.code) AS resources, coalesce(sum(r.field_count), 0) AS fields
             FROM units u LEFT JOIN resources r ON r.unit = u.code GROUP BY u.code ORDER BY u.seq",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UnitInfo {
                code: r.get("code"),
                name: r.get("name"),
                name_en: r.get("name_en"),
                slug: r.get("slug"),
                parent: r.get("parent"),
                resources: r.get("resources"),
                fields: r.get("fields"),
            })
            .collect())
    }

    pub async fn inventory(&self) -> Result<Inventory, CatalogError> {
        let per_unit = self.units().await?;
        let count =
            |sql: &'static str| async move { sqlx::query(sql).fetch_all(self.pool()).await };
        let group = |rows: Vec<sqlx::sqlite::SqliteRow>| {
            rows.into_iter()
                .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
                .collect()
        };
        let mut by_share_type: BTreeMap<String, i64> =
            group(count("SELECT share_type, count(*) FROM resources GROUP BY share_type").await?);
        let mut by_open_type: BTreeMap<String, i64> =
            group(count("SELECT open_type, count(*) FROM resources GROUP BY open_type").await?);
        for s in ShareType::ALL {
            by_share_type.entry(s.as_str().into()).or_insert(0);
        }
        for o in tongchou_model::OpenType::ALL {
            by_open_type.entry(o.as_str().into()).or_insert(0);
        }
        let without_data: i64 =
            sqlx::query_scalar("SELECT count(*) FROM resources WHERE has_data = 0")
                .fetch_one(self.pool())
                .await?;
        let records: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(rows_total), 0) FROM loads l WHERE status = 'committed' AND version = (SELECT max(version) FROM loads WHERE resource = l.resource AND status = 'committed')",
        )
        .fetch_one(self.pool())
        .await?;
        let records_exchanged: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(records), 0) FROM exchange_volume")
                .fetch_one(self.pool())
                .await?;
        Ok(Inventory {
            records,
            records_exchanged,
            units: per_unit.len() as i64,
            resources: per_unit.iter().map(|u| u.resources).sum(),
            fields: per_unit.iter().map(|u| u.fields).sum(),
            by_share_type,
            by_open_type,
            units_without_resources: per_unit
                .iter()
                .filter(|u| u.resources == 0)
                .cloned()
                .collect(),
            per_unit,
            resources_without_data: without_data,
        })
    }

    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<Hit>, CatalogError> {
        Ok(self.index.lock().await.search(query)?)
    }
}

async fn insert_units(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    units: &[Unit],
) -> Result<usize, CatalogError> {
    let mut problems = Vec::new();
    let mut added = 0;
    for (i, u) in units.iter().enumerate() {
        let at = format!("单位 {}", i + 1);
        let existing: Option<(String, String)> =
            sqlx::query_as("SELECT name, slug FROM units WHERE code = ?")
                .bind(&u.code)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some((name, slug)) = existing {
            if name != u.name || slug != u.slug {
                problems.push(Problem {
                    at,
                    resource: None,
                    field: Some("code".into()),
                    message: format!(
                        "unit {} is already registered as 「{name}」 ({slug})",
                        u.code
                    ),
                });
            }
            continue;
        }
        if let Err(e) = tongchou_ids::credit_code::validate(&u.code) {
            problems.push(Problem {
                at: at.clone(),
                resource: None,
                field: Some("code".into()),
                message: format!(
                    "unit code {} is not a unified social credit code: {e}",
                    u.code
                ),
            });
        }
        if u.name.trim().is_empty() || !validate::is_identifier(&u.slug) {
            problems.push(Problem { at, resource: None, field: Some("slug".into()), message: "a unit needs a name and a slug of ASCII letters, digits and '_' (its SQL schema)".into() });
            continue;
        }
        let seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) + 1 FROM units")
            .fetch_one(&mut **tx)
            .await?;
        let result = sqlx::query("INSERT INTO units (code, name, name_en, slug, parent, seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&u.code).bind(&u.name).bind(&u.name_en).bind(&u.slug).bind(&u.parent).bind(seq).bind(now())
            .execute(&mut **tx)
            .await;
        match result {
            Ok(_) => added += 1,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() || e.is_foreign_key_violation() => problems.push(Problem {
                at: format!("单位 {}", i + 1),
                resource: None,
                field: None,
                message: format!("unit 「{}」 clashes with a registered unit's name or slug, or its parent is not registered ({e})", u.name),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    if problems.is_empty() {
        Ok(added)
    } else {
        Err(CatalogError::Rejected(problems))
    }
}

async fn bump_generation(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE instance SET value = CAST(value AS INTEGER) + 1 WHERE key = 'catalog_generation'",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Compares two resources attribute by attribute, and fields by name.
pub fn diff_resources(a: &Resource, b: &Resource) -> Vec<Change> {
    let (va, vb) = (
        serde_json::to_value(a).expect("serialises"),
        serde_json::to_value(b).expect("serialises"),
    );
    let (oa, ob) = (
        va.as_object().expect("object"),
        vb.as_object().expect("object"),
    );
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<&String> = oa
        .keys()
        .chain(ob.keys())
        .filter(|k| *k != "fields")
        .collect();
    for key in keys {
        let (x, y) = (
            oa.get(key).cloned().unwrap_or(Value::Null),
            ob.get(key).cloned().unwrap_or(Value::Null),
        );
        if x != y {
            changes.push(Change {
                path: key.clone(),
                from: x,
                to: y,
            });
        }
    }
    let fields = |r: &Resource| -> BTreeMap<String, Value> {
        r.fields
            .iter()
            .map(|f| (f.name.clone(), serde_json::to_value(f).expect("serialises")))
            .collect()
    };
    let (fa, fb) = (fields(a), fields(b));
    for name in fa.keys().chain(fb.keys().filter(|k| !fa.contains_key(*k))) {
        match (fa.get(name), fb.get(name)) {
            (Some(x), None) => changes.push(Change {
                path: format!("fields.{name}"),
                from: x.clone(),
                to: Value::Null,
            }),
            (None, Some(y)) => changes.push(Change {
                path: format!("fields.{name}"),
                from: Value::Null,
                to: y.clone(),
            }),
            (Some(x), Some(y)) if x != y => {
                let (ox, oy) = (
                    x.as_object().expect("object"),
                    y.as_object().expect("object"),
                );
                let attrs: std::collections::BTreeSet<&String> =
                    ox.keys().chain(oy.keys()).collect();
                for attr in attrs {
                    let (p, q) = (
                        ox.get(attr).cloned().unwrap_or(Value::Null),
                        oy.get(attr).cloned().unwrap_or(Value::Null),
                    );
                    if p != q {
                        changes.push(Change {
                            path: format!("fields.{name}.{attr}"),
                            from: p,
                            to: q,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    changes
}
