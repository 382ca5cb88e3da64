//! The design's databases, roles and extensions on the master: what is
//! there (one psql, read with the other facts), what differs, and the SQL
//! that makes it so. Passwords travel as SCRAM verifiers, never in clear;
//! the state carries only a digest of each stored verifier.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::design::objects::{
    ident, Database, Objects, PasswordSource, Role, POOLER_USER, RESERVED_ROLES, SUPERUSER, SYSTEM_DATABASES,
};
use crate::design::Design;
use crate::shell::{quote, sql_literal};

/// The roles, databases and available extensions, as one JSON line.
const STATE_SQL: &str = "SELECT json_build_object(
 'roles', (SELECT coalesce(json_agg(json_build_object(
   'name', a.rolname, 'login', a.rolcanlogin, 'inherit', a.rolinherit, 'createdb', a.rolcreatedb,
   'createrole', a.rolcreaterole, 'bypassrls', a.rolbypassrls, 'superuser', a.rolsuper,
   'replication', a.rolreplication, 'connection_limit', a.rolconnlimit,
   'valid_until', CASE WHEN a.rolvaliduntil IS NULL OR a.rolvaliduntil = 'infinity' THEN NULL
                  WHEN a.rolvaliduntil = '-infinity' THEN -9223372036854775808
                  ELSE extract(epoch FROM a.rolvaliduntil)::bigint END,
   'scram', CASE WHEN a.rolpassword LIKE 'SCRAM-SHA-256$%' THEN split_part(a.rolpassword, '$', 2) END,
   'password_sha256', encode(sha256(convert_to(a.rolpassword, 'UTF8')), 'hex'),
   'member_of', (SELECT coalesce(json_agg(json_build_object(
       'role', g.rolname, 'grantor', pg_get_userbyid(m.grantor), 'admin', m.admin_option,
       'inherit', to_jsonb(m) -> 'inherit_option', 'set', to_jsonb(m) -> 'set_option') ORDER BY g.rolname), '[]')
     FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid)
  ) ORDER BY a.rolname), '[]') FROM pg_authid a WHERE a.oid >= 16384),
 'databases', (SELECT coalesce(json_agg(json_build_object(
   'name', d.datname, 'owner', pg_get_userbyid(d.datdba), 'encoding', pg_encoding_to_char(d.encoding),
   'collate', d.datcollate, 'ctype', d.datctype) ORDER BY d.datname), '[]') FROM pg_database d),
 'available', (SELECT coalesce(json_agg(name ORDER BY name), '[]') FROM pg_available_extensions),
 'version', current_setting('server_version_num')::int)";

/// The extensions of one database, as a JSON array.
const EXTENSIONS_SQL: &str = "SELECT coalesce(json_agg(extname ORDER BY extname), '[]') FROM pg_extension";

/// What the master holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct State {
    /// `server_version_num`: from 160000 each membership has its own
    /// inherit option, and a role's `inherit` only sets new grants'.
    pub version: u32,
    pub roles: Vec<RoleState>,
    pub databases: Vec<DatabaseState>,
    /// Extensions the host's packages offer.
    pub available: Vec<String>,
    /// Each declared database's extensions; absent: the database is not
    /// there (or could not be read).
    #[serde(default)]
    pub extensions: BTreeMap<String, Vec<String>>,
    /// With the pooler: how many databases lack its current lookup
    /// function; `None`: not read.
    #[serde(default)]
    pub lookup_missing: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct RoleState {
    pub name: String,
    pub login: bool,
    pub inherit: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub bypassrls: bool,
    pub superuser: bool,
    pub replication: bool,
    pub connection_limit: i32,
    pub valid_until: Option<i64>,
    /// `iterations:salt` of a SCRAM verifier.
    pub scram: Option<String>,
    /// SHA-256 of the stored verifier, in hex; `None`: no password.
    pub password_sha256: Option<String>,
    pub member_of: Vec<Membership>,
}

/// One row of `pg_auth_members`: the member is in `role`, granted by `grantor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Membership {
    pub role: String,
    pub grantor: String,
    pub admin: bool,
    /// PostgreSQL 16 and later; `None` before.
    pub inherit: Option<bool>,
    pub set: Option<bool>,
}

