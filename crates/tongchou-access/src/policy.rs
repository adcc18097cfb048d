//! The access decision for one statement: may this user read this resource for this
//! purpose, and if so which fields with which masks and which rows.
//!
//! Decisions run on an in-memory [`PolicySet`] built from the metadata database — users,
//! credentials, resources with their fields, grants in force — so a decision takes
//! microseconds with a hundred thousand grants. [`Policy`] keeps the set current: every
//! change to users, credentials, grants or the catalog rewrites the data directory's policy
//! generation marker, and the next statement reloads.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tongchou_model::{Resource, Sensitivity, ShareType, UserRole};
use tongchou_store::DataDir;

use crate::clock::parse_stamp;
use crate::credentials::{CredentialKind, CredentialRef, Scopes, digest, split};
use crate::{AccessError, Door, Principal, User};

/// A field a grant gives, with the mask the consumer sees instead of the raw value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantedField {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
}

/// Why access is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Basis {
    /// The user's own unit provides the resource.
    Owner,
    /// An approved request.
    Grant { id: i64 },
    /// An unconditional-share resource: fields not sensitive or secret, default masks.
    Unconditional,
}

/// What the query engine enforces for one resource in one statement.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Access {
    pub resource: String,
    pub basis: Basis,
    pub fields: Vec<GrantedField>,
    pub row_filter: Option<String>,
    pub valid_until: Option<String>,
}

struct Credential {
    kind: CredentialKind,
    hash: [u8; 32],
    user: String,
    scopes: Scopes,
    expires: Option<Timestamp>,
}

struct FieldRule {
    name: String,
    sensitivity: Sensitivity,
    default_mask: Option<String>,
}

struct ResourceRule {
    provider: String,
    share_type: ShareType,
    fields: Vec<FieldRule>,
    min_leader_level: Option<i64>,
}

struct GrantRule {
    id: i64,
    user: Option<String>,
    role: Option<UserRole>,
    purpose: String,
    fields: Vec<GrantedField>,
    row_filter: Option<String>,
    valid_from: Timestamp,
    valid_until: Option<Timestamp>,
}

/// Everything access decisions read, as of one policy generation.
#[derive(Default)]
pub struct PolicySet {
    users: HashMap<String, User>,
    credentials: HashMap<String, Credential>,
    resources: HashMap<String, ResourceRule>,
    /// resource → consumer unit → grants in force or yet to start.
    grants: HashMap<String, HashMap<String, Vec<GrantRule>>>,
    purposes: HashSet<String>,
}

fn deny(why: String) -> AccessError {
    AccessError::Forbidden(why)
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    kind: String,
    secret_hash: Vec<u8>,
    user: String,
    scopes: String,
    expires_at: Option<String>,
}

type GrantRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Vec<GrantedField>,
    Option<String>,
    String,
    Option<String>,
);

