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
pub(crate) const GATEWAY_CERT_PATH: &str = "/etc/pgha/tls/gateway.crt";

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

/// The host's client certificate for etcd's JSON gateway (no common name:
/// Patroni and the site agent log in by password, see `etcd::Access`),
/// over the host's key.
pub(crate) const GATEWAY_CERT: FileSpec = FileSpec {
    component: Component::Tls,
    template: "tls-gateway.pem.j2",
    path: GATEWAY_CERT_PATH,
    owner: "root",
    group: "root",
    mode: 0o644,
    service: "patroni",
    check: None,
};

/// What an etcd member reads (a cloud's, or a site member on the witness too).
pub(crate) const ETCD_FILES: [FileSpec; 3] = [TRUST, CERT, ETCD_KEY];

/// The TLS files of a database host, in the order they are written.
pub(crate) const FILES: [FileSpec; 5] = [TRUST, CERT, ETCD_KEY, POSTGRES_KEY, GATEWAY_CERT];

/// Prints `cert_pem <base64 of the PEM>`: the host's installed certificate
/// (public), which pgha reads itself.
pub(crate) fn expiry_script() -> String {
    format!("[ -r {CERT_PATH} ] && echo \"cert_pem $(base64 -w0 {CERT_PATH})\"")
}

/// When the certificate in a line `cert_pem B64` of a probe's output expires
/// (unix seconds).
pub(crate) fn parse_expiry(out: &str) -> Option<i64> {
    let b64 = out.lines().find_map(|l| l.strip_prefix("cert_pem "))?;
    let pem = crate::shell::base64_decode(b64.trim())?;
    crate::pki::not_after(&String::from_utf8(pem).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_the_installed_certificate() {
        assert_eq!(
            expiry_script(),
            r#"[ -r /etc/pgha/tls/host.crt ] && echo "cert_pem $(base64 -w0 /etc/pgha/tls/host.crt)""#
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a1".to_string()]).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(1_830_000_000).unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        let line = format!(
            "patroni active\ncert_pem {}\n",
            crate::shell::base64(pem.as_bytes()).replace('\n', "")
        );
        assert_eq!(parse_expiry(&line), Some(1_830_000_000));
        assert_eq!(parse_expiry("patroni active\n"), None);
        assert_eq!(parse_expiry("cert_pem bm90IGEgY2VydA==\n"), None);
    }
}
