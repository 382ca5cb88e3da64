//! Databases, roles and access rules.

use super::*;
use crate::design::objects::{Access, Database, Objects, PasswordSource, Role, RESERVED_ROLES, SYSTEM_DATABASES};

/// Words pg_hba.conf or PostgreSQL reads as keywords where a name stands.
const KEYWORDS: [&str; 10] = [
    "all",
    "sameuser",
    "samerole",
    "samegroup",
    "replication",
    "public",
    "none",
    "current_user",
    "session_user",
    "current_role",
];

/// PostgreSQL's predefined roles a declared role may be a member of.
const PREDEFINED: [&str; 12] = [
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
    "pg_monitor",
    "pg_signal_backend",
    "pg_checkpoint",
    "pg_use_reserved_connections",
    "pg_create_subscription",
    "pg_maintain",
    "pg_signal_autovacuum_worker",
];

/// Predefined roles that give what a superuser has (files and programs of
/// the server's account): refused like `superuser`.
const AS_SUPERUSER: [&str; 3] = [
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
];

const IDENT_HINT: &str = "use lowercase letters, digits and '_', starting with a letter or '_' (at most 63)";

/// A name written in SQL and pg_hba.conf as it is: lowercase, so it needs
/// no quoting to mean itself (pgha quotes it all the same).
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn word(s: &str, extra: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

pub(super) fn build_objects(
    cx: &mut Checker,
    root: &Node,
    roles: Vec<RawRole>,
    databases: Vec<RawDatabase>,
    access: Option<Vec<RawAccess>>,
) -> Objects {
    let roles = build_roles(cx, root, roles);
    let databases = build_databases(cx, root, databases, &roles);
    let access = access.map(|rules| build_access(cx, root, rules, &roles, &databases));
    Objects {
        roles,
        databases,
        access,
    }
}

fn build_roles(cx: &mut Checker, root: &Node, raw: Vec<RawRole>) -> Vec<Role> {
    let mut roles: Vec<Role> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("roles[{i}].{f}");
        let Some(name) = r.name else {
            cx.error(
                root,
                &format!("roles[{i}]"),
                "a role without a name",
                "add `name: app_rw`",
            );
            continue;
        };
        if !identifier(&name) {
            cx.error(
                root,
                &at("name"),
                format!("`{name}` is not a role name pgha manages"),
                IDENT_HINT,
            );
            continue;
        }
        if RESERVED_ROLES.contains(&name.as_str()) || name.starts_with("pg_") || KEYWORDS.contains(&name.as_str()) {
            cx.error(
                root,
                &at("name"),
                format!("the role name `{name}` is reserved"),
                "PostgreSQL or pgha owns it (the superuser, the replication and monitor roles, pg_*, keywords): choose another",
            );
            continue;
        }
        if roles.iter().any(|o| o.name == name) {
            cx.error(
                root,
                &at("name"),
                format!("the role `{name}` is declared twice"),
                "declare each role once",
            );
            continue;
        }
        let present = match r.state.as_deref() {
            None | Some("present") => true,
            Some("absent") => false,
            Some(other) => {
                cx.error(
                    root,
                    &at("state"),
                    format!("unknown state `{other}`"),
                    "use `present` (the default) or `absent` (deploy drops the role)",
                );
                true
            }
        };
        let login = r.login.unwrap_or(true);
        let password = match r.password.as_deref() {
            None if login => PasswordSource::Secrets,
            None | Some("none") => PasswordSource::None,
            Some("secrets") => PasswordSource::Secrets,
            Some(p) => match p.strip_prefix("env:") {
                Some(var) if shape::env_var(var) => PasswordSource::Env(var.to_string()),
                _ => {
                    cx.error(
                        root,
                        &at("password"),
                        format!("`{p}` is not a password source"),
                        "use `secrets` (generated into the secrets file, the default for a login role), \
                         `env:VARIABLE` (read at each deploy) or `none`; never the password itself",
                    );
                    PasswordSource::None
                }
            },
        };
        let connection_limit = r.connection_limit.unwrap_or(-1);
        if connection_limit < -1 {
            cx.error(
                root,
                &at("connection_limit"),
                format!("a connection limit of {connection_limit}"),
                "use -1 (no limit, the default) or a number of connections",
            );
        }
        let valid_until = r.valid_until.as_deref().and_then(|v| match epoch(v) {
            Some(t) => Some(t),
            None => {
                cx.error(
                    root,
                    &at("valid_until"),
                    format!("`{v}` is not a date"),
                    "use a date (2027-01-31, midnight UTC) or a time with its offset (2027-01-31T12:00:00Z)",
                );
                None
            }
        });
        roles.push(Role {
            name,
            present,
            login,
            inherit: r.inherit.unwrap_or(true),
            createdb: r.createdb.unwrap_or(false),
            createrole: r.createrole.unwrap_or(false),
            bypassrls: r.bypassrls.unwrap_or(false),
            connection_limit,
            valid_until,
            member_of: r.member_of.unwrap_or_default(),
            password,
        });
    }
    // Memberships, once every role is known.
    for (i, role) in roles.iter().enumerate() {
        for (j, m) in role.member_of.iter().enumerate() {
            let field = format!("roles[{i}].member_of[{j}]");
            let declared = roles.iter().find(|r| &r.name == m);
            let predefined = PREDEFINED.contains(&m.as_str());
            if AS_SUPERUSER.contains(&m.as_str()) {
                cx.error(
                    root,
                    &field,
                    format!("`{m}` reaches the server's files or programs, as a superuser does"),
                    "pgha keeps superuser powers to postgres: grant narrower roles",
                );
            } else if m == &role.name {
                cx.error(root, &field, format!("`{m}` cannot be a member of itself"), "remove it");
            } else if !role.present {
                cx.error(
                    root,
                    &field,
                    format!("`{}` is to be dropped: it has no memberships", role.name),
                    "remove member_of from a role whose state is absent",
                );
            } else if declared.is_some_and(|r| !r.present) {
                cx.error(
                    root,
                    &field,
                    format!("the role `{m}` is to be dropped"),
                    "remove the membership",
                );
            } else if declared.is_none() && !predefined {
                cx.error(
                    root,
                    &field,
                    format!("`{m}` is not a role the design declares"),
                    "declare it under roles, or name a predefined role such as pg_read_all_data",
                );
            }
        }
    }
    if let Some(i) = (0..roles.len()).find(|&i| in_cycle(&roles, &roles[i].name)) {
        cx.error(
            root,
            &format!("roles[{i}].member_of"),
            format!("`{}` is a member of itself through its groups", roles[i].name),
            "PostgreSQL refuses circular memberships: remove one",
        );
    }
    roles
}