impl PolicySet {
    pub async fn load(dir: &DataDir) -> Result<PolicySet, AccessError> {
        let pool = dir.metadata();
        let mut set = PolicySet::default();
        let users: Vec<(String, String, String, Option<i64>)> =
            sqlx::query_as("SELECT name, unit, role, level FROM users WHERE disabled = 0")
                .fetch_all(pool)
                .await?;
        for (name, unit, role, level) in users {
            let Some(role) = UserRole::parse(&role) else {
                continue;
            };
            set.users.insert(
                name.clone(),
                User {
                    name,
                    unit,
                    role,
                    level,
                },
            );
        }
        let credentials: Vec<CredentialRow> =
            sqlx::query_as("SELECT id, kind, secret_hash, user, scopes, expires_at FROM credentials WHERE revoked_at IS NULL")
                .fetch_all(pool)
                .await?;
        for row in credentials {
            let (Ok(hash), Ok(scopes), Some(kind)) = (
                <[u8; 32]>::try_from(row.secret_hash),
                Scopes::parse(&row.scopes),
                CredentialKind::parse(&row.kind),
            ) else {
                continue;
            };
            set.credentials.insert(
                row.id,
                Credential {
                    kind,
                    hash,
                    user: row.user,
                    scopes,
                    expires: row.expires_at.as_deref().and_then(parse_stamp),
                },
            );
        }
        let resources: Vec<(String, String, Option<i64>)> = sqlx::query_as(
            "SELECT r.code, r.body, p.min_leader_level FROM resources r LEFT JOIN resource_policies p ON p.resource = r.code",
        )
        .fetch_all(pool)
        .await?;
        for (code, body, min_leader_level) in resources {
            let Ok(resource) = serde_json::from_str::<Resource>(&body) else {
                continue;
            };
            set.resources.insert(
                code,
                ResourceRule {
                    provider: resource.unit,
                    share_type: resource.share_type,
                    fields: resource
                        .fields
                        .into_iter()
                        .map(|f| FieldRule {
                            name: f.name,
                            sensitivity: f.sensitivity,
                            default_mask: f.default_mask,
                        })
                        .collect(),
                    min_leader_level,
                },
            );
        }
        let now = crate::clock::stamp(Timestamp::now());
        // One JSON document instead of a row each: sqlx hands rows over one by one, which
        // made a reload with 100,000 grants take a second.
        let grants: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, resource, unit, user, role, purpose, json(fields), row_filter, valid_from, valid_until)) FROM grants WHERE revoked_at IS NULL AND (valid_until IS NULL OR valid_until > ?)",
        )
        .bind(now)
        .fetch_one(pool)
        .await?;
        let grants: Vec<GrantRow> = serde_json::from_str(grants.as_deref().unwrap_or("[]"))
            .map_err(|e| AccessError::Invalid(format!("a stored grant is unreadable: {e}")))?;
        for (id, resource, unit, user, role, purpose, fields, row_filter, from, until) in grants {
            let rule = GrantRule {
                id,
                user,
                role: role.as_deref().and_then(UserRole::parse),
                purpose,
                fields,
                row_filter,
                valid_from: parse_stamp(&from).unwrap_or(Timestamp::MAX),
                valid_until: until.as_deref().and_then(parse_stamp),
            };
            set.add_grant(resource, unit, rule);
        }
        let purposes: Vec<String> =
            sqlx::query_scalar("SELECT code FROM purposes WHERE active = 1")
                .fetch_all(pool)
                .await?;
        set.purposes = purposes.into_iter().collect();
        Ok(set)
    }

    fn add_grant(&mut self, resource: String, unit: String, rule: GrantRule) {
        self.grants
            .entry(resource)
            .or_default()
            .entry(unit)
            .or_default()
            .push(rule);
    }

    /// Checks a session or token credential presented at `door`; the same answer for any
    /// kind of failure.
    pub fn authenticate(
        &self,
        credential: &str,
        door: Door,
        now: Timestamp,
    ) -> Result<Principal, AccessError> {
        let (kind, id, secret) = split(credential).ok_or(AccessError::Unauthenticated)?;
        let stored = self
            .credentials
            .get(id)
            .ok_or(AccessError::Unauthenticated)?;
        let hash_matches: bool = stored.hash.ct_eq(&digest(secret)).into();
        let live = stored.expires.is_none_or(|e| now < e);
        if !(hash_matches && live && stored.kind == kind) {
            return Err(AccessError::Unauthenticated);
        }
        let user = self
            .users
            .get(&stored.user)
            .ok_or(AccessError::Unauthenticated)?;
        Ok(Principal {
            user: user.clone(),
            scopes: stored.scopes,
            credential: Some(CredentialRef {
                kind,
                id: id.to_string(),
            }),
            door,
        })
    }

    /// An active account (disabled ones are not in the set).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn knows_purpose(&self, purpose: &str) -> bool {
        self.purposes.contains(purpose)
    }

    /// The decision for one resource in one statement.
    pub fn decide(
        &self,
        user: &str,
        resource: &str,
        purpose: &str,
        now: Timestamp,
    ) -> Result<Access, AccessError> {
        let user = self
            .users
            .get(user)
            .ok_or_else(|| deny(format!("user '{user}' does not exist or is disabled")))?;
        let rule = self
            .resources
            .get(resource)
            .ok_or_else(|| deny(format!("resource {resource} is not in the catalog")))?;
        if !self.purposes.contains(purpose) {
            return Err(deny(format!(
                "purpose '{purpose}' is not on the bureau's list; see `tongchou access purposes`"
            )));
        }
        if user.unit == rule.provider {
            return Ok(Access {
                resource: resource.to_string(),
                basis: Basis::Owner,
                fields: rule
                    .fields
                    .iter()
                    .map(|f| GrantedField {
                        name: f.name.clone(),
                        mask: None,
                    })
                    .collect(),
                row_filter: None,
                valid_until: None,
            });
        }
        if let Some(level) = rule.min_leader_level
            && !user.clears_leader_level(level)
        {
            return Err(deny(format!(
                "resource {resource} is opened only to leaders of level {level} or above"
            )));
        }
        if rule.share_type == ShareType::None {
            return Err(deny(format!(
                "resource {resource} is 不予共享 not shared outside its unit"
            )));
        }
        if let Some(grant) = self.best_grant(user, resource, purpose, now) {
            let fields = grant
                .fields
                .iter()
                .filter(|g| {
                    rule.fields
                        .iter()
                        .any(|f| f.name == g.name && f.sensitivity != Sensitivity::Secret)
                })
                .cloned()
                .collect();
            return Ok(Access {
                resource: resource.to_string(),
                basis: Basis::Grant { id: grant.id },
                fields,
                row_filter: grant.row_filter.clone(),
                valid_until: grant.valid_until.map(crate::clock::stamp),
            });
        }
        if rule.share_type == ShareType::Unconditional {
            return Ok(Access {
                resource: resource.to_string(),
                basis: Basis::Unconditional,
                fields: rule
                    .fields
                    .iter()
                    .filter(|f| {
                        matches!(f.sensitivity, Sensitivity::Public | Sensitivity::Internal)
                    })
                    .map(|f| GrantedField {
                        name: f.name.clone(),
                        mask: f.default_mask.clone(),
                    })
                    .collect(),
                row_filter: None,
                valid_until: None,
            });
        }
        let requestable: Vec<&str> = rule
            .fields
            .iter()
            .filter(|f| f.sensitivity != Sensitivity::Secret)
            .map(|f| f.name.as_str())
            .collect();
        Err(deny(format!(
            "no grant of resource {resource} to {} for purpose '{purpose}' is in force; file an access request naming the fields you need: `tongchou access request --resource {resource} --purpose {purpose} --fields {}` (or 申请使用 on the resource's page)",
            user.name,
            requestable.join(",")
        )))
    }

    /// Of the grants that apply, the most recent: grants are not merged, so each statement
    /// reads under exactly one provider decision.
    fn best_grant(
        &self,
        user: &User,
        resource: &str,
        purpose: &str,
        now: Timestamp,
    ) -> Option<&GrantRule> {
        self.grants
            .get(resource)?
            .get(&user.unit)?
            .iter()
            .filter(|g| {
                g.purpose == purpose
                    && g.user.as_deref().is_none_or(|u| u == user.name)
                    && g.role.is_none_or(|r| r == user.role)
                    && g.valid_from <= now
                    && g.valid_until.is_none_or(|until| now < until)
            })
            .max_by_key(|g| g.id)
    }

    /// The first moment after `now` at which some grant starts or ends: until then, what
    /// anyone may read changes only with a policy change.
    pub fn next_grant_change(&self, now: Timestamp) -> Option<Timestamp> {
        self.grants
            .values()
            .flat_map(HashMap::values)
            .flatten()
            .flat_map(|g| [Some(g.valid_from), g.valid_until])
            .flatten()
            .filter(|&at| at > now)
            .min()
    }
}

