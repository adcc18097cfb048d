//! The access rules end to end on a real data directory: requests, decisions, grants,
//! revocation, expiry, leader levels, tokens, throttling and privilege escalation.

use jiff::Timestamp;
use tongchou_model::UserRole;
use tongchou_store::DataDir;

use crate::credentials::{self, Scopes};
use crate::requests::{self, Approval, NewRequest, View};
use crate::users::{UserChange, change_user};
use crate::{AccessError, Basis, Door, Policy, Principal, User, add_user};

const PROVIDER: &str = "P";
const CONSUMER: &str = "C";
const OTHER: &str = "X";
const ARREARS: &str = "313001007/000007";
const REGISTRY: &str = "102001001/000004";
const SECRET_FILE: &str = "308004010/000032";

fn resource_body(unit: &str, name: &str, share: &str) -> String {
    serde_json::json!({
        "unit": unit, "name": name, "abstract": "", "share_type": share, "open_type": "none",
        "update_cycle": "monthly",
        "fields": [
            {"name": "credit_code", "label": "统一社会信用代码", "type": "string", "role": "enterprise_id", "sensitivity": "internal"},
            {"name": "legal_rep", "label": "法定代表人", "type": "string", "role": "person_name", "sensitivity": "sensitive", "default_mask": "chinese_name"},
            {"name": "phone", "label": "联系电话", "type": "string", "sensitivity": "internal", "default_mask": "mobile"},
            {"name": "town", "label": "所属镇街", "type": "string", "sensitivity": "public"},
            {"name": "months", "label": "欠费月数", "type": "integer", "sensitivity": "internal"},
            {"name": "id_no", "label": "证件号码", "type": "string", "sensitivity": "sensitive"},
            {"name": "bank_account", "label": "银行账号", "type": "string", "sensitivity": "secret", "default_mask": "bank_card"}
        ]
    })
    .to_string()
}

struct World {
    _tmp: tempfile::TempDir,
    dir: DataDir,
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::init(&tmp.path().join("d")).await.unwrap();
        for (seq, (code, name)) in [
            (PROVIDER, "社会保险基金管理局"),
            (CONSUMER, "科学技术局"),
            (OTHER, "税务局"),
            ("B", "数据统筹局"),
        ]
        .iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO units (code, name, slug, seq, created_at) VALUES (?, ?, ?, ?, 'now')",
            )
            .bind(code)
            .bind(name)
            .bind(format!("u{seq}"))
            .bind(seq as i64)
            .execute(dir.metadata())
            .await
            .unwrap();
        }
        for (code, name, share) in [
            (ARREARS, "社会保险费欠缴明细", "conditional"),
            (REGISTRY, "企业登记信息", "unconditional"),
            (SECRET_FILE, "外国人住宿登记", "none"),
        ] {
            sqlx::query("INSERT INTO resources (code, unit, name, share_type, open_type, update_cycle, field_count, version, body, registered_at, updated_at) VALUES (?, ?, ?, ?, 'none', 'monthly', 7, 1, ?, 'now', 'now')")
                .bind(code)
                .bind(PROVIDER)
                .bind(name)
                .bind(share)
                .bind(resource_body(PROVIDER, name, share))
                .execute(dir.metadata())
                .await
                .unwrap();
        }
        for (name, unit, role, level) in [
            ("steward_p", PROVIDER, UserRole::Steward, None),
            ("analyst_c", CONSUMER, UserRole::Analyst, None),
            ("steward_x", OTHER, UserRole::Steward, None),
            ("leader_c", CONSUMER, UserRole::Leader, Some(2)),
            ("admin_b", "B", UserRole::PlatformAdmin, None),
        ] {
            let user = User {
                name: name.into(),
                unit: unit.into(),
                role,
                level,
            };
            add_user(&dir, None, &user, "a long enough password")
                .await
                .unwrap();
        }
        World { _tmp: tmp, dir }
    }

    async fn who(&self, name: &str) -> Principal {
        Principal::of_user(self.dir.metadata(), name).await.unwrap()
    }

    async fn request(&self, fields: &[&str]) -> Result<i64, AccessError> {
        requests::file_request(
            &self.dir,
            &self.who("analyst_c").await,
            &NewRequest {
                resource: ARREARS.into(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                purpose: "subsidy_review".into(),
                purpose_detail: "2026年高新技术企业补贴审核".into(),
                legal_basis: "《政务信息资源共享管理暂行办法》".into(),
                ..Default::default()
            },
        )
        .await
    }

    async fn decide(&self, user: &str, resource: &str) -> Result<crate::Access, AccessError> {
        Policy::open(self.dir.clone())
            .await
            .unwrap()
            .decide(user, resource, "subsidy_review")
            .await
    }
}