/// Whether following `member_of` from `start` leads back to it.
fn in_cycle(roles: &[Role], start: &str) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut next: Vec<&str> = vec![start];
    while let Some(name) = next.pop() {
        let Some(r) = roles.iter().find(|r| r.name == name) else {
            continue;
        };
        for g in &r.member_of {
            // Directly (`name == start`) is reported on its own.
            if g == start && name != start {
                return true;
            }
            if !seen.contains(&g.as_str()) {
                seen.push(g);
                next.push(g);
            }
        }
    }
    false
}

/// Seconds since the epoch of a date (midnight UTC) or an RFC 3339 time.
fn epoch(v: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let date = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

fn build_databases(cx: &mut Checker, root: &Node, raw: Vec<RawDatabase>, roles: &[Role]) -> Vec<Database> {
    let mut out: Vec<Database> = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("databases[{i}].{f}");
        let Some(name) = d.name else {
            cx.error(
                root,
                &format!("databases[{i}]"),
                "a database without a name",
                "add `name: app`",
            );
            continue;
        };
        if !identifier(&name) {
            cx.error(
                root,
                &at("name"),
                format!("`{name}` is not a database name pgha manages"),
                IDENT_HINT,
            );
            continue;
        }
        if SYSTEM_DATABASES.contains(&name.as_str()) || KEYWORDS.contains(&name.as_str()) {
            cx.error(
                root,
                &at("name"),
                format!("the database name `{name}` is reserved"),
                "every cluster has postgres, template0 and template1, and pg_hba.conf reads the keywords: choose another",
            );
            continue;
        }
        if out.iter().any(|o| o.name == name) {
            cx.error(
                root,
                &at("name"),
                format!("the database `{name}` is declared twice"),
                "declare each database once",
            );
            continue;
        }
        let owner = d.owner.unwrap_or_else(|| crate::design::objects::SUPERUSER.to_string());
        if owner != crate::design::objects::SUPERUSER && !roles.iter().any(|r| r.name == owner && r.present) {
            cx.error(
                root,
                &at("owner"),
                format!("the owner `{owner}` is not a role the design keeps"),
                "declare the role under roles (state present), or leave owner out (postgres)",
            );
        }
        if let Some(e) = d.encoding.as_deref().filter(|e| !word(e, "_")) {
            cx.error(
                root,
                &at("encoding"),
                format!("`{e}` is not an encoding name"),
                "use a name such as UTF8",
            );
        }
        if let Some(l) = d.locale.as_deref().filter(|l| !word(l, "_.@-")) {
            cx.error(
                root,
                &at("locale"),
                format!("`{l}` is not a locale name"),
                "use a name such as C.UTF-8 or en_US.UTF-8",
            );
        }
        let extensions = d.extensions.unwrap_or_default();
        for (j, e) in extensions.iter().enumerate() {
            let field = format!("databases[{i}].extensions[{j}]");
            if !word(e, "_-") || e.starts_with('-') {
                cx.error(
                    root,
                    &field,
                    format!("`{e}` is not an extension name"),
                    "use a name such as pgcrypto or pg_stat_statements",
                );
            } else if extensions[..j].contains(e) {
                cx.error(
                    root,
                    &field,
                    format!("the extension `{e}` is listed twice"),
                    "list each extension once",
                );
            }
        }
        out.push(Database {
            name,
            owner,
            encoding: d.encoding,
            locale: d.locale,
            extensions,
        });
    }
    out
}

fn build_access(cx: &mut Checker, root: &Node, raw: Vec<RawAccess>, roles: &[Role], dbs: &[Database]) -> Vec<Access> {
    let mut out: Vec<Access> = Vec::new();
    for (i, a) in raw.into_iter().enumerate() {
        let (Some(database), Some(role)) = (a.database, a.role) else {
            cx.error(
                root,
                &format!("access[{i}]"),
                "an access rule names a database and a role",
                "write `{database: app, role: app_rw}`; either may be `all`",
            );
            continue;
        };
        if database != "all" && database != "postgres" && !dbs.iter().any(|d| d.name == database) {
            cx.error(
                root,
                &format!("access[{i}].database"),
                format!("`{database}` is not a database the design declares"),
                "declare it under databases, or write `all` or `postgres`",
            );
        }
        if role != "all" && !roles.iter().any(|r| r.name == role && r.present) {
            cx.error(
                root,
                &format!("access[{i}].role"),
                format!("`{role}` is not a role the design keeps"),
                "declare it under roles (state present), or write `all`",
            );
        }
        let rule = Access { database, role };
        if !out.contains(&rule) {
            out.push(rule);
        }
    }
    out
}
