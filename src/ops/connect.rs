//! What applications and DBAs connect to: each endpoint's port and the libpq
//! connection string that reaches it (`pgha dsn`, `pgha psql`).
//!
//! TLS runs end to end from the client to PostgreSQL (HAProxy and the GLB
//! pass TCP through), and every host's certificate names every host's
//! address and the GLB's name and addresses: `verify-full` holds whichever
//! HAProxy the client reaches and whichever host it hands the client to.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::design::{Design, GlbKind};
use crate::error;
use crate::fsutil;
use crate::pki;

/// The role `pgha psql` logs in as unless told: Patroni's superuser.
pub(crate) const SUPERUSER: &str = crate::secrets::SUPERUSER;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// Read-write: the master, wherever it is.
    Rw,
    /// Read-only: the replicas of the cloud that has the master (the master
    /// when none is in the pool, unless `read_only_fallback` is off).
    Ro,
    /// Read-only from one cloud's own replicas (`local_reads`).
    Local,
    /// Read-write through PgBouncer (`components.pgbouncer`).
    Pooled,
}

/// Where a client connects: the hosts (tried in order) and their port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Target {
    pub endpoint: Endpoint,
    /// `None`: the GLB.
    pub cloud: Option<String>,
    pub hosts: Vec<String>,
    pub port: u16,
}

/// The endpoint's hosts and port, through the GLB or one cloud's HAProxy
/// instances; invalid input (exit 2) when the design offers no such thing.
pub(crate) fn target(design: &Design, endpoint: Endpoint, cloud: Option<&str>) -> Result<Target, error::Usage> {
    let hp = &design.haproxy;
    let pooler = || {
        design.pgbouncer.as_ref().map(|p| p.port).ok_or_else(|| {
            error::Usage("the design runs no PgBouncer: set components.pgbouncer.enabled: true and deploy".into())
        })
    };
    let (hosts, port) = match cloud {
        None => {
            let glb = design.glb.as_ref().ok_or_else(|| {
                error::Usage("the design has no GLB: name a cloud with --cloud to use its HAProxy instances".into())
            })?;
            if matches!(glb.kind, GlbKind::External { .. }) && endpoint != Endpoint::Rw {
                return Err(error::Usage(
                    "an external GLB forwards the read-write port only: name a cloud with --cloud for the others"
                        .into(),
                ));
            }
            let port = match endpoint {
                Endpoint::Rw => glb.port,
                Endpoint::Ro => glb.read_only_port,
                Endpoint::Pooled => {
                    pooler()?;
                    glb.pooled_port
                }
                Endpoint::Local => {
                    return Err(error::Usage(
                        "the local endpoint is one cloud's own replicas: name the cloud with --cloud".into(),
                    ))
                }
            };
            (vec![glb.fqdn.clone()], port)
        }
        Some(name) => {
            let c = design.clouds.iter().find(|c| c.name == name).ok_or_else(|| {
                let names: Vec<&str> = design.clouds.iter().map(|c| c.name.as_str()).collect();
                error::Usage(format!(
                    "no cloud `{name}` in the design (clouds: {})",
                    names.join(", ")
                ))
            })?;
            let port = match endpoint {
                Endpoint::Rw => hp.port,
                Endpoint::Ro => hp.read_only_port,
                Endpoint::Pooled => pooler()?,
                Endpoint::Local if hp.local_reads => hp.local_read_port,
                Endpoint::Local => {
                    return Err(error::Usage(
                        "the design does not open local reads: set components.haproxy.local_reads: true and deploy"
                            .into(),
                    ))
                }
            };
            // The cloud's virtual IP first (on its leader, whose HAProxy and
            // PgBouncer serve every endpoint), then each host in turn.
            let hosts = c
                .vip
                .iter()
                .map(|v| v.address.clone())
                .chain(c.hosts.iter().map(|h| h.address.clone()))
                .collect();
            (hosts, port)
        }
    };
    Ok(Target {
        endpoint,
        cloud: cloud.map(str::to_string),
        hosts,
        port,
    })
}