fn forbidden(result: Result<impl std::fmt::Debug, AccessError>, words: &str) {
    match result {
        Err(AccessError::Forbidden(why)) => assert!(why.contains(words), "{why}"),
        other => panic!("expected forbidden ({words}), got {other:?}"),
    }
}

#[tokio::test]
async fn the_provider_narrows_a_request_and_the_grant_is_what_the_engine_gets() {
    let w = World::new().await;
    assert!(w.decide("analyst_c", ARREARS).await.is_err());
    let id = w
        .request(&["credit_code", "legal_rep", "months", "town"])
        .await
        .unwrap();
    let approval = Approval {
        fields: Some(vec![
            "credit_code".into(),
            "legal_rep".into(),
            "months".into(),
        ]),
        row_filter: Some("town = '桂城街道' AND months >= 3".into()),
        masks: [("credit_code".to_string(), "pseudonym".to_string())].into(),
        raw_reason: None,
        until: Some("2099-12-31".into()),
        to: None,
    };
    let grant = requests::approve(&w.dir, &w.who("steward_p").await, id, &approval)
        .await
        .unwrap();
    assert_eq!(grant.user.as_deref(), Some("analyst_c"));
    let access = w.decide("analyst_c", ARREARS).await.unwrap();
    assert_eq!(access.basis, Basis::Grant { id: grant.id });
    let fields: Vec<(&str, Option<&str>)> = access
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.mask.as_deref()))
        .collect();
    assert_eq!(
        fields,
        [
            ("credit_code", Some("pseudonym")),
            ("legal_rep", Some("chinese_name")),
            ("months", None)
        ]
    );
    assert_eq!(
        access.row_filter.as_deref(),
        Some("town = '桂城街道' AND months >= 3")
    );
    assert_eq!(access.valid_until.as_deref(), Some("2099-12-31T16:00:00Z"));
    // Another purpose, or a colleague, does not ride on this grant.
    let policy = Policy::open(w.dir.clone()).await.unwrap();
    assert!(
        policy
            .decide("analyst_c", ARREARS, "statistics")
            .await
            .is_err()
    );
    assert!(
        policy
            .decide("leader_c", ARREARS, "subsidy_review")
            .await
            .is_err()
    );
    let mine = requests::list_requests(
        w.dir.metadata(),
        Some(&w.who("analyst_c").await),
        View::Mine,
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (mine[0].state.as_str(), mine[0].grant),
        ("approved", Some(grant.id))
    );

    // Revocation takes effect on the next decision of an already-open policy.
    requests::revoke(
        &w.dir,
        Some(&w.who("steward_p").await),
        grant.id,
        "项目结束",
    )
    .await
    .unwrap();
    forbidden(
        policy.decide("analyst_c", ARREARS, "subsidy_review").await,
        "no grant",
    );
}

