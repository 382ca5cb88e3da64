//! PgBouncer on every database host: clients log in with their own role
//! (SCRAM, checked against the master's verifier through a lookup
//! function) and are pooled onto server connections to the master, made
//! through the host's own HAProxy read-write port: they never reach a
//! demoted master, and they keep their client connection across a
//! switchover or a flip (a transaction under way then fails).

use super::{Component, FileSpec};
use crate::design::objects::POOLER_USER;

pub(crate) const PACKAGE: &str = "pgbouncer";
pub(crate) const SERVICE: &str = "pgbouncer";

/// Debian's unit reads this file; reloaded by SIGHUP.
pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Pooler,
    template: "pgbouncer.ini.j2",
    path: "/etc/pgbouncer/pgbouncer.ini",
    owner: "root",
    group: "postgres",
    mode: 0o640,
    service: SERVICE,
    check: None,
};

/// The `auth_user`'s password (PgBouncer logs in to the server with it, so
/// in clear: a SCRAM secret would do for clients only). Nobody else's.
pub(crate) const USERLIST: FileSpec = FileSpec {
    component: Component::Pooler,
    template: "pgbouncer-userlist.txt.j2",
    path: "/etc/pgbouncer/userlist.txt",
    owner: "root",
    group: "postgres",
    mode: 0o640,
    service: SERVICE,
    check: None,
};

pub(crate) const FILES: [FileSpec; 2] = [USERLIST, CONFIG];

/// The lookup function's comment: its version, so a changed body is
/// replaced everywhere.
pub(crate) const LOOKUP_MARK: &str = "pgha pgbouncer lookup 1";

/// The `auth_query` PgBouncer runs as [`POOLER_USER`].
pub(crate) const AUTH_QUERY: &str = "SELECT uname, phash FROM pgha.user_lookup($1)";

/// Creates (or replaces) the lookup function in one database. It runs as
/// its owner (the superuser) and gives a login role's verifier, never a
/// superuser's, a replication role's, pgha's own or an expired one's. The
/// search path is fixed (CVE-2025-2291 was a lookup that honoured
/// `VALID UNTIL` nowhere; CVE-2025-12819 one with a path a user could set).
pub(crate) fn lookup_sql() -> String {
    format!(
        "SET log_min_error_statement = panic;
CREATE SCHEMA IF NOT EXISTS pgha;
ALTER SCHEMA pgha OWNER TO postgres;
REVOKE ALL ON SCHEMA pgha FROM PUBLIC;
GRANT USAGE ON SCHEMA pgha TO {user};
CREATE OR REPLACE FUNCTION pgha.user_lookup(i_username text, OUT uname text, OUT phash text)
RETURNS record LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
  SELECT a.rolname::text, a.rolpassword::text FROM pg_catalog.pg_authid a
  WHERE a.rolname = i_username AND a.rolcanlogin AND NOT a.rolsuper AND NOT a.rolreplication
    AND a.rolname NOT IN ({reserved})
    AND (a.rolvaliduntil IS NULL OR a.rolvaliduntil > pg_catalog.now())
$f$;
ALTER FUNCTION pgha.user_lookup(text) OWNER TO postgres;
REVOKE ALL ON FUNCTION pgha.user_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgha.user_lookup(text) TO {user};
COMMENT ON FUNCTION pgha.user_lookup(text) IS '{LOOKUP_MARK}';
",
        user = POOLER_USER,
        reserved = crate::design::objects::RESERVED_ROLES
            .iter()
            .map(|r| format!("'{r}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Runs `each` (a shell line that may read `$db`) for every database that
/// takes connections, as postgres on the host's socket; stops at a failure.
/// A name goes to psql in `PGDATABASE`, which libpq never reads as a
/// connection string.
fn each_database(port: u16, each: &str) -> String {
    format!(
        "dbs=$(cd / && runuser -u postgres -- psql -p {port} -XAtc 'SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1') || exit 1
while IFS= read -r db; do
[ -n \"$db\" ] || continue
{each}
done <<PGHA_DBS
$dbs
PGHA_DBS
"
    )
}

/// Prints `objects_lookup <n>`: how many databases lack the current lookup
/// function (facts, on a master).
pub(crate) fn lookup_state_script(port: u16) -> String {
    // Its version, and no owner but the superuser for it and its schema
    // (someone else's could change what PgBouncer is told).
    let query = format!(
        "SELECT obj_description(p.oid, 'pg_proc') = '{LOOKUP_MARK}' AND pg_get_userbyid(p.proowner) = 'postgres' \
         AND pg_get_userbyid(n.nspowner) = 'postgres' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.oid = to_regprocedure('pgha.user_lookup(text)')"
    );
    format!(
        "( missing=0\n{}echo \"objects_lookup $missing\" ) 2>/dev/null\n",
        each_database(
            port,
            &format!(
                "[ \"$(cd / && PGDATABASE=\"$db\" runuser -u postgres -- psql -p {port} -XAtc {})\" = t ] || missing=$((missing + 1))",
                crate::shell::quote(&query)
            )
        )
    )
}

/// Makes the lookup function in every database (template1 too, so new
/// databases have it), from [`lookup_sql`] in `$PGHA_INPUT`.
pub(crate) fn lookup_apply_script(port: u16) -> String {
    each_database(
        port,
        &format!(
            "(cd / && PGDATABASE=\"$db\" runuser -u postgres -- psql -p {port} -XAtq -v ON_ERROR_STOP=1 < \"$PGHA_INPUT\") || exit 1"
        ),
    )
}

/// Prints `pgbouncer_listening` when PgBouncer runs and its port listens on
/// every address, not only on localhost as Debian's sample config has it
/// (`ss -p` names no process for PgBouncer's sockets: they are checked apart).
pub(crate) fn listening_script(port: u16) -> String {
    format!(
        r"systemctl is-active --quiet {SERVICE} && ss -Hltn 'sport = :{port}' 2>/dev/null | grep -qE '(0\.0\.0\.0|\*|\[::\]):{port} ' && echo pgbouncer_listening"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_never_gives_a_superuser_or_pghas_own_roles() {
        let sql = lookup_sql();
        assert!(sql.contains("NOT a.rolsuper AND NOT a.rolreplication"), "{sql}");
        assert!(
            sql.contains("a.rolname NOT IN ('postgres', 'replicator', 'pgha_monitor', 'pgha_pgbouncer')"),
            "{sql}"
        );
        assert!(
            sql.contains("SECURITY DEFINER SET search_path = pg_catalog, pg_temp"),
            "{sql}"
        );
        assert!(sql.contains("rolvaliduntil > pg_catalog.now()"), "{sql}");
        assert!(sql.contains("REVOKE ALL ON FUNCTION pgha.user_lookup(text) FROM PUBLIC;"));
    }

    #[test]
    fn listening_means_on_every_address() {
        let s = listening_script(6432);
        crate::shell::assert_parses_cleanly(&s);
        assert!(s.contains(r"grep -qE '(0\.0\.0\.0|\*|\[::\]):6432 '"), "{s}");
    }

    #[test]
    fn the_scripts_visit_every_database_by_environment() {
        for s in [lookup_state_script(5432), lookup_apply_script(5432)] {
            crate::shell::assert_parses_cleanly(&s);
            assert!(s.contains("PGDATABASE=\"$db\" runuser"), "{s}");
        }
        assert!(lookup_state_script(5432).ends_with("echo \"objects_lookup $missing\" ) 2>/dev/null\n"));
    }
}
