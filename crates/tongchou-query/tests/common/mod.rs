//! What the engine's tests share.

use std::sync::Arc;

use tongchou_access::{Policy, User, add_user};
use tongchou_audit::Audit;
use tongchou_model::UserRole;
use tongchou_query::Engine;
use tongchou_store::DataDir;

/// `users` (name, unit code, role) added to `dir`, and the ledger and engine over it.
pub async fn engine_with(dir: &DataDir, users: &[(&str, &str, UserRole)]) -> (Audit, Engine) {
    for (name, unit, role) in users {
        let user = User {
            name: name.to_string(),
            unit: unit.to_string(),
            role: *role,
            level: None,
        };
        add_user(dir, None, &user, "a long enough password")
            .await
            .unwrap();
    }
    let audit = Audit::open(dir).await.unwrap();
    let policy = Arc::new(Policy::open(dir.clone()).await.unwrap());
    let engine = Engine::open(dir.clone(), policy, audit.subject_key().clone()).unwrap();
    (audit, engine)
}