#[tokio::test]
async fn approvals_cannot_widen_and_secret_or_unshared_data_is_never_granted() {
    let w = World::new().await;
    forbidden(w.request(&["credit_code", "bank_account"]).await, "secret");
    let none = requests::file_request(
        &w.dir,
        &w.who("analyst_c").await,
        &NewRequest {
            resource: SECRET_FILE.into(),
            fields: vec!["town".into()],
            purpose: "statistics".into(),
            ..Default::default()
        },
    )
    .await;
    forbidden(none, "不予共享");
    assert!(
        matches!(w.request(&["salary"]).await, Err(AccessError::Invalid(e)) if e.contains("no field 'salary'"))
    );
    let bad_purpose = requests::file_request(
        &w.dir,
        &w.who("analyst_c").await,
        &NewRequest {
            resource: ARREARS.into(),
            fields: vec!["town".into()],
            purpose: "curiosity".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(bad_purpose, Err(AccessError::Invalid(e)) if e.contains("subsidy_review")));

    let id = w.request(&["credit_code", "months"]).await.unwrap();
    assert!(
        matches!(w.request(&["town"]).await, Err(AccessError::Invalid(e)) if e.contains("still pending"))
    );
    let steward = w.who("steward_p").await;
    for (approval, why) in [
        (
            Approval {
                fields: Some(vec!["phone".into()]),
                ..Default::default()
            },
            "not requested",
        ),
        (
            Approval {
                masks: [("town".to_string(), "null".to_string())].into(),
                ..Default::default()
            },
            "does not grant",
        ),
        (
            Approval {
                masks: [("months".to_string(), "rot13".to_string())].into(),
                ..Default::default()
            },
            "unknown",
        ),
        (
            Approval {
                row_filter: Some("1 = 1; DROP TABLE grants".into()),
                ..Default::default()
            },
            "row filter refused",
        ),
        (
            Approval {
                until: Some("2001-01-01".into()),
                ..Default::default()
            },
            "has passed",
        ),
        (
            Approval {
                to: Some("everyone".into()),
                ..Default::default()
            },
            "role:ROLE",
        ),
    ] {
        match requests::approve(&w.dir, &steward, id, &approval).await {
            Err(AccessError::Invalid(e)) => assert!(e.contains(why), "{e}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    // Nothing above decided the request.
    let request = requests::get_request(w.dir.metadata(), id).await.unwrap();
    assert_eq!(request.state, "pending");
    let refused = requests::refuse(&w.dir, &steward, id, "").await;
    assert!(matches!(refused, Err(AccessError::Invalid(_))));
    let refused = requests::refuse(&w.dir, &steward, id, "用途与数据无关")
        .await
        .unwrap();
    assert_eq!(
        (refused.state.as_str(), refused.reason.as_deref()),
        ("refused", Some("用途与数据无关"))
    );
    assert!(
        requests::approve(&w.dir, &steward, id, &Approval::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn unconditional_resources_give_non_sensitive_fields_with_default_masks() {
    let w = World::new().await;
    let access = w.decide("analyst_c", REGISTRY).await.unwrap();
    assert_eq!(access.basis, Basis::Unconditional);
    let names: Vec<(&str, Option<&str>)> = access
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.mask.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("credit_code", None),
            ("phone", Some("mobile")),
            ("town", None),
            ("months", None)
        ]
    );
    let owner = w.decide("steward_p", SECRET_FILE).await.unwrap();
    assert_eq!((owner.basis, owner.fields.len()), (Basis::Owner, 7));
    forbidden(w.decide("analyst_c", SECRET_FILE).await, "不予共享");
}

#[tokio::test]
async fn leader_levels_close_a_resource_to_everyone_below() {
    let w = World::new().await;
    forbidden(
        requests::set_min_leader_level(&w.dir, Some(&w.who("steward_x").await), REGISTRY, Some(3))
            .await,
        "providing unit",
    );
    requests::set_min_leader_level(&w.dir, Some(&w.who("steward_p").await), REGISTRY, Some(3))
        .await
        .unwrap();
    forbidden(w.decide("analyst_c", REGISTRY).await, "level 3");
    forbidden(w.decide("leader_c", REGISTRY).await, "level 3");
    change_user(
        &w.dir,
        Some(&w.who("admin_b").await),
        "leader_c",
        &UserChange {
            level: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(w.decide("leader_c", REGISTRY).await.is_ok());
}

#[tokio::test]
async fn only_the_providing_steward_decides_and_nobody_escalates() {
    let w = World::new().await;
    let id = w.request(&["months"]).await.unwrap();
    for who in ["steward_x", "analyst_c", "admin_b", "leader_c"] {
        forbidden(
            requests::approve(&w.dir, &w.who(who).await, id, &Approval::default()).await,
            "providing unit",
        );
    }
    // A token scoped to read cannot approve, even the right steward's.
    let steward = w.who("steward_p").await;
    let issued = credentials::create_token(
        &w.dir,
        &steward,
        "ci",
        Scopes::parse("read").unwrap(),
        Some(7),
    )
    .await
    .unwrap();
    let policy = Policy::open(w.dir.clone()).await.unwrap();
    let via_token = policy
        .authenticate(&issued.secret, Door::Rest)
        .await
        .unwrap();
    forbidden(
        requests::approve(&w.dir, &via_token, id, &Approval::default()).await,
        "scopes (read)",
    );
    forbidden(
        credentials::create_token(&w.dir, &via_token, "more", Scopes::all(), None).await,
        "token cannot create",
    );
    forbidden(
        credentials::create_token(
            &w.dir,
            &steward,
            "root",
            Scopes::parse("admin").unwrap(),
            None,
        )
        .await,
        "admin",
    );
    // Users cannot change their own or anyone's role unless they are the bureau's admins,
    // and admins not their own.
    let analyst = w.who("analyst_c").await;
    let promote = UserChange {
        role: Some(UserRole::PlatformAdmin),
        ..Default::default()
    };
    forbidden(
        change_user(&w.dir, Some(&analyst), "analyst_c", &promote).await,
        "platform admins",
    );
    forbidden(
        change_user(&w.dir, Some(&steward), "analyst_c", &promote).await,
        "platform admins",
    );
    let admin = w.who("admin_b").await;
    forbidden(
        change_user(&w.dir, Some(&admin), "admin_b", &promote).await,
        "own",
    );
    let new_user = User {
        name: "mole".into(),
        unit: PROVIDER.into(),
        role: UserRole::Steward,
        level: None,
    };
    forbidden(
        add_user(&w.dir, Some(&steward), &new_user, "a long enough password").await,
        "platform admins",
    );
    forbidden(
        requests::list_requests(w.dir.metadata(), Some(&analyst), View::All, false).await,
        "platform admins",
    );
    forbidden(
        requests::list_requests(w.dir.metadata(), Some(&analyst), View::Queue, false).await,
        "stewards",
    );
    forbidden(
        requests::withdraw(&w.dir, &w.who("leader_c").await, id).await,
        "someone else",
    );
    // Revocation of the token and disabling the account end their use at once.
    credentials::revoke_credential(&w.dir, Some(&steward), &issued.id)
        .await
        .unwrap();
    assert!(matches!(
        policy.authenticate(&issued.secret, Door::Rest).await,
        Err(AccessError::Unauthenticated)
    ));
    let (_, session) = credentials::sign_in(
        &w.dir,
        "analyst_c",
        "a long enough password",
        Door::Rest,
        "10.0.0.1",
    )
    .await
    .unwrap();
    assert!(
        policy
            .authenticate(&session.secret, Door::Rest)
            .await
            .is_ok()
    );
    change_user(
        &w.dir,
        Some(&admin),
        "analyst_c",
        &UserChange {
            disabled: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        policy.authenticate(&session.secret, Door::Rest).await,
        Err(AccessError::Unauthenticated)
    ));
    // A tampered secret with a valid id is refused.
    let (_, session) = credentials::sign_in(
        &w.dir,
        "leader_c",
        "a long enough password",
        Door::Rest,
        "10.0.0.1",
    )
    .await
    .unwrap();
    let mut forged = session.secret.clone();
    forged.pop();
    forged.push(if session.secret.ends_with('0') {
        '1'
    } else {
        '0'
    });
    assert!(matches!(
        policy.authenticate(&forged, Door::Rest).await,
        Err(AccessError::Unauthenticated)
    ));
}

#[tokio::test]
async fn a_grant_to_a_role_reaches_that_role_of_the_unit_only() {
    let w = World::new().await;
    let id = w.request(&["months"]).await.unwrap();
    let approval = Approval {
        to: Some("role:leader".into()),
        ..Default::default()
    };
    let grant = requests::approve(&w.dir, &w.who("steward_p").await, id, &approval)
        .await
        .unwrap();
    assert_eq!((grant.user, grant.role.as_deref()), (None, Some("leader")));
    assert!(w.decide("leader_c", ARREARS).await.is_ok());
    forbidden(w.decide("analyst_c", ARREARS).await, "no grant");
    for (who, sees) in [("leader_c", true), ("analyst_c", false)] {
        let mine = requests::list_grants(w.dir.metadata(), Some(&w.who(who).await), View::Mine)
            .await
            .unwrap();
        assert_eq!(mine.iter().any(|g| g.id == grant.id), sees, "{who}");
    }
    forbidden(
        requests::list_grants(
            w.dir.metadata(),
            Some(&w.who("analyst_c").await),
            View::Provided,
        )
        .await,
        "stewards",
    );
}

#[tokio::test]
async fn grants_end_with_their_last_day_without_any_reload() {
    let w = World::new().await;
    let id = w.request(&["months"]).await.unwrap();
    let today = crate::clock::today();
    let approval = Approval {
        until: Some(today.to_string()),
        ..Default::default()
    };
    requests::approve(&w.dir, &w.who("steward_p").await, id, &approval)
        .await
        .unwrap();
    // One set, loaded once: the end is checked at each decision, not at load.
    let set = crate::PolicySet::load(&w.dir).await.unwrap();
    let end = crate::clock::end_of_day(today);
    let just_before = end - jiff::SignedDuration::from_secs(1);
    assert!(
        set.decide("analyst_c", ARREARS, "subsidy_review", just_before)
            .is_ok()
    );
    forbidden(
        set.decide("analyst_c", ARREARS, "subsidy_review", end),
        "no grant",
    );
    // A grant already past its end is not even loaded.
    sqlx::query("UPDATE grants SET valid_until = '2000-01-01T00:00:00Z'")
        .execute(w.dir.metadata())
        .await
        .unwrap();
    let reloaded = crate::PolicySet::load(&w.dir).await.unwrap();
    forbidden(
        reloaded.decide("analyst_c", ARREARS, "subsidy_review", Timestamp::now()),
        "no grant",
    );
}

#[tokio::test]
async fn wrong_passwords_are_throttled_per_account_and_address() {
    let w = World::new().await;
    for _ in 0..5 {
        assert!(matches!(
            credentials::sign_in(
                &w.dir,
                "analyst_c",
                "wrong password!",
                Door::Rest,
                "10.0.0.9"
            )
            .await,
            Err(AccessError::BadCredentials)
        ));
    }
    // Even the right password waits now, from any address.
    assert!(matches!(
        credentials::sign_in(
            &w.dir,
            "analyst_c",
            "a long enough password",
            Door::Rest,
            "10.0.0.7"
        )
        .await,
        Err(AccessError::Throttled("for this account", 15))
    ));
    // Unknown names look like wrong passwords, and count against the address.
    for n in 0..15 {
        assert!(matches!(
            credentials::sign_in(
                &w.dir,
                &format!("ghost{n}"),
                "whatever password",
                Door::Rest,
                "10.0.0.9"
            )
            .await,
            Err(AccessError::BadCredentials)
        ));
    }
    assert!(matches!(
        credentials::sign_in(
            &w.dir,
            "leader_c",
            "a long enough password",
            Door::Rest,
            "10.0.0.9"
        )
        .await,
        Err(AccessError::Throttled("from this address", _))
    ));
    assert!(
        credentials::sign_in(
            &w.dir,
            "leader_c",
            "a long enough password",
            Door::Rest,
            "10.0.0.8"
        )
        .await
        .is_ok()
    );
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM access_events WHERE action = 'sign_in_failed'")
            .fetch_one(w.dir.metadata())
            .await
            .unwrap();
    assert_eq!(failed, 20);
}

const RIGHT: &str = "a long enough password";

async fn attempt(
    w: &World,
    name: &str,
    password: &str,
    address: &str,
) -> Result<User, AccessError> {
    credentials::check_password(&w.dir, name, password, Door::Rest, address).await
}

async fn count_events(w: &World, action: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM access_events WHERE action = ?")
        .bind(action)
        .fetch_one(w.dir.metadata())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_verify_at_most_five_and_the_lockout_is_seen_and_lifted() {
    let w = World::new().await;
    let guesses: Vec<_> = (0..40)
        .map(|n| {
            let dir = w.dir.clone();
            tokio::spawn(async move {
                let (guess, address) = (format!("guess number {n}"), format!("10.1.0.{n}"));
                credentials::check_password(&dir, "analyst_c", &guess, Door::Rest, &address).await
            })
        })
        .collect();
    let (mut wrong, mut locked) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap() {
            Err(AccessError::BadCredentials) => wrong += 1,
            Err(AccessError::Throttled("for this account", _)) => locked += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((wrong, locked), (5, 35), "only five were verified");
    assert!(matches!(
        attempt(&w, "analyst_c", RIGHT, "10.2.0.1").await,
        Err(AccessError::Throttled("for this account", 15))
    ));
    assert_eq!(count_events(&w, "sign_in_failed").await, 5);
    assert_eq!(
        count_events(&w, "account_locked").await,
        1,
        "once per lockout"
    );

    let locks = credentials::lockouts(w.dir.metadata()).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(
        (locks[0].user.as_str(), locks[0].failures),
        ("analyst_c", 5)
    );
    assert_eq!(locks[0].addresses.len(), 5);
    assert!(matches!(
        credentials::unlock(&w.dir, Some(&w.who("steward_p").await), "analyst_c").await,
        Err(AccessError::Forbidden(_))
    ));
    let admin = w.who("admin_b").await;
    assert_eq!(
        credentials::unlock(&w.dir, Some(&admin), "analyst_c")
            .await
            .unwrap(),
        5
    );
    assert!(
        credentials::lockouts(w.dir.metadata())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(attempt(&w, "analyst_c", RIGHT, "10.2.0.1").await.is_ok());
    assert_eq!(count_events(&w, "account_unlocked").await, 1);
}

#[tokio::test]
async fn a_success_keeps_the_failures_made_before_and_beside_it() {
    let w = World::new().await;
    for n in 0..4 {
        let address = format!("10.3.0.{n}");
        assert!(
            attempt(&w, "leader_c", "guess guess guess", &address)
                .await
                .is_err()
        );
    }
    assert!(attempt(&w, "leader_c", RIGHT, "10.3.1.1").await.is_ok());
    assert!(
        attempt(&w, "leader_c", RIGHT, "10.3.1.1").await.is_ok(),
        "a success is no failure"
    );
    assert!(matches!(
        attempt(&w, "leader_c", "one more guess", "10.3.0.9").await,
        Err(AccessError::BadCredentials)
    ));
    assert!(matches!(
        attempt(&w, "leader_c", RIGHT, "10.3.1.1").await,
        Err(AccessError::Throttled("for this account", _))
    ));
}

#[tokio::test]
async fn unknown_names_are_counted_like_accounts_and_unbounded_ones_are_never_stored() {
    let w = World::new().await;
    for n in 0..5 {
        let address = format!("10.4.0.{n}");
        assert!(matches!(
            attempt(&w, "ghost", "whatever password", &address).await,
            Err(AccessError::BadCredentials)
        ));
    }
    assert!(matches!(
        attempt(&w, "ghost", "whatever password", "10.4.1.1").await,
        Err(AccessError::Throttled("for this account", _))
    ));
    assert!(
        credentials::lockouts(w.dir.metadata())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        count_events(&w, "account_locked").await,
        0,
        "nobody to lock"
    );

    let huge = "名".repeat(650_000);
    let refused = attempt(&w, &huge, "whatever password", "10.4.2.1")
        .await
        .unwrap_err();
    assert!(matches!(refused, AccessError::BadName(_)));
    assert!(
        refused.to_string().len() < 300,
        "the name is not echoed whole"
    );
    let by_token = credentials::sign_in_with_token(
        &w.dir,
        &Policy::open(w.dir.clone()).await.unwrap(),
        &huge,
        "tc_x",
        crate::Scope::Query,
        Door::Pg,
        "10.4.2.1",
    )
    .await;
    assert!(matches!(by_token, Err(AccessError::BadName(_))));
    let longest: i64 = sqlx::query_scalar(
        "SELECT max(length(user)) FROM sign_in_failures UNION ALL SELECT max(length(actor)) FROM access_events ORDER BY 1 DESC LIMIT 1",
    )
    .fetch_one(w.dir.metadata())
    .await
    .unwrap();
    assert!(longest <= 32, "names are stored bounded");
}

#[tokio::test]
async fn weak_passwords_are_refused_wherever_one_is_set() {
    let w = World::new().await;
    let admin = w.who("admin_b").await;
    let user = User {
        name: "newcomer".into(),
        unit: CONSUMER.into(),
        role: UserRole::Analyst,
        level: None,
    };
    // The last two are weak only for the account they are set for.
    for (for_newcomer, for_analyst) in [
        ("1234567890", "1234567890"),
        ("qwertyuiop", "qwertyuiop"),
        ("woaini1314", "analyst_c!!!"),
        ("newcomer2026", "2026analyst_c"),
    ] {
        assert!(
            matches!(
                add_user(&w.dir, Some(&admin), &user, for_newcomer).await,
                Err(AccessError::WeakPassword(_))
            ),
            "{for_newcomer}"
        );
        assert!(
            matches!(
                crate::users::change_password(
                    &w.dir,
                    Some(&admin),
                    "analyst_c",
                    None,
                    for_analyst,
                    "10.5.0.1"
                )
                .await,
                Err(AccessError::WeakPassword(_))
            ),
            "{for_analyst}"
        );
    }
    assert!(
        attempt(&w, "analyst_c", RIGHT, "10.5.0.1").await.is_ok(),
        "unchanged"
    );
}

#[tokio::test]
async fn requests_unanswered_for_ten_working_days_are_flagged_to_the_bureau() {
    let w = World::new().await;
    let old = w.request(&["months"]).await.unwrap();
    sqlx::query("UPDATE access_requests SET filed_at = '2026-01-05T01:00:00Z' WHERE id = ?")
        .bind(old)
        .execute(w.dir.metadata())
        .await
        .unwrap();
    let fresh = requests::file_request(
        &w.dir,
        &w.who("leader_c").await,
        &NewRequest {
            resource: ARREARS.into(),
            fields: vec!["town".into()],
            purpose: "decision_support".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let overdue = requests::list_requests(
        w.dir.metadata(),
        Some(&w.who("admin_b").await),
        View::All,
        true,
    )
    .await
    .unwrap();
    assert_eq!(overdue.iter().map(|r| r.id).collect::<Vec<_>>(), [old]);
    assert_eq!(overdue[0].answer_due, "2026-01-19");
    let queue = requests::list_requests(
        w.dir.metadata(),
        Some(&w.who("steward_p").await),
        View::Queue,
        false,
    )
    .await
    .unwrap();
    assert_eq!(queue.iter().map(|r| r.id).collect::<Vec<_>>(), [old, fresh]);
    assert!(
        requests::list_requests(
            w.dir.metadata(),
            Some(&w.who("steward_x").await),
            View::Queue,
            false
        )
        .await
        .unwrap()
        .is_empty()
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT action FROM access_events ORDER BY id")
        .fetch_all(w.dir.metadata())
        .await
        .unwrap();
    assert_eq!(events.iter().filter(|a| *a == "request_filed").count(), 2);
}

fn invalid(result: Result<impl std::fmt::Debug, AccessError>, words: &[&str]) {
    match result {
        Err(AccessError::Invalid(why)) => {
            assert!(words.iter().all(|w| why.contains(w)), "{why}")
        }
        other => panic!("expected invalid ({words:?}), got {other:?}"),
    }
}

/// (action, front door, detail) of every access event, oldest first.
async fn events(dir: &DataDir) -> Vec<(String, String, serde_json::Value)> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT action, front_door, detail FROM access_events ORDER BY id")
            .fetch_all(dir.metadata())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(a, d, detail)| (a, d, serde_json::from_str(&detail).unwrap()))
        .collect()
}

#[tokio::test]
async fn sensitive_fields_without_a_default_mask_need_a_mask_or_a_recorded_reason() {
    let w = World::new().await;
    let steward = w.who("steward_p").await;
    let id = w.request(&["months", "legal_rep", "id_no"]).await.unwrap();
    invalid(
        requests::approve(&w.dir, &steward, id, &Approval::default()).await,
        &["id_no (证件号码)", "choose a mask", "pseudonym", "raw"],
    );
    let raw = Approval {
        masks: [("id_no".to_string(), "raw".to_string())].into(),
        raw_reason: Some("  ".into()),
        ..Default::default()
    };
    invalid(
        requests::approve(&w.dir, &steward, id, &raw).await,
        &["id_no", "need a reason"],
    );
    let pending = requests::get_request(w.dir.metadata(), id).await.unwrap();
    assert_eq!(pending.state, "pending", "nothing was granted");
    let reason = "核对身份需比对原始证件号码 the review compares the raw document numbers";
    let raw = Approval {
        raw_reason: Some(reason.into()),
        ..raw
    };
    let grant = requests::approve(&w.dir, &steward, id, &raw).await.unwrap();
    let masks: Vec<(&str, Option<&str>)> = grant
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.mask.as_deref()))
        .collect();
    assert_eq!(
        masks,
        [
            ("months", None),
            ("legal_rep", Some("chinese_name")),
            ("id_no", None)
        ]
    );
    let (_, _, detail) = events(&w.dir)
        .await
        .into_iter()
        .find(|(action, _, _)| action == "request_approved")
        .unwrap();
    assert_eq!(detail["raw"], serde_json::json!(["id_no"]));
    assert_eq!(detail["raw_reason"], reason);

    // A mask named for the field needs no reason.
    requests::revoke(&w.dir, Some(&steward), grant.id, "换用脱敏")
        .await
        .unwrap();
    let id = w.request(&["id_no"]).await.unwrap();
    let masked = Approval {
        masks: [("id_no".to_string(), "keep_first_last(1,2)".to_string())].into(),
        ..Default::default()
    };
    let grant = requests::approve(&w.dir, &steward, id, &masked)
        .await
        .unwrap();
    assert_eq!(
        grant.fields[0].mask.as_deref(),
        Some("keep_first_last(1,2)")
    );
}

#[tokio::test]
async fn events_name_the_door_each_request_came_through() {
    let w = World::new().await;
    credentials::sign_in(
        &w.dir,
        "analyst_c",
        "a long enough password",
        Door::Pg,
        "10.0.0.1",
    )
    .await
    .unwrap();
    let cli = w.who("analyst_c").await;
    let issued = credentials::create_token(
        &w.dir,
        &cli,
        "bi",
        Scopes::parse("query,write").unwrap(),
        Some(7),
    )
    .await
    .unwrap();
    let policy = Policy::open(w.dir.clone()).await.unwrap();
    credentials::sign_in_with_token(
        &w.dir,
        &policy,
        "analyst_c",
        &issued.secret,
        crate::Scope::Query,
        Door::Pg,
        "10.0.0.1",
    )
    .await
    .unwrap();
    let someone_elses = credentials::sign_in_with_token(
        &w.dir,
        &policy,
        "leader_c",
        &issued.secret,
        crate::Scope::Query,
        Door::Pg,
        "10.0.0.1",
    )
    .await;
    assert!(someone_elses.is_err());
    let over_rest = policy
        .authenticate(&issued.secret, Door::Rest)
        .await
        .unwrap();
    let id = requests::file_request(
        &w.dir,
        &over_rest,
        &NewRequest {
            resource: ARREARS.into(),
            fields: vec!["months".into()],
            purpose: "subsidy_review".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let in_portal = Principal {
        door: Door::Portal,
        ..w.who("steward_p").await
    };
    requests::approve(&w.dir, &in_portal, id, &Approval::default())
        .await
        .unwrap();
    let doors: Vec<(String, String)> = events(&w.dir)
        .await
        .into_iter()
        .filter(|(action, _, _)| action != "user_added")
        .map(|(action, door, _)| (action, door))
        .collect();
    let expected = [
        ("sign_in", "pg"),
        ("token_created", "cli"),
        ("sign_in", "pg"),
        ("sign_in_failed", "pg"),
        ("request_filed", "rest"),
        ("request_approved", "portal"),
    ];
    assert_eq!(doors, expected.map(|(a, d)| (a.to_string(), d.to_string())),);
}

#[tokio::test]
async fn a_new_password_ends_every_session_of_the_account() {
    let w = World::new().await;
    let old = "a long enough password";
    let new = "another long password";
    let (_, session) = credentials::sign_in(&w.dir, "analyst_c", old, Door::Pg, "10.0.0.1")
        .await
        .unwrap();
    let analyst = w.who("analyst_c").await;
    let token = credentials::create_token(
        &w.dir,
        &analyst,
        "bi",
        Scopes::parse("query").unwrap(),
        Some(7),
    )
    .await
    .unwrap();
    let policy = Policy::open(w.dir.clone()).await.unwrap();
    let by_self = policy
        .authenticate(&session.secret, Door::Rest)
        .await
        .unwrap();
    let change = |by: Option<&Principal>, name: &'static str, current: Option<&'static str>| {
        let dir = w.dir.clone();
        let by = by.cloned();
        async move {
            crate::users::change_password(&dir, by.as_ref(), name, current, new, "10.0.0.2").await
        }
    };
    invalid(
        change(Some(&by_self), "analyst_c", None).await,
        &["current password"],
    );
    assert!(matches!(
        change(Some(&by_self), "analyst_c", Some("not my password")).await,
        Err(AccessError::BadCredentials)
    ));
    forbidden(
        change(Some(&w.who("steward_p").await), "analyst_c", None).await,
        "platform admins",
    );
    assert!(
        policy.authenticate(&session.secret, Door::Pg).await.is_ok(),
        "nothing changed yet"
    );
    change(Some(&by_self), "analyst_c", Some(old))
        .await
        .unwrap();
    assert!(matches!(
        policy.authenticate(&session.secret, Door::Pg).await,
        Err(AccessError::Unauthenticated)
    ));
    assert!(
        policy.authenticate(&token.secret, Door::Pg).await.is_ok(),
        "tokens stay"
    );
    assert!(matches!(
        credentials::sign_in(&w.dir, "analyst_c", old, Door::Rest, "10.0.0.3").await,
        Err(AccessError::BadCredentials)
    ));
    let (_, again) = credentials::sign_in(&w.dir, "analyst_c", new, Door::Rest, "10.0.0.3")
        .await
        .unwrap();
    // The bureau's admin sets it without knowing it, and the new session ends too.
    change(Some(&w.who("admin_b").await), "analyst_c", None)
        .await
        .unwrap();
    assert!(
        policy
            .authenticate(&again.secret, Door::Rest)
            .await
            .is_err()
    );
    let recorded = events(&w.dir).await;
    let changes: Vec<&serde_json::Value> = recorded
        .iter()
        .filter(|(action, _, _)| action == "password_changed")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["sessions_ended"], 1);
}

#[tokio::test]
async fn free_text_is_bounded_before_it_is_stored() {
    let w = World::new().await;
    let long = "理".repeat(requests::MAX_TEXT_CHARS + 1);
    let filed = requests::file_request(
        &w.dir,
        &w.who("analyst_c").await,
        &NewRequest {
            resource: ARREARS.into(),
            fields: vec!["town".into()],
            purpose: "subsidy_review".into(),
            purpose_detail: long.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        matches!(&filed, Err(AccessError::Invalid(e)) if e.contains("purpose_detail has 2001 characters")),
        "{filed:?}"
    );
    let id = w.request(&["town"]).await.unwrap();
    let steward = w.who("steward_p").await;
    let refused = requests::refuse(&w.dir, &steward, id, &long).await;
    assert!(matches!(refused, Err(AccessError::Invalid(e)) if e.contains("reason has 2001")));
    let kept = requests::refuse(&w.dir, &steward, id, &long[..long.len() - 3]).await;
    assert!(kept.is_ok(), "{kept:?}");
}
