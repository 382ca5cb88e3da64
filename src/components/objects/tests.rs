use super::*;
use crate::design::objects::Access;

fn role(name: &str) -> Role {
    Role::login(name)
}

fn objects() -> Objects {
    let mut owner = role("app_owner");
    owner.login = false;
    owner.password = PasswordSource::None;
    let mut rw = role("app_rw");
    rw.member_of = vec!["app_owner".into()];
    Objects {
        roles: vec![owner, rw],
        databases: vec![Database {
            name: "app".into(),
            owner: "app_owner".into(),
            encoding: Some("UTF8".into()),
            locale: Some("C.UTF-8".into()),
            extensions: vec!["pgcrypto".into()],
        }],
        access: Some(vec![Access {
            database: "app".into(),
            role: "app_rw".into(),
        }]),
    }
}

fn app_passwords() -> BTreeMap<String, String> {
    BTreeMap::from([("app_rw".to_string(), "s3cret pw".to_string())])
}

fn stored(password: &str) -> (Option<String>, Option<String>) {
    let v = crate::scram::new_verifier(password).unwrap();
    let params = v.split('$').nth(1).unwrap().to_string();
    (Some(params), Some(crate::fsutil::sha256_hex(v.as_bytes())))
}

fn member(role: &str, grantor: &str, inherit: Option<bool>) -> Membership {
    Membership {
        role: role.into(),
        grantor: grantor.into(),
        admin: false,
        inherit,
        set: inherit.map(|_| true),
    }
}

/// The master as a deploy of [`objects`] leaves it (PostgreSQL 17).
fn converged() -> State {
    let state_of = |r: &Role, password: Option<&str>| {
        let (scram, password_sha256) = password.map(stored).unwrap_or((None, None));
        RoleState {
            name: r.name.clone(),
            login: r.login,
            inherit: r.inherit,
            connection_limit: -1,
            member_of: r.member_of.iter().map(|g| member(g, "postgres", Some(true))).collect(),
            scram,
            password_sha256,
            ..RoleState::default()
        }
    };
    let o = objects();
    State {
        version: 170_004,
        lookup_missing: None,
        roles: vec![
            state_of(&o.roles[0], None),
            state_of(&o.roles[1], Some("s3cret pw")),
            RoleState {
                name: "pgha_monitor".into(),
                login: true,
                ..RoleState::default()
            },
        ],
        databases: ["postgres", "template0", "template1"]
            .iter()
            .map(|n| DatabaseState {
                name: n.to_string(),
                owner: "postgres".into(),
                encoding: "UTF8".into(),
                collate: "C.UTF-8".into(),
                ctype: "C.UTF-8".into(),
            })
            .chain([DatabaseState {
                name: "app".into(),
                owner: "app_owner".into(),
                encoding: "UTF8".into(),
                collate: "C.UTF-8".into(),
                ctype: "C.UTF-8".into(),
            }])
            .collect(),
        available: vec!["pgcrypto".into(), "plpgsql".into()],
        extensions: BTreeMap::from([("app".into(), vec!["pgcrypto".into(), "plpgsql".into()])]),
    }
}

#[test]
fn an_empty_master_gets_everything_in_order() {
    let state = State {
        available: vec!["pgcrypto".into()],
        ..State::default()
    };
    let d = diff(&objects(), &state, &app_passwords());
    let described: Vec<String> = d.changes.iter().map(Change::describe).collect();
    assert_eq!(
        described,
        [
            "create role app_owner",
            "create role app_rw",
            "set the password of app_rw",
            "grant app_owner to app_rw",
            "create database app",
            "create extension pgcrypto in app",
        ]
    );
    assert!(d.drift.is_empty() && d.refused.is_empty(), "{d:?}");
    let sql = apply_sql(&objects(), &d.changes, &app_passwords()).unwrap();
    assert!(
        sql.starts_with("SET log_min_error_statement = panic;\nSET log_statement = 'none';\n"),
        "{sql}"
    );
    assert!(sql.contains("CREATE ROLE \"app_owner\" WITH NOLOGIN INHERIT NOCREATEDB NOCREATEROLE NOBYPASSRLS NOSUPERUSER NOREPLICATION CONNECTION LIMIT -1 VALID UNTIL E'infinity';"), "{sql}");
    assert!(
        sql.contains("ALTER ROLE \"app_rw\" PASSWORD E'SCRAM-SHA-256$4096:"),
        "{sql}"
    );
    assert!(!sql.contains("s3cret"), "never the password itself: {sql}");
    assert!(sql.contains(
        "CREATE DATABASE \"app\" OWNER \"app_owner\" TEMPLATE template0 ENCODING E'UTF8' LOCALE E'C.UTF-8';"
    ));
    // The extension is made in its database, quietly there too.
    let tail = sql
        .split("\\connect app\n")
        .nth(1)
        .expect("the extension is made in its database");
    assert!(
        tail.starts_with("SET log_min_error_statement = panic;\nSET log_statement = 'none';\n"),
        "quiet there too: {tail}"
    );
    assert!(
        tail.ends_with(
            "SET pg_stat_statements.track_utility = off;\nCREATE EXTENSION IF NOT EXISTS \"pgcrypto\" CASCADE;\n"
        ),
        "{tail}"
    );
}

