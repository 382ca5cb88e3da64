//! The Debian packages each kind of host needs.

/// What a database host runs, for a PostgreSQL major version.
pub fn db_host(postgres_version: u32) -> Vec<String> {
    let mut pkgs = vec![format!("postgresql-{postgres_version}")];
    pkgs.extend(
        [
            "patroni",
            "python3-etcd",
            "python3-psycopg2",
            "etcd-server",
            "etcd-client",
            "haproxy",
        ]
        .map(String::from),
    );
    pkgs
}

pub fn glb_host() -> Vec<String> {
    vec!["haproxy".to_string()]
}
