//! TLS material on a database host: the trust bundle, the host's
//! certificate, and one copy of its key per service user (etcd runs as
//! `etcd`; PostgreSQL, Patroni and the fence as `postgres`), each 0600.
//! Services read them from here; pgha's own commands run as root.

use super::{Component, FileSpec};

pub(crate) const DIR: &str = "/etc/pgha/tls";
pub(crate) const TRUST_PATH: &str = "/etc/pgha/tls/ca.crt";
pub(crate) const CERT_PATH: &str = "/etc/pgha/tls/host.crt";
pub(crate) const ETCD_KEY_PATH: &str = "/etc/pgha/tls/etcd.key";
pub(crate) const POSTGRES_KEY_PATH: &str = "/etc/pgha/tls/postgres.key";

/// What every service and pgha trust: the cluster CA (both CAs during a rotation).
pub(crate) const TRUST: FileSpec = FileSpec {
    component: Component::Tls,
    template: "tls-trust.pem.j2",
    path: TRUST_PATH,
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "etcd",
    check: None,
};

pub(crate) const CERT: FileSpec = FileSpec {
    component: Component::Tls,
    template: "tls-cert.pem.j2",
    path: CERT_PATH,
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "etcd",
    check: None,
};

pub(crate) const ETCD_KEY: FileSpec = FileSpec {
    component: Component::Tls,
    template: "tls-key.pem.j2",
    path: ETCD_KEY_PATH,
    owner: "etcd",
    group: "etcd",
    mode: 0o600,
    service: "etcd",
    check: None,
};

pub(crate) const POSTGRES_KEY: FileSpec = FileSpec {
    component: Component::Tls,
    template: "tls-key.pem.j2",
    path: POSTGRES_KEY_PATH,
    owner: "postgres",
    group: "postgres",
    mode: 0o600,
    service: "patroni",
    check: None,
};

/// What an etcd member reads (a cloud's, or a site member on the witness too).
pub(crate) const ETCD_FILES: [FileSpec; 3] = [TRUST, CERT, ETCD_KEY];

/// The TLS files of a database host, in the order they are written.
pub(crate) const FILES: [FileSpec; 4] = [TRUST, CERT, ETCD_KEY, POSTGRES_KEY];

/// Prints `cert_expires <unix seconds>`: when the host's installed
/// certificate expires, read from the file itself (Python's ssl module is
/// on every host: Patroni needs it).
pub(crate) fn expiry_script() -> String {
    format!(
        "python3 -c 'import ssl; print(\"cert_expires\", int(ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(\"{CERT_PATH}\")[\"notAfter\"])))' 2>/dev/null"
    )
}

/// The seconds in a line `cert_expires N` of a probe's output.
pub(crate) fn parse_expiry(out: &str) -> Option<i64> {
    out.lines()
        .find_map(|l| l.strip_prefix("cert_expires "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_installed_certificate() {
        assert_eq!(
            expiry_script(),
            r#"python3 -c 'import ssl; print("cert_expires", int(ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert("/etc/pgha/tls/host.crt")["notAfter"])))' 2>/dev/null"#
        );
        assert_eq!(
            parse_expiry("patroni active\ncert_expires 1830000000\n"),
            Some(1_830_000_000)
        );
        assert_eq!(parse_expiry("patroni active\n"), None);
    }
}
