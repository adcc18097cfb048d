//! Per-statement limits, by role. `config/query.toml` may raise or lower the defaults for
//! everyone (`[default]`) and for each role (`[analyst]`, `[leader]`, …); a role's value
//! wins over `[default]`, which wins over the built-in [`Limits::default`]:
//!
//! ```toml
//! [default]
//! max_rows = 100000
//! timeout_seconds = 60
//! memory_mb = 1024
//! value_mb = 64
//! batch_mb = 256
//!
//! [analyst]
//! max_rows = 500000
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tongchou_model::UserRole;

use crate::{Limits, QueryError};

pub const LIMITS_FILE: &str = "query.toml";

/// What one table of the file sets; anything left out is inherited.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    pub max_rows: Option<u64>,
    pub timeout_seconds: Option<u64>,
    pub memory_mb: Option<usize>,
    /// What one value a function builds may weigh.
    pub value_mb: Option<usize>,
    /// What one function call may build over a batch.
    pub batch_mb: Option<usize>,
    /// What an answer may hold.
    pub result_mb: Option<usize>,
}

impl Limits {
    fn overridden(&self, by: &Overrides) -> Limits {
        Limits {
            max_rows: by.max_rows.unwrap_or(self.max_rows),
            timeout: by
                .timeout_seconds
                .map(Duration::from_secs)
                .unwrap_or(self.timeout),
            memory_bytes: mebibytes(by.memory_mb, self.memory_bytes),
            value_bytes: mebibytes(by.value_mb, self.value_bytes),
            batch_bytes: mebibytes(by.batch_mb, self.batch_bytes),
            result_bytes: mebibytes(by.result_mb, self.result_bytes),
        }
    }
}

fn mebibytes(mb: Option<usize>, otherwise: usize) -> usize {
    mb.map_or(otherwise, |mb| mb << 20)
}

/// The limits file as read: `[default]` and one table per role.
#[derive(Debug, Default)]
pub struct RoleLimits {
    everyone: Overrides,
    roles: HashMap<String, Overrides>,
}

impl RoleLimits {
    /// Reads `config/query.toml` (absent: built-in limits for all).
    pub fn read(config: &Path) -> Result<RoleLimits, QueryError> {
        let path = config.join(LIMITS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(RoleLimits::default());
        };
        let bad = |why: String| QueryError::Refused(format!("{}: {why}", path.display()));
        let mut tables: HashMap<String, Overrides> =
            toml::from_str(&text).map_err(|e| bad(e.message().to_string()))?;
        if let Some(role) = tables
            .keys()
            .find(|r| *r != "default" && UserRole::parse(r).is_none())
        {
            return Err(bad(format!(
                "[{role}] is not a role; use [default] or one of {}",
                UserRole::choices()
            )));
        }
        Ok(RoleLimits {
            everyone: tables.remove("default").unwrap_or_default(),
            roles: tables,
        })
    }

    /// The limits for a statement of a user with `role`.
    pub fn for_role(&self, base: &Limits, role: UserRole) -> Limits {
        let limits = base.overridden(&self.everyone);
        match self.roles.get(role.as_str()) {
            Some(overrides) => limits.overridden(overrides),
            None => limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_overrides_the_default_which_overrides_the_built_in_limits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LIMITS_FILE),
            "[default]\ntimeout_seconds = 30\nbatch_mb = 32\n\n[analyst]\nmax_rows = 5\nmemory_mb = 64\nvalue_mb = 8\n",
        )
        .unwrap();
        let table = RoleLimits::read(dir.path()).unwrap();
        let base = Limits::default();
        let analyst = table.for_role(&base, UserRole::Analyst);
        assert_eq!(analyst.max_rows, 5);
        assert_eq!(analyst.memory_bytes, 64 << 20);
        assert_eq!(analyst.timeout, Duration::from_secs(30));
        assert_eq!(
            (analyst.value_bytes, analyst.batch_bytes),
            (8 << 20, 32 << 20)
        );
        let leader = table.for_role(&base, UserRole::Leader);
        assert_eq!(leader.max_rows, base.max_rows);
        assert_eq!(leader.timeout, Duration::from_secs(30));
        assert_eq!(leader.value_bytes, base.value_bytes);
    }

    #[test]
    fn a_misspelt_role_or_setting_is_refused_with_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LIMITS_FILE);
        std::fs::write(&path, "[analysts]\nmax_rows = 5\n").unwrap();
        let error = RoleLimits::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("[analysts] is not a role") && error.contains("analyst"));
        std::fs::write(&path, "[analyst]\nmax_row = 5\n").unwrap();
        let error = RoleLimits::read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("max_row"), "{error}");
    }
}