/// A libpq connection string: every host's HAProxy in turn, TLS verified
/// against the cluster's CA and the host's name. No password: psql takes
/// it from `PGPASSWORD` or `~/.pgpass`.
pub(crate) fn dsn(t: &Target, user: &str, dbname: &str, rootcert: &Path) -> String {
    let ports: Vec<String> = t.hosts.iter().map(|_| t.port.to_string()).collect();
    let mut pairs = vec![
        ("host", t.hosts.join(",")),
        ("port", ports.join(",")),
        ("dbname", dbname.to_string()),
        ("user", user.to_string()),
        ("sslmode", "verify-full".to_string()),
        ("sslrootcert", rootcert.display().to_string()),
        // A host that does not answer costs seconds, not minutes, before the next.
        ("connect_timeout", "5".to_string()),
    ];
    if matches!(t.endpoint, Endpoint::Ro | Endpoint::Local) {
        // A session that fell back to the master (no replica in the pool)
        // stays there when the replicas return: its transactions are
        // read-only all the same.
        pairs.push(("options", "-c default_transaction_read_only=on".to_string()));
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value as libpq's `key=value` syntax reads it: bare when plain, else
/// in single quotes with `\` and `'` escaped.
fn value(v: &str) -> String {
    let plain = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-,:/@".contains(c));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// A role or database name as given on the command line: PostgreSQL's
/// identifier length, no control characters.
pub(crate) fn check_name(what: &str, v: &str) -> Result<(), error::Usage> {
    if v.is_empty() || v.len() > 63 || v.chars().any(char::is_control) {
        return Err(error::Usage(format!(
            "{what} `{}` is not a PostgreSQL name (1 to 63 bytes, no control characters)",
            v.escape_debug()
        )));
    }
    Ok(())
}

/// The file clients verify the servers with: what every host trusts (the
/// CA, the previous one during a rotation, `trust_also`), the PKI's
/// `trust.crt`, written again should it differ.
pub(crate) fn client_trust(design: &Design) -> anyhow::Result<PathBuf> {
    let pki = pki::load(design, time::OffsetDateTime::now_utc())?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} holds no CA yet: `pgha deploy` makes the cluster's certificates",
            design.pki_dir.display()
        )
    })?;
    let path = std::path::absolute(design.pki_dir.join("trust.crt"))?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(pki.trust.as_str()) {
        fsutil::write_atomic(&path, pki.trust.as_bytes(), 0o644)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(name: &str) -> Design {
        crate::testkit::example(name)
    }

    #[test]
    fn the_glb_and_a_cloud_give_their_ports() {
        let d = design("two-clouds.yaml");
        let rw = target(&d, Endpoint::Rw, None).unwrap();
        assert_eq!(
            (rw.hosts.clone(), rw.port),
            (vec!["pgha-demo.glb.example.com".to_string()], 5000)
        );
        assert_eq!(target(&d, Endpoint::Ro, None).unwrap().port, 5001);
        let dc2 = target(&d, Endpoint::Ro, Some("dc2")).unwrap();
        assert_eq!(dc2.hosts, ["10.77.0.21", "10.77.0.22", "10.77.0.23"]);
        assert_eq!(dc2.port, 5001);
        assert!(target(&d, Endpoint::Local, Some("dc2"))
            .unwrap_err()
            .0
            .contains("local_reads"));
        assert!(target(&d, Endpoint::Local, None).unwrap_err().0.contains("--cloud"));
        assert!(target(&d, Endpoint::Rw, Some("dc9"))
            .unwrap_err()
            .0
            .contains("dc1, dc2"));
    }

    #[test]
    fn the_string_lists_every_host_and_verifies_them() {
        let d = design("two-clouds.yaml");
        let t = target(&d, Endpoint::Rw, Some("dc1")).unwrap();
        assert_eq!(
            dsn(&t, "app", "orders", Path::new("/home/dba/my pki/trust.crt")),
            "host=10.77.0.11,10.77.0.12,10.77.0.13 port=5000,5000,5000 dbname=orders user=app \
             sslmode=verify-full sslrootcert='/home/dba/my pki/trust.crt' connect_timeout=5"
        );
    }

    #[test]
    fn a_cloud_s_virtual_ip_comes_first() {
        let d = design("three-sites.yaml");
        let t = target(&d, Endpoint::Rw, Some("dc1")).unwrap();
        assert_eq!(t.hosts[0], "10.77.0.100");
        assert_eq!(t.hosts.len(), 4);
        assert_eq!(target(&d, Endpoint::Rw, Some("dc2")).unwrap().hosts.len(), 3);
    }

    #[test]
    fn read_only_strings_make_transactions_read_only() {
        let d = design("two-clouds.yaml");
        let t = target(&d, Endpoint::Ro, None).unwrap();
        assert!(dsn(&t, "app", "orders", Path::new("/ca.crt"))
            .ends_with(" connect_timeout=5 options='-c default_transaction_read_only=on'"));
    }

    #[test]
    fn values_are_quoted_for_libpq() {
        assert_eq!(value("plain_name-1"), "plain_name-1");
        assert_eq!(value(""), "''");
        assert_eq!(value("it's"), r"'it\'s'");
        assert_eq!(value(r"a\b c"), r"'a\\b c'");
        assert_eq!(value("x=y"), "'x=y'");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("--role", "app_rw").is_ok());
        assert!(check_name("--role", "").is_err());
        assert!(check_name("--role", "a\nb").is_err());
        assert!(check_name("--role", &"x".repeat(64)).is_err());
    }
}