/// The current [`PolicySet`] of a data directory, reloaded when another process (or this
/// one) records a change.
pub struct Policy {
    dir: DataDir,
    generation: tongchou_store::GenerationWatch,
    state: RwLock<(String, Arc<PolicySet>)>,
    /// One reload at a time: statements arriving during a reload wait for it instead of
    /// each loading the same set again.
    reloading: tokio::sync::Mutex<()>,
}

impl Policy {
    pub async fn open(dir: DataDir) -> Result<Policy, AccessError> {
        let watch = dir.policy_generation_watch();
        let generation = watch.current();
        let set = PolicySet::load(&dir).await?;
        Ok(Policy {
            dir,
            generation: watch,
            state: RwLock::new((generation, Arc::new(set))),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The set as of the latest change.
    pub async fn current(&self) -> Result<Arc<PolicySet>, AccessError> {
        let generation = self.generation.current();
        if let Some(set) = self.cached(&generation) {
            return Ok(set);
        }
        let _reload = self.reloading.lock().await;
        if let Some(set) = self.cached(&generation) {
            return Ok(set);
        }
        let set = Arc::new(PolicySet::load(&self.dir).await?);
        *self.state.write().expect("policy lock") = (generation, set.clone());
        Ok(set)
    }

    fn cached(&self, generation: &str) -> Option<Arc<PolicySet>> {
        let state = self.state.read().expect("policy lock");
        (state.0 == generation).then(|| state.1.clone())
    }

    pub async fn authenticate(
        &self,
        credential: &str,
        door: Door,
    ) -> Result<Principal, AccessError> {
        self.current()
            .await?
            .authenticate(credential, door, Timestamp::now())
    }

    pub async fn decide(
        &self,
        user: &str,
        resource: &str,
        purpose: &str,
    ) -> Result<Access, AccessError> {
        self.current()
            .await?
            .decide(user, resource, purpose, Timestamp::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set built directly: 1,000 resources of 65 units, 1,300 users and `grants` grants.
    fn synthetic(grants: usize) -> PolicySet {
        let mut set = PolicySet::default();
        set.purposes.insert("statistics".into());
        let resources = 1_000;
        let units = 65;
        for r in 0..resources {
            set.resources.insert(
                format!("R{r}"),
                ResourceRule {
                    provider: format!("U{}", (r + 1) % units),
                    share_type: ShareType::Conditional,
                    fields: (0..12)
                        .map(|f| FieldRule {
                            name: format!("f{f}"),
                            sensitivity: Sensitivity::Internal,
                            default_mask: None,
                        })
                        .collect(),
                    min_leader_level: None,
                },
            );
        }
        for u in 0..units * 20 {
            let name = format!("user{u}");
            set.users.insert(
                name.clone(),
                User {
                    name,
                    unit: format!("U{}", u % units),
                    role: UserRole::Analyst,
                    level: None,
                },
            );
        }
        for g in 0..grants {
            let user = g % (units * 20);
            set.add_grant(
                format!("R{}", g % resources),
                format!("U{}", user % units),
                GrantRule {
                    id: g as i64,
                    user: Some(format!("user{user}")),
                    role: None,
                    purpose: "statistics".into(),
                    fields: (0..6)
                        .map(|f| GrantedField {
                            name: format!("f{f}"),
                            mask: None,
                        })
                        .collect(),
                    row_filter: Some("f1 = 'x'".into()),
                    valid_from: Timestamp::MIN,
                    valid_until: None,
                },
            );
        }
        set
    }

    #[test]
    fn synthetic_decisions_pick_the_users_own_grant() {
        let set = synthetic(10_000);
        let access = set
            .decide("user3", "R3", "statistics", Timestamp::now())
            .unwrap();
        assert!(matches!(access.basis, Basis::Grant { .. }));
        assert_eq!(access.fields.len(), 6);
        assert!(
            set.decide("user5", "R3", "statistics", Timestamp::now())
                .is_err()
        );
        let owner = set
            .decide("user4", "R3", "statistics", Timestamp::now())
            .unwrap();
        assert_eq!((owner.basis, owner.fields.len()), (Basis::Owner, 12));
        assert!(
            set.decide("user3", "R3", "fishing", Timestamp::now())
                .is_err()
        );
    }

    #[test]
    fn the_next_grant_change_is_the_nearest_future_start_or_end() {
        let mut set = synthetic(3);
        let now = Timestamp::now();
        assert_eq!(set.next_grant_change(now), None, "grants in force, no end");
        let at = |secs: i64| now + jiff::SignedDuration::from_secs(secs);
        let rule = |id, from, until| GrantRule {
            id,
            user: None,
            role: None,
            purpose: "statistics".into(),
            fields: Vec::new(),
            row_filter: None,
            valid_from: from,
            valid_until: until,
        };
        set.add_grant("R1".into(), "U2".into(), rule(10, at(-60), Some(at(90))));
        assert_eq!(set.next_grant_change(now), Some(at(90)));
        set.add_grant("R2".into(), "U0".into(), rule(11, at(30), None));
        assert_eq!(set.next_grant_change(now), Some(at(30)));
        assert!(set.decide("user0", "R2", "statistics", now).is_err());
        assert!(set.decide("user0", "R2", "statistics", at(31)).is_ok());
        assert_eq!(set.next_grant_change(at(30)), Some(at(90)));
    }
}
