//! Scopes: what a token may do, per database.
//!
//! A scope is `<permission>:<database>` or `<permission>:*` (every database);
//! a bare `<permission>` means `:*`. Permissions:
//!
//! | permission | grants |
//! |---|---|
//! | `read` | SQL, PromQL, Grafana, label listing, system tables |
//! | `write` | line protocol and remote write |
//! | `rules` | define, replace, delete, validate and backtest rules (and read, which a rule is) |
//! | `admin` | everything on the database, plus DELETE, retention, approvals and breakers; `admin:*` also tokens, flush, compaction and rollups |
//!
//! ```
//! use fleetlake_server::auth::{Permission, Scope};
//! let s: Scope = "rules:fleet".parse().unwrap();
//! assert!(s.grants(Permission::Read, Some("fleet")));
//! assert!(!s.grants(Permission::Write, Some("fleet")));
//! assert!(!s.grants(Permission::Rules, Some("other")));
//! ```

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Rules,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Rules => "rules",
            Permission::Admin => "admin",
        }
    }

    /// Whether holding `self` on a database grants `wanted` on it.
    fn implies(self, wanted: Permission) -> bool {
        self == wanted
            || self == Permission::Admin
            || (self == Permission::Rules && wanted == Permission::Read)
    }
}

/// One grant of a token.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub permission: Permission,
    /// `None`: every database.
    pub db: Option<String>,
}

impl Scope {
    /// Whether this scope allows `permission` on `db`; `db == None` asks
    /// for a server-wide operation, which only a `*` scope grants.
    pub fn grants(&self, permission: Permission, db: Option<&str>) -> bool {
        let db_ok = match (&self.db, db) {
            (None, _) => true,
            (Some(mine), Some(asked)) => mine == asked,
            (Some(_), None) => false,
        };
        db_ok && self.permission.implies(permission)
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (perm, db) = match s.trim().split_once(':') {
            Some((p, d)) => (p, Some(d)),
            None => (s.trim(), None),
        };
        let permission = match perm {
            "read" => Permission::Read,
            "write" => Permission::Write,
            "rules" => Permission::Rules,
            "admin" => Permission::Admin,
            _ => {
                return Err(format!(
                    "invalid scope {s:?}: expected read, write, rules or admin, optionally \
                     followed by :<database> or :* (e.g. read:fleet, write:*, admin)"
                ));
            }
        };
        let db = match db {
            None | Some("*") => None,
            Some(d) => {
                fleetlake_storage::schema::validate_name(d)
                    .map_err(|e| format!("invalid scope {s:?}: database {e}"))?;
                Some(d.to_string())
            }
        };
        Ok(Scope { permission, db })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            self.permission.as_str(),
            self.db.as_deref().unwrap_or("*")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(scope("admin").to_string(), "admin:*");
        assert_eq!(scope("write:*").to_string(), "write:*");
        assert_eq!(scope("read:fleet").to_string(), "read:fleet");
        for bad in ["root", "read:", "read:a/b", "", "write:../x"] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_follow_the_table() {
        let admin_all = scope("admin");
        assert!(admin_all.grants(Permission::Admin, None));
        assert!(admin_all.grants(Permission::Write, Some("x")));
        let admin_fleet = scope("admin:fleet");
        assert!(admin_fleet.grants(Permission::Admin, Some("fleet")));
        assert!(
            !admin_fleet.grants(Permission::Admin, None),
            "server-wide needs *"
        );
        assert!(!admin_fleet.grants(Permission::Read, Some("other")));
        let read = scope("read:fleet");
        assert!(read.grants(Permission::Read, Some("fleet")));
        assert!(!read.grants(Permission::Write, Some("fleet")));
        assert!(!read.grants(Permission::Rules, Some("fleet")));
        let write_all = scope("write:*");
        assert!(write_all.grants(Permission::Write, Some("any")));
        assert!(!write_all.grants(Permission::Read, Some("any")));
    }
}