impl Membership {
    /// A grant that only lets the member administer the role (PostgreSQL 16
    /// gives one to a CREATEROLE role over each role it creates): not a
    /// membership the design speaks of.
    fn admin_only(&self) -> bool {
        self.admin && self.inherit == Some(false) && self.set == Some(false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct DatabaseState {
    pub name: String,
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

/// Prints `objects <json>` and `objects_ext <db> <json>` on a master (a
/// replica prints nothing): for the facts script.
pub(crate) fn state_script(design: &Design) -> String {
    let port = design.platform.postgres_port;
    // `$( (`: `$((` would open an arithmetic expansion in sh.
    let psql = format!("(cd / && runuser -u postgres -- psql -p {port} -XAtq");
    let mut s = format!(
        "if [ \"$( {psql} -c 'SELECT pg_is_in_recovery()') 2>/dev/null)\" = f ]; then\n\
printf 'objects %s\\n' \"$( {psql} -c {q}) 2>/dev/null | tr -d '\\n')\"\n",
        q = quote(STATE_SQL)
    );
    for db in &design.objects.databases {
        s.push_str(&format!(
            "v=$( {psql} -d {d} -c {q}) 2>/dev/null | tr -d '\\n') && printf 'objects_ext %s %s\\n' {d} \"$v\"\n",
            d = quote(&db.name),
            q = quote(EXTENSIONS_SQL)
        ));
    }
    if design.pgbouncer.is_some() {
        s.push_str(&super::pgbouncer::lookup_state_script(port));
    }
    s.push_str("fi\n");
    s
}

/// Reads the lines [`state_script`] printed; `None` without an `objects` line.
pub(crate) fn parse_state(lines: &[(&str, &str)]) -> Option<State> {
    let mut state: State = lines
        .iter()
        .find(|(k, _)| *k == "objects")
        .and_then(|(_, json)| serde_json::from_str(json).ok())?;
    for (k, rest) in lines {
        if *k == "objects_lookup" {
            state.lookup_missing = rest.trim().parse().ok();
        }
        if *k == "objects_ext" {
            if let Some((db, json)) = rest.split_once(' ') {
                if let Ok(exts) = serde_json::from_str(json) {
                    state.extensions.insert(db.to_string(), exts);
                }
            }
        }
    }
    Some(state)
}

/// One change on the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    CreateRole(String),
    /// The role's attributes, as `CREATE ROLE`'s options, and what they change.
    AlterRole {
        role: String,
        options: Vec<String>,
        what: Vec<String>,
    },
    SetPassword(String),
    ClearPassword(String),
    /// `inherit`: the membership's own inherit option (PostgreSQL 16 and later).
    Grant {
        group: String,
        member: String,
        inherit: Option<bool>,
    },
    Revoke {
        group: String,
        member: String,
        grantor: String,
    },
    CreateDatabase(String),
    SetOwner {
        database: String,
        owner: String,
    },
    CreateExtension {
        database: String,
        extension: String,
    },
    DropRole(String),
    /// PgBouncer's lookup function, in every database that lacks it.
    PoolerLookup,
}

impl Change {
    pub(crate) fn describe(&self) -> String {
        match self {
            Change::CreateRole(r) => format!("create role {r}"),
            Change::AlterRole { role, what, .. } => format!("alter role {role} ({})", what.join(", ")),
            Change::SetPassword(r) => format!("set the password of {r}"),
            Change::ClearPassword(r) => format!("remove the password of {r}"),
            Change::Grant { group, member, inherit } => match inherit {
                None => format!("grant {group} to {member}"),
                Some(i) => format!("grant {group} to {member} (inherit {i})"),
            },
            Change::Revoke { group, member, grantor } if grantor == SUPERUSER => {
                format!("revoke {group} from {member}")
            }
            Change::Revoke { group, member, grantor } => format!("revoke {group} from {member} (granted by {grantor})"),
            Change::CreateDatabase(d) => format!("create database {d}"),
            Change::SetOwner { database, owner } => format!("make {owner} the owner of database {database}"),
            Change::CreateExtension { database, extension } => format!("create extension {extension} in {database}"),
            Change::DropRole(r) => format!("drop role {r}"),
            Change::PoolerLookup => "create PgBouncer's lookup function (pgha.user_lookup) in every database".into(),
        }
    }
}

/// What deploy changes, what it leaves and reports, and what it cannot do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Diff {
    pub changes: Vec<Change>,
    /// Differences the design does not fix by itself.
    pub drift: Vec<String>,
    /// Refusals: the design asks for what the master cannot give.
    pub refused: Vec<String>,
}

/// A name read from the master (made by hand, any characters) as it may
/// be shown on a terminal.
fn printable(name: &str) -> String {
    if name.chars().any(char::is_control) {
        format!("{name:?}")
    } else {
        name.to_string()
    }
}

/// The options that give a role the design's attributes.
fn role_options(r: &Role) -> Vec<String> {
    let flag = |on: bool, word: &str| if on { word.to_string() } else { format!("NO{word}") };
    let mut o = vec![
        flag(r.login, "LOGIN"),
        flag(r.inherit, "INHERIT"),
        flag(r.createdb, "CREATEDB"),
        flag(r.createrole, "CREATEROLE"),
        flag(r.bypassrls, "BYPASSRLS"),
        "NOSUPERUSER".into(),
        "NOREPLICATION".into(),
        format!("CONNECTION LIMIT {}", r.connection_limit),
    ];
    o.push(format!("VALID UNTIL {}", sql_literal(&valid_until_text(r.valid_until))));
    o
}

fn valid_until_text(t: Option<i64>) -> String {
    if t == Some(i64::MIN) {
        return "-infinity".into();
    }
    match t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok()) {
        None => "infinity".into(),
        Some(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "infinity".into()),
    }
}

/// Attributes of `have` that differ from the design's, named.
fn attribute_changes(want: &Role, have: &RoleState) -> Vec<String> {
    let mut what = Vec::new();
    let mut check = |name: &str, w: String, h: String| {
        if w != h {
            what.push(format!("{name} {h} -> {w}"));
        }
    };
    check("login", want.login.to_string(), have.login.to_string());
    check("inherit", want.inherit.to_string(), have.inherit.to_string());
    check("createdb", want.createdb.to_string(), have.createdb.to_string());
    check("createrole", want.createrole.to_string(), have.createrole.to_string());
    check("bypassrls", want.bypassrls.to_string(), have.bypassrls.to_string());
    check("superuser", "false".into(), have.superuser.to_string());
    check("replication", "false".into(), have.replication.to_string());
    check(
        "connection_limit",
        want.connection_limit.to_string(),
        have.connection_limit.to_string(),
    );
    check(
        "valid_until",
        valid_until_text(want.valid_until),
        valid_until_text(have.valid_until),
    );
    what
}

/// Grants and revokes that make `want`'s memberships the design's: each
/// group it names granted (from PostgreSQL 16 with the role's `inherit` as
/// the membership's own option), every other membership revoked, by the
/// role that granted it.
fn membership_changes(out: &mut Vec<Change>, want: &Role, have: Option<&RoleState>, version: u32) {
    let rows: Vec<&Membership> = have
        .map(|h| h.member_of.iter().filter(|m| !m.admin_only()).collect())
        .unwrap_or_default();
    let inherit = (version >= 160_000).then_some(want.inherit);
    for g in &want.member_of {
        let mine: Vec<&Membership> = rows.iter().copied().filter(|m| &m.role == g).collect();
        let right = |m: &&Membership| inherit.is_none() || m.inherit == inherit;
        // Another grantor's row with the wrong option would keep giving it.
        for m in mine.iter().filter(|m| !right(m) && m.grantor != SUPERUSER) {
            out.push(Change::Revoke {
                group: g.clone(),
                member: want.name.clone(),
                grantor: m.grantor.clone(),
            });
        }
        // The superuser's own grant made or set right, unless a right one stays.
        if !mine.iter().any(right) {
            out.push(Change::Grant {
                group: g.clone(),
                member: want.name.clone(),
                inherit,
            });
        }
    }
    for m in rows.iter().filter(|m| !want.member_of.contains(&m.role)) {
        out.push(Change::Revoke {
            group: m.role.clone(),
            member: want.name.clone(),
            grantor: m.grantor.clone(),
        });
    }
}

/// Whether the stored password is `password`'s: its verifier recomputed
/// with the stored salt and iterations, compared by digest.
fn password_matches(have: &RoleState, password: &str) -> bool {
    let (Some(params), Some(digest)) = (&have.scram, &have.password_sha256) else {
        return false;
    };
    let Some((iterations, salt)) = crate::scram::parameters(params) else {
        return false;
    };
    // A verifier with absurd iterations would stall the deploy: replace it.
    if iterations == 0 || iterations > 1_000_000 {
        return false;
    }
    crate::fsutil::sha256_hex(crate::scram::verifier(password, &salt, iterations).as_bytes()) == *digest
}

/// The changes that make the master hold what the design declares, in an
/// order PostgreSQL takes: every role made before any grant names it,
/// databases after their owners, drops last.
/// `passwords` holds the password of each role whose source has one.
pub(crate) fn diff(objects: &Objects, state: &State, passwords: &BTreeMap<String, String>) -> Diff {
    let mut d = Diff::default();
    let have_role = |n: &str| state.roles.iter().find(|r| r.name == n);
    let (mut creates, mut alters, mut grants, mut drops) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for want in &objects.roles {
        let have = have_role(&want.name);
        if !want.present {
            if have.is_some() {
                drops.push(Change::DropRole(want.name.clone()));
            }
            continue;
        }
        match have {
            None => creates.push(Change::CreateRole(want.name.clone())),
            Some(h) => {
                let what = attribute_changes(want, h);
                if !what.is_empty() {
                    alters.push(Change::AlterRole {
                        role: want.name.clone(),
                        options: role_options(want),
                        what,
                    });
                }
            }
        }
        match (&want.password, have) {
            (PasswordSource::None, Some(h)) if h.password_sha256.is_some() => {
                alters.push(Change::ClearPassword(want.name.clone()))
            }
            (PasswordSource::None, _) => {}
            (_, h) => {
                let matches = match (h, passwords.get(&want.name)) {
                    (Some(h), Some(p)) => password_matches(h, p),
                    _ => false,
                };
                if !matches {
                    alters.push(Change::SetPassword(want.name.clone()));
                }
            }
        }
        membership_changes(&mut grants, want, have, state.version);
    }
    d.changes.extend(creates);
    d.changes.extend(alters);
    d.changes.extend(grants);
    for r in &state.roles {
        if objects.role(&r.name).is_none() && !RESERVED_ROLES.contains(&r.name.as_str()) {
            d.drift.push(format!(
                "role {} is not in the design: kept (declare it, or with `state: absent` to drop it)",
                printable(&r.name)
            ));
        }
    }
    for want in &objects.databases {
        database_diff(&mut d, want, state);
    }
    for have in &state.databases {
        let declared = objects.databases.iter().any(|w| w.name == have.name);
        if !declared && !SYSTEM_DATABASES.contains(&have.name.as_str()) {
            d.drift
                .push(format!("database {} is not in the design: kept", have.name));
        }
    }
    // A database pgha creates comes from template0, without the function.
    let created = d.changes.iter().any(|c| matches!(c, Change::CreateDatabase(_)));
    if objects.role(POOLER_USER).is_some() && (state.lookup_missing != Some(0) || created) {
        d.changes.push(Change::PoolerLookup);
    }
    d.changes.extend(drops);
    d
}

fn database_diff(d: &mut Diff, want: &Database, state: &State) {
    let have = state.databases.iter().find(|h| h.name == want.name);
    match have {
        None => d.changes.push(Change::CreateDatabase(want.name.clone())),
        Some(h) => {
            if h.owner != want.owner {
                d.changes.push(Change::SetOwner {
                    database: want.name.clone(),
                    owner: want.owner.clone(),
                });
            }
            let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
            if let Some(e) = want.encoding.as_deref().filter(|e| norm(e) != norm(&h.encoding)) {
                d.drift.push(format!(
                    "database {} has encoding {}, the design says {e}: kept (set when a database is created)",
                    want.name, h.encoding
                ));
            }
            if let Some(l) = want
                .locale
                .as_deref()
                .filter(|l| norm(l) != norm(&h.collate) || norm(l) != norm(&h.ctype))
            {
                d.drift.push(format!(
                    "database {} has locale {}/{}, the design says {l}: kept (set when a database is created)",
                    want.name, h.collate, h.ctype
                ));
            }
        }
    }
    let had = state.extensions.get(&want.name);
    for e in &want.extensions {
        if !state.available.contains(e) {
            d.refused.push(format!(
                "extension {e} (database {}) is not installed on the hosts: install its package first",
                want.name
            ));
        } else if !had.is_some_and(|h| h.contains(e)) {
            d.changes.push(Change::CreateExtension {
                database: want.name.clone(),
                extension: e.clone(),
            });
        }
    }
    for e in had.into_iter().flatten() {
        if e != "plpgsql" && !want.extensions.contains(e) {
            d.drift.push(format!(
                "extension {e} in database {} is not in the design: kept",
                want.name
            ));
        }
    }
}

/// The script that makes `changes`, for psql on the master's socket. It
/// holds password verifiers: it travels in `$PGHA_INPUT`, and statements
/// are kept out of the server log.
pub(crate) fn apply_sql(
    objects: &Objects,
    changes: &[Change],
    passwords: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    // Nothing that logs or keeps statements sees a verifier.
    const QUIET: &str = "SET log_min_error_statement = panic;\nSET log_statement = 'none';\n\
SET log_min_duration_statement = -1;\nSET log_min_duration_sample = -1;\n\
SET log_transaction_sample_rate = 0;\nSET pg_stat_statements.track_utility = off;\n";
    let mut out = String::from(QUIET);
    let mut connected: Option<&str> = None;
    // The lookup function goes to every database apart (see `pgbouncer`).
    for c in changes.iter().filter(|c| **c != Change::PoolerLookup) {
        // Extensions are made in their database; everything else from postgres.
        let want_db = match c {
            Change::CreateExtension { database, .. } => database.as_str(),
            _ => "postgres",
        };
        if connected.unwrap_or("postgres") != want_db {
            out.push_str(&format!("\\connect {}\n{QUIET}", quote(want_db)));
            connected = Some(want_db);
        }
        let role = |n: &str| objects.role(n).expect("a change names a declared role");
        out.push_str(&match c {
            Change::CreateRole(r) => format!("CREATE ROLE {} WITH {};\n", ident(r), role_options(role(r)).join(" ")),
            Change::AlterRole { role, options, .. } => {
                format!("ALTER ROLE {} WITH {};\n", ident(role), options.join(" "))
            }
            Change::SetPassword(r) => {
                let p = passwords
                    .get(r)
                    .ok_or_else(|| anyhow::anyhow!("no password for role {r}"))?;
                format!(
                    "ALTER ROLE {} PASSWORD {};\n",
                    ident(r),
                    sql_literal(&crate::scram::new_verifier(p)?)
                )
            }
            Change::ClearPassword(r) => format!("ALTER ROLE {} PASSWORD NULL;\n", ident(r)),
            Change::Grant { group, member, inherit } => format!(
                "GRANT {} TO {}{};\n",
                ident(group),
                ident(member),
                match inherit {
                    None => String::new(),
                    Some(i) => format!(" WITH INHERIT {}", if *i { "TRUE" } else { "FALSE" }),
                }
            ),
            Change::Revoke { group, member, grantor } => format!(
                "REVOKE {} FROM {} GRANTED BY {};\n",
                ident(group),
                ident(member),
                ident(grantor)
            ),
            Change::CreateDatabase(name) => {
                let db = objects
                    .databases
                    .iter()
                    .find(|d| &d.name == name)
                    .expect("a change names a declared database");
                let mut s = format!(
                    "CREATE DATABASE {} OWNER {} TEMPLATE template0",
                    ident(name),
                    ident(&db.owner)
                );
                if let Some(e) = &db.encoding {
                    s.push_str(&format!(" ENCODING {}", sql_literal(e)));
                }
                if let Some(l) = &db.locale {
                    s.push_str(&format!(" LOCALE {}", sql_literal(l)));
                }
                s + ";\n"
            }
            Change::SetOwner { database, owner } => {
                format!("ALTER DATABASE {} OWNER TO {};\n", ident(database), ident(owner))
            }
            Change::CreateExtension { extension, .. } => {
                format!("CREATE EXTENSION IF NOT EXISTS {} CASCADE;\n", ident(extension))
            }
            Change::DropRole(r) => format!("DROP ROLE IF EXISTS {};\n", ident(r)),
            Change::PoolerLookup => unreachable!("filtered out above"),
        });
    }
    Ok(out)
}

/// Runs the script in `$PGHA_INPUT` (see [`apply_sql`]), stopping at the first error.
pub(crate) fn apply_script(port: u16) -> String {
    format!("cd / && runuser -u postgres -- psql -p {port} -XAtq -v ON_ERROR_STOP=1 < \"$PGHA_INPUT\"")
}

/// The password of each declared role whose source has one: from the
/// secrets file or the environment. A variable that is not set, or a
/// password PostgreSQL's SCRAM would read differently, is refused.
pub(crate) fn passwords(
    objects: &Objects,
    secrets: &crate::secrets::Secrets,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for r in objects.roles.iter().filter(|r| r.present) {
        let (value, from) = match &r.password {
            PasswordSource::None => continue,
            PasswordSource::Secrets => (secrets.roles.get(&r.name).cloned(), "the secrets file".to_string()),
            PasswordSource::Env(var) => (
                std::env::var(var).ok().filter(|v| !v.is_empty()),
                format!("the environment variable {var}"),
            ),
        };
        let Some(value) = value else {
            return Err(format!(
                "the password of role {} comes from {from}, which does not hold it",
                r.name
            ));
        };
        if !value.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(format!(
                "the password of role {} (from {from}) must be printable ASCII characters",
                r.name
            ));
        }
        out.insert(r.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
