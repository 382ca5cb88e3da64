//! Databases, roles and access rules the design declares: pgha creates and
//! alters them on the master and writes the pg_hba rules.

use serde::Serialize;

/// PostgreSQL's superuser, whose password is the secrets' `superuser_password`.
pub const SUPERUSER: &str = "postgres";
/// Patroni's replication role.
pub const REPLICATION_USER: &str = "replicator";
/// The metrics exporter's role (`pg_monitor`).
pub const MONITOR_USER: &str = "pgha_monitor";

/// PgBouncer's `auth_user`: it reads login roles' verifiers through a
/// lookup function, never the superuser's or the replication role's.
pub const POOLER_USER: &str = "pgha_pgbouncer";

/// Roles pgha or PostgreSQL own: never declared, never reported as drift.
pub(crate) const RESERVED_ROLES: [&str; 4] = [SUPERUSER, REPLICATION_USER, MONITOR_USER, POOLER_USER];

/// Databases every cluster has.
pub(crate) const SYSTEM_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];

#[derive(Debug, Clone, Default, Serialize)]
pub struct Objects {
    pub roles: Vec<Role>,
    pub databases: Vec<Database>,
    /// `None`: every role may connect to every database from the proxies and
    /// the client networks (as before access rules existed). `Some`: only
    /// these pairs, the superuser and pgha's monitor.
    pub access: Option<Vec<Access>>,
}

impl Objects {
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.databases.is_empty()
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// `(database, role)` pairs of `hostssl` lines, each written for every
    /// address clients arrive from.
    pub fn hba_rules(&self) -> Vec<Access> {
        match &self.access {
            None => vec![Access::new("all", "all")],
            Some(rules) => {
                let mut out = vec![Access::new("all", SUPERUSER), Access::new("postgres", MONITOR_USER)];
                out.extend(rules.iter().cloned());
                out
            }
        }
    }

    /// Rules for the database hosts' addresses only: with access rules,
    /// PgBouncer's role, which looks roles up in the database a client asks
    /// for, from its own host's HAProxy.
    pub fn hba_host_rules(&self) -> Vec<Access> {
        match (&self.access, self.role(POOLER_USER)) {
            (Some(_), Some(_)) => vec![Access::new("all", POOLER_USER)],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    /// `false`: the design wants it dropped (`state: absent`).
    pub present: bool,
    pub login: bool,
    pub inherit: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub bypassrls: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    /// Seconds since the epoch; `None`: the password never expires.
    pub valid_until: Option<i64>,
    pub member_of: Vec<String>,
    pub password: PasswordSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordSource {
    /// Generated into the secrets file, kept there.
    Secrets,
    /// Read from this environment variable at each deploy.
    Env(String),
    /// No password: the role cannot log in by password.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Database {
    pub name: String,
    pub owner: String,
    /// Set at creation only.
    pub encoding: Option<String>,
    pub locale: Option<String>,
    pub extensions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    pub database: String,
    pub role: String,
}

impl Access {
    pub(crate) fn new(database: &str, role: &str) -> Access {
        Access {
            database: database.to_string(),
            role: role.to_string(),
        }
    }
}

impl Role {
    /// A login role with every default: its password kept in the secrets file.
    pub(crate) fn login(name: &str) -> Role {
        Role {
            name: name.to_string(),
            present: true,
            login: true,
            inherit: true,
            createdb: false,
            createrole: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
            member_of: Vec::new(),
            password: PasswordSource::Secrets,
        }
    }
}

/// The pooler's own role, which pgha keeps like a declared one.
pub(crate) fn pooler_role() -> Role {
    Role::login(POOLER_USER)
}

/// An SQL identifier as PostgreSQL reads it: double-quoted, quotes doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_access_rules_every_role_may_connect() {
        let o = Objects::default();
        assert_eq!(
            o.hba_rules(),
            vec![Access {
                database: "all".into(),
                role: "all".into()
            }]
        );
    }

    #[test]
    fn access_rules_keep_the_superuser_and_the_monitor() {
        let o = Objects {
            access: Some(vec![Access {
                database: "app".into(),
                role: "app_rw".into(),
            }]),
            ..Objects::default()
        };
        let rules: Vec<(String, String)> = o.hba_rules().into_iter().map(|a| (a.database, a.role)).collect();
        assert_eq!(
            rules,
            [("all", "postgres"), ("postgres", "pgha_monitor"), ("app", "app_rw")]
                .map(|(d, r)| (d.to_string(), r.to_string()))
        );
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