#[test]
fn a_converged_master_needs_nothing() {
    let d = diff(&objects(), &converged(), &app_passwords());
    assert_eq!(d, Diff::default());
}

#[test]
fn changed_attributes_and_passwords_are_altered() {
    let mut o = objects();
    o.roles[1].connection_limit = 20;
    o.roles[1].createdb = true;
    let mut pw = app_passwords();
    pw.insert("app_rw".into(), "another".into());
    let d = diff(&o, &converged(), &pw);
    assert_eq!(
        d.changes.iter().map(Change::describe).collect::<Vec<_>>(),
        [
            "alter role app_rw (createdb false -> true, connection_limit -1 -> 20)",
            "set the password of app_rw"
        ]
    );
    let sql = apply_sql(&o, &d.changes, &pw).unwrap();
    assert!(sql.contains("ALTER ROLE \"app_rw\" WITH LOGIN INHERIT CREATEDB NOCREATEROLE NOBYPASSRLS NOSUPERUSER NOREPLICATION CONNECTION LIMIT 20 VALID UNTIL E'infinity';"), "{sql}");
}

#[test]
fn a_superuser_made_by_hand_is_brought_back() {
    let mut state = converged();
    state.roles[1].superuser = true;
    let d = diff(&objects(), &state, &app_passwords());
    assert_eq!(d.changes.len(), 1, "{d:?}");
    assert_eq!(d.changes[0].describe(), "alter role app_rw (superuser true -> false)");
}

#[test]
fn unknown_roles_databases_and_extensions_are_reported_not_dropped() {
    let mut state = converged();
    state.roles.push(RoleState {
        name: "by_hand".into(),
        ..RoleState::default()
    });
    state.databases.push(DatabaseState {
        name: "scratch".into(),
        ..DatabaseState::default()
    });
    state.extensions.get_mut("app").unwrap().push("hstore".into());
    state.databases[3].encoding = "LATIN1".into();
    let d = diff(&objects(), &state, &app_passwords());
    assert!(d.changes.is_empty(), "{d:?}");
    assert_eq!(d.drift.len(), 4, "{d:?}");
    assert!(d.drift[0].starts_with("role by_hand is not in the design: kept"));
    assert!(d
        .drift
        .iter()
        .any(|x| x.starts_with("database app has encoding LATIN1")));
    assert!(d
        .drift
        .iter()
        .any(|x| x == "database scratch is not in the design: kept"));
    assert!(d
        .drift
        .iter()
        .any(|x| x == "extension hstore in database app is not in the design: kept"));
}

#[test]
fn an_absent_role_is_dropped_last_and_memberships_follow_the_design() {
    let mut o = objects();
    o.roles.push(Role {
        present: false,
        ..role("old")
    });
    o.roles[1].member_of = vec!["pg_read_all_data".into()];
    let mut state = converged();
    state.roles.push(RoleState {
        name: "old".into(),
        ..RoleState::default()
    });
    let d = diff(&o, &state, &app_passwords());
    assert_eq!(
        d.changes.iter().map(Change::describe).collect::<Vec<_>>(),
        [
            "grant pg_read_all_data to app_rw (inherit true)",
            "revoke app_owner from app_rw",
            "drop role old"
        ]
    );
}

#[test]
fn a_missing_extension_package_is_refused_and_a_password_cleared() {
    let mut o = objects();
    o.databases[0].extensions.push("postgis".into());
    o.roles[1].password = PasswordSource::None;
    let d = diff(&o, &converged(), &BTreeMap::new());
    assert_eq!(d.refused.len(), 1);
    assert!(d.refused[0].starts_with("extension postgis (database app) is not installed"));
    assert_eq!(d.changes, [Change::ClearPassword("app_rw".into())]);
}

