//! The Debian packages each kind of host needs, and how to install them.

/// What a database host runs besides PostgreSQL.
pub(crate) const STACK: [&str; 6] = [
    "patroni",
    "python3-etcd",
    "python3-psycopg2",
    "etcd-server",
    "etcd-client",
    "haproxy",
];

/// What a database host runs, for a PostgreSQL major version.
pub(crate) fn db_host(postgres_version: u32) -> Vec<String> {
    let mut pkgs = vec![format!("postgresql-{postgres_version}")];
    pkgs.extend(STACK.map(String::from));
    pkgs
}

/// pgBackRest, on database hosts when the design has backups (installed
/// otherwise, Debian's unit would start at boot with nothing to serve).
pub(crate) const BACKUP: &str = "pgbackrest";

/// What a database host of `design` runs.
pub(crate) fn db_host_of(design: &crate::design::Design) -> Vec<String> {
    let mut pkgs = db_host(design.platform.postgres_version);
    if design.backup.is_some() {
        pkgs.push(BACKUP.to_string());
    }
    if design.exporter.is_some() {
        pkgs.push(super::exporter::PACKAGE.to_string());
        pkgs.push(super::exporter::NODE_PACKAGE.to_string());
    }
    if design.pgbouncer.is_some() {
        pkgs.push(super::pgbouncer::PACKAGE.to_string());
    }
    if super::vip::any(design) {
        pkgs.push(super::vip::PACKAGE.to_string());
    }
    pkgs
}

pub(crate) fn glb_host() -> Vec<String> {
    vec!["haproxy".to_string()]
}

/// Installs packages without letting them start services or create the
/// distribution's default PostgreSQL cluster: pgha configures and starts
/// each service itself, and Patroni owns the only cluster.
pub(crate) fn install_script(packages: &[String]) -> String {
    format!(
        "set -e\n\
export DEBIAN_FRONTEND=noninteractive\n\
mkdir -p /etc/postgresql-common/createcluster.d\n\
echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/pgha.conf\n\
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d\n\
trap 'rm -f /usr/sbin/policy-rc.d' EXIT\n\
apt-get update -q >/dev/null\n\
apt-get install -y -q --no-install-recommends {} >/dev/null\n",
        packages.join(" ")
    )
}