#[test]
fn the_state_is_read_from_the_facts_lines() {
    let json = r#"{"roles":[{"name":"app_rw","login":true,"inherit":true,"createdb":false,"createrole":false,"bypassrls":false,"superuser":false,"replication":false,"connection_limit":-1,"valid_until":null,"scram":"4096:AQID","password_sha256":"ab","member_of":[{"role":"app_owner","grantor":"postgres","admin":false,"inherit":null,"set":null}]}],"databases":[{"name":"app","owner":"app_owner","encoding":"UTF8","collate":"C.UTF-8","ctype":"C.UTF-8"}],"available":["pgcrypto"],"version":170004}"#;
    let state = parse_state(&[("objects", json), ("objects_ext", r#"app ["plpgsql"]"#)]).unwrap();
    assert_eq!(state.roles[0].member_of[0].role, "app_owner");
    assert_eq!(state.extensions["app"], ["plpgsql"]);
    assert!(
        parse_state(&[("objects", "")]).is_none(),
        "a psql that failed is no state"
    );
}

#[test]
fn the_state_script_reads_only_a_master() {
    let design = crate::testkit::design_with("roles:\n  - {name: app_rw}\ndatabases:\n  - {name: app}\n");
    let script = state_script(&design);
    crate::shell::assert_parses_cleanly(&script);
    assert!(script.starts_with("if [ \"$( (cd / && runuser -u postgres -- psql -p 5432 -XAtq -c 'SELECT pg_is_in_recovery()') 2>/dev/null)\" = f ]"), "{script}");
    assert!(script.contains("printf 'objects_ext %s %s\\n' app \"$v\""), "{script}");
}

#[test]
fn passwords_come_from_their_source_and_have_a_shape() {
    let mut secrets = crate::secrets::Secrets::redacted();
    let o = objects();
    let e = passwords(&o, &secrets).unwrap_err();
    assert!(e.contains("role app_rw comes from the secrets file"), "{e}");
    secrets.roles.insert("app_rw".into(), "tab\there".into());
    assert!(passwords(&o, &secrets).unwrap_err().contains("printable ASCII"));
    secrets.roles.insert("app_rw".into(), "fine pw".into());
    assert_eq!(passwords(&o, &secrets).unwrap()["app_rw"], "fine pw");
}

#[test]
fn a_group_declared_after_its_member_is_made_first() {
    let mut o = objects();
    o.roles.reverse();
    let d = diff(&o, &State::default(), &app_passwords());
    let described: Vec<String> = d.changes.iter().map(Change::describe).collect();
    assert_eq!(
        &described[..4],
        [
            "create role app_rw",
            "create role app_owner",
            "set the password of app_rw",
            "grant app_owner to app_rw"
        ]
    );
}

#[test]
fn memberships_from_postgres_16_keep_their_own_inherit_option() {
    let mut o = objects();
    o.roles[1].inherit = false;
    let mut state = converged();
    state.roles[1].inherit = false;
    // Granted with inherit by hand, by another role; and an admin-only
    // grant PostgreSQL made when a CREATEROLE role made this one.
    state.roles[1].member_of = vec![
        member("app_owner", "admin_bot", Some(true)),
        Membership {
            admin: true,
            set: Some(false),
            ..member("ops", "ops", Some(false))
        },
    ];
    let d = diff(&o, &state, &app_passwords());
    assert_eq!(
        d.changes.iter().map(Change::describe).collect::<Vec<_>>(),
        [
            "revoke app_owner from app_rw (granted by admin_bot)",
            "grant app_owner to app_rw (inherit false)"
        ]
    );
    let sql = apply_sql(&o, &d.changes, &app_passwords()).unwrap();
    assert!(sql.contains("REVOKE \"app_owner\" FROM \"app_rw\" GRANTED BY \"admin_bot\";\nGRANT \"app_owner\" TO \"app_rw\" WITH INHERIT FALSE;"), "{sql}");
    // Before 16 a membership has no option of its own.
    state.version = 150_008;
    state.roles[1].member_of = vec![member("app_owner", "postgres", None)];
    assert!(diff(&o, &state, &app_passwords()).changes.is_empty());
}

#[test]
fn an_expiry_in_the_past_forever_is_set_back() {
    let mut state = converged();
    state.roles[1].valid_until = Some(i64::MIN);
    let d = diff(&objects(), &state, &app_passwords());
    assert_eq!(
        d.changes[0].describe(),
        "alter role app_rw (valid_until -infinity -> infinity)"
    );
}

#[test]
fn names_made_by_hand_are_shown_escaped() {
    let mut state = converged();
    state.roles.push(RoleState {
        name: "evil\u{1b}[2J".into(),
        ..RoleState::default()
    });
    let d = diff(&objects(), &state, &app_passwords());
    assert!(
        d.drift[0].starts_with("role \"evil\\u{1b}[2J\" is not in the design"),
        "{:?}",
        d.drift
    );
}

#[test]
fn a_database_pgha_creates_gets_the_poolers_lookup() {
    let mut o = objects();
    o.roles.push(crate::design::objects::pooler_role());
    let mut pw = app_passwords();
    pw.insert("pgha_pgbouncer".into(), "pooler pw".into());
    let mut state = converged();
    state.lookup_missing = Some(0);
    state.roles.push(RoleState {
        name: "pgha_pgbouncer".into(),
        login: true,
        inherit: true,
        connection_limit: -1,
        ..RoleState::default()
    });
    let d = diff(&o, &state, &pw);
    assert_eq!(
        d.changes,
        [Change::SetPassword("pgha_pgbouncer".into())],
        "nothing else: {d:?}"
    );
    // The database made from template0 lacks the function every other has.
    state.databases.retain(|db| db.name != "app");
    let d = diff(&o, &state, &pw);
    assert!(d.changes.ends_with(&[Change::PoolerLookup]), "{d:?}");
    // And the pooler's role logs in from the database hosts only.
    assert_eq!(o.hba_host_rules().len(), 1);
    assert!(o.hba_rules().iter().all(|a| a.role != "pgha_pgbouncer"));
}
