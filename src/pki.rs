//! The cluster's PKI: a CA and one certificate per database host, kept in a
//! private directory next to the design (`<design name>.pki/`, 0700) like the
//! secrets file, and installed on the hosts as managed files.
//!
//! Layout: `ca.crt` and `ca.key` (the CA that signs; absent when the design
//! names its own), `previous-ca.crt` while a rotation is under way,
//! `trust.crt` (what hosts and clients trust: the CA, plus the previous one
//! during a rotation), `rotation` (the rotation's phase), and
//! `hosts/<name>.crt` / `hosts/<name>.key`. Keys are 0600 and never printed.
//!
//! Certificates are made once and stored, so rendering stays pure: the same
//! design and PKI directory give the same bytes on every run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::design::Design;

/// A host certificate is renewed by `deploy` when it expires within this.
pub const RENEW_BEFORE: Duration = Duration::days(30);
const HOST_VALIDITY: Duration = Duration::days(365);
const CA_VALIDITY: Duration = Duration::days(3650);
/// Hosts whose clocks run a little behind still accept a new certificate.
const BACKDATE: Duration = Duration::hours(1);

/// Where a rotation stands (`pgha certs rotate`). Each phase is one rolling
/// deploy; every host trusts both CAs until the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every host trusts the new CA as well as the old; certificates stay.
    TrustBoth,
    /// Every certificate is reissued by the new CA; both are still trusted.
    Reissue,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::TrustBoth => "trust-both",
            Phase::Reissue => "reissue",
        }
    }
}

/// One host's certificate and key, PEM.
#[derive(Clone)]
pub struct HostCert {
    pub cert: String,
    pub key: String,
    pub not_after: OffsetDateTime,
    /// A client certificate over the same key with no common name: for
    /// etcd's JSON gateway, which refuses a certificate naming a user once
    /// authentication is on. Whoever presents it still logs in by password.
    pub gateway: String,
}

impl std::fmt::Debug for HostCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostCert {{ not_after: {} }}", self.not_after)
    }
}

/// What the hosts get: the trust bundle and each database host's certificate.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
    /// PEM of every CA hosts and clients trust.
    pub trust: String,
    pub hosts: BTreeMap<String, HostCert>,
    pub ca_not_after: OffsetDateTime,
    pub phase: Option<Phase>,
    /// The metrics CA's certificate, with the metrics exporter on.
    pub metrics_ca: Option<String>,
}

impl Pki {
    /// The earliest expiry among the CA and the host certificates.
    pub fn earliest_expiry(&self) -> OffsetDateTime {
        self.hosts
            .values()
            .map(|h| h.not_after)
            .fold(self.ca_not_after, OffsetDateTime::min)
    }
}

/// Names and addresses a host's certificate must cover: its own, loopback
/// (pgha and Patroni talk to the local services), every database host's
/// address (HAProxy runs on each and hands a client to whichever host is the
/// master) and the GLB's name and addresses.
pub fn wanted_names(design: &Design, host: &str) -> Vec<String> {
    let mut names = vec![host.to_string(), "localhost".to_string()];
    let mut addrs = vec!["127.0.0.1".to_string(), "::1".to_string()];
    for c in &design.clouds {
        addrs.extend(c.hosts.iter().map(|h| h.address.clone()));
        // Clients reach the leader's HAProxy and PgBouncer at the cloud's virtual IP.
        addrs.extend(c.vip.iter().map(|v| v.address.clone()));
    }
    if let Some(g) = &design.glb {
        names.push(g.fqdn.clone());
        addrs.extend(design.glb_hosts().iter().map(|h| h.address.clone()));
    }
    // The witness's site member is reached at its address.
    addrs.extend(design.witness().map(|w| w.address.clone()));
    // So are the repository hosts' pgBackRest servers.
    addrs.extend(design.repository_hosts().map(|h| h.address.clone()));
    names.extend(addrs);
    // Canonical order, no duplicates: the comparison with a stored
    // certificate must not depend on the design's order.
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(canonical(n)));
    names.sort_by_key(|n| canonical(n));
    names
}

fn canonical(name: &str) -> String {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => format!("ip:{ip}"),
        Err(_) => format!("dns:{}", name.to_ascii_lowercase()),
    }
}

/// The signing CA: the design's own, or the one in the PKI directory.
struct Ca {
    cert_pem: String,
    key: KeyPair,
    not_after: OffsetDateTime,
}

impl Ca {
    fn issuer(&self) -> anyhow::Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|e| anyhow!("the CA certificate: {e}"))
    }
}

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match crate::fsutil::read_regular(path, crate::fsutil::MAX_SMALL) {
        Ok(bytes) => Ok(Some(
            String::from_utf8(bytes).map_err(|_| anyhow!("{} is not PEM text", path.display()))?,
        )),
        Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

/// A private key's PEM text: its file must be readable by its owner only.
fn read_private(path: &Path) -> anyhow::Result<Option<String>> {
    let text = read(path)?;
    if text.is_some() {
        crate::fsutil::check_private(path)?;
    }
    Ok(text)
}

/// A private key file must be readable by its owner only.
fn read_key(path: &Path) -> anyhow::Result<Option<KeyPair>> {
    let Some(text) = read_private(path)? else {
        return Ok(None);
    };
    // The error names the file, never its content.
    KeyPair::from_pem(&text).map(Some).map_err(|_| {
        anyhow!(
            "{} is not a PEM private key pgha can sign with (ECDSA, Ed25519 or RSA)",
            path.display()
        )
    })
}

/// When a PEM certificate expires (unix seconds); `None` when it is not one.
pub(crate) fn not_after(pem: &str) -> Option<i64> {
    parse_cert(pem, "certificate")
        .ok()
        .map(|c| c.not_after.unix_timestamp())
}

/// Facts read from a PEM certificate.
struct CertInfo {
    not_after: OffsetDateTime,
    names: Vec<String>,
    der: Vec<u8>,
    /// The subject's public key (DER).
    spki: Vec<u8>,
}

fn parse_cert(pem: &str, what: &str) -> anyhow::Result<CertInfo> {
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| anyhow!("{what}: not a PEM certificate: {e}"))?;
    let cert = p
        .parse_x509()
        .map_err(|e| anyhow!("{what}: not an X.509 certificate: {e}"))?;
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| anyhow!("{what}: expiry out of range: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                    16 => names.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        not_after,
        names,
        der: p.contents.clone(),
        spki: cert.public_key().raw.to_vec(),
    })
}

/// Whether `cert_der` carries a valid signature by the CA in `ca_pem`.
fn signed_by(cert_der: &[u8], ca_pem: &str) -> bool {
    let Ok((_, ca)) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()) else {
        return false;
    };
    let (Ok(ca), Ok((_, cert))) = (ca.parse_x509(), x509_parser::parse_x509_certificate(cert_der)) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pgha");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn new_ca(cluster: &str, now: OffsetDateTime) -> anyhow::Result<(String, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(&format!("pgha CA {cluster} {}", now.unix_timestamp()));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - BACKDATE;
    p.not_after = now + CA_VALIDITY;
    let cert = p.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// A host's certificate over a new key: for `names`, a server's and a
/// client's; without names, a client's only.
fn new_host_cert(ca: &Ca, host: &str, names: &[String], now: OffsetDateTime) -> anyhow::Result<HostCert> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.to_vec()).with_context(|| format!("certificate names of {host}"))?;
    p.distinguished_name = dn(host);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    // etcd peers present the same certificate as clients and as servers.
    p.extended_key_usages = if names.is_empty() {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.not_before = now - BACKDATE;
    p.not_after = (now + HOST_VALIDITY).min(ca.not_after);
    p.use_authority_key_identifier_extension = true;
    let cert = p.signed_by(&key, &ca.issuer()?)?;
    let key = key.serialize_pem();
    Ok(HostCert {
        cert: cert.pem(),
        gateway: new_gateway_cert(ca, &key, now, p.not_after)?,
        key,
        not_after: p.not_after,
    })
}

/// The gateway certificate for a host's key (see [`HostCert::gateway`]):
/// client use only, no names, the host certificate's expiry.
fn new_gateway_cert(ca: &Ca, key_pem: &str, now: OffsetDateTime, not_after: OffsetDateTime) -> anyhow::Result<String> {
    let key = KeyPair::from_pem(key_pem).map_err(|_| anyhow!("a host key pgha made does not load"))?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pgha");
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = now - BACKDATE;
    p.not_after = not_after;
    p.use_authority_key_identifier_extension = true;
    Ok(p.signed_by(&key, &ca.issuer()?)?.pem())
}

/// What [`ensure`] changed, for the operator.
#[derive(Debug, Default)]
pub struct Changes {
    pub lines: Vec<String>,
}

/// Reads the PKI directory, creating the CA when there is none (or using the
/// design's own) and issuing or renewing every database host's certificate
/// that is missing, expires within [`RENEW_BEFORE`], lacks a name the design
/// now needs, or was not issued by the CA the phase calls for. With `write`
/// false nothing is saved (a dry run): what would change is still reported.
pub fn ensure(design: &Design, now: OffsetDateTime, write: bool) -> anyhow::Result<(Pki, Changes)> {
    let dir = design.pki_dir.clone();
    let mut changes = Changes::default();
    let phase = read_phase(&dir)?;
    let ca = ensure_ca(design, &dir, now, write, &mut changes)?;
    if ca.not_after - now < RENEW_BEFORE {
        bail!(
            "the cluster CA expires at {}: run `pgha certs rotate` to replace it",
            ca.not_after
        );
    }
    let previous = read(&dir.join("previous-ca.crt"))?;
    let trust = trust_bundle(design, &ca, previous.as_deref(), phase)?;
    let mut hosts = BTreeMap::new();
    // With the site lease a GLB host's checks present a certificate to
    // Patroni's REST API: a client's only, without names, so that a GLB
    // can pose as no server (clients' TLS runs through it to the master).
    let glb: &[crate::design::Host] = if design.site.is_some() { design.glb_hosts() } else { &[] };
    for h in design
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .chain(design.witness())
        .chain(design.repository_hosts())
        .chain(glb)
    {
        let names = if glb.iter().any(|g| g.name == h.name) {
            Vec::new()
        } else {
            wanted_names(design, &h.name)
        };
        let (crt, key) = (host_path(&dir, &h.name, "crt"), host_path(&dir, &h.name, "key"));
        let have = match (read(&crt)?, read_private(&key)?) {
            (Some(cert), Some(key_pem)) => {
                let info = parse_cert(&cert, &crt.display().to_string())?;
                Some((cert, key_pem, info))
            }
            _ => None,
        };
        let why = match &have {
            None => Some("issue"),
            Some((_, _, info)) => reissue_reason(info, &names, &ca, previous.as_deref(), phase, now),
        };
        let gw = host_path(&dir, &h.name, "gateway.crt");
        let cert = match (why, have) {
            (None, Some((cert, key, info))) => {
                // The gateway certificate follows the host's: the same key,
                // kept by the same rule; one that does not parse is issued again.
                let kept = read(&gw)?.filter(|pem| gateway_valid(pem, &info, &ca, previous.as_deref(), phase, now));
                let gateway = match kept {
                    Some(pem) => pem,
                    None => {
                        let pem = new_gateway_cert(&ca, &key, now, info.not_after)?;
                        changes
                            .lines
                            .push(format!("issue the etcd gateway certificate of {}", h.name));
                        if write {
                            crate::fsutil::write_atomic(&gw, pem.as_bytes(), 0o644)?;
                        }
                        pem
                    }
                };
                HostCert {
                    cert,
                    key,
                    not_after: info.not_after,
                    gateway,
                }
            }
            (why, _) => {
                let c = new_host_cert(&ca, &h.name, &names, now)?;
                changes
                    .lines
                    .push(format!("{} the certificate of {}", why.unwrap_or("issue"), h.name));
                if write {
                    ensure_dir(&dir)?;
                    std::fs::create_dir_all(dir.join("hosts"))?;
                    crate::fsutil::write_atomic(&crt, c.cert.as_bytes(), 0o644)?;
                    crate::fsutil::write_atomic(&key, c.key.as_bytes(), 0o600)?;
                    crate::fsutil::write_atomic(&gw, c.gateway.as_bytes(), 0o644)?;
                }
                c
            }
        };
        hosts.insert(h.name.clone(), cert);
    }
    let metrics_ca = match design.exporter {
        Some(_) => Some(ensure_metrics(&dir, &design.platform.name, now, write, &mut changes)?),
        None => None,
    };
    if write && read(&dir.join("trust.crt"))?.as_deref() != Some(trust.as_str()) {
        ensure_dir(&dir)?;
        crate::fsutil::write_atomic(&dir.join("trust.crt"), trust.as_bytes(), 0o644)?;
    }
    Ok((
        Pki {
            dir,
            trust,
            hosts,
            ca_not_after: ca.not_after,
            phase,
            metrics_ca,
        },
        changes,
    ))
}

/// The CA: the design's own, the one kept in the PKI directory, or a new
/// one (saved when `write`).
fn ensure_ca(
    design: &Design,
    dir: &Path,
    now: OffsetDateTime,
    write: bool,
    changes: &mut Changes,
) -> anyhow::Result<Ca> {
    Ok(match &design.tls.ca {
        Some(own) => {
            let cert_pem =
                read(&own.cert)?.ok_or_else(|| anyhow!("tls.ca_cert: {} does not exist", own.cert.display()))?;
            let key = read_key(&own.key)?.ok_or_else(|| anyhow!("tls.ca_key: {} does not exist", own.key.display()))?;
            let not_after = parse_cert(&cert_pem, &own.cert.display().to_string())?.not_after;
            Ca {
                cert_pem,
                key,
                not_after,
            }
        }
        None => match (read(&dir.join("ca.crt"))?, read_key(&dir.join("ca.key"))?) {
            (Some(cert_pem), Some(key)) => {
                let not_after = parse_cert(&cert_pem, "ca.crt")?.not_after;
                Ca {
                    cert_pem,
                    key,
                    not_after,
                }
            }
            (None, None) => {
                let (cert_pem, key) = new_ca(&design.platform.name, now)?;
                changes
                    .lines
                    .push(format!("create the cluster CA in {}", dir.display()));
                if write {
                    save_ca(dir, &cert_pem, &key)?;
                }
                Ca {
                    cert_pem,
                    key,
                    not_after: now + CA_VALIDITY,
                }
            }
            _ => bail!(
                "{}: ca.crt and ca.key must both be there (or neither, for a new CA)",
                dir.display()
            ),
        },
    })
}

/// What every host trusts: the CA, the previous one while a rotation is
/// under way, and the design's `trust_also`.
fn trust_bundle(design: &Design, ca: &Ca, previous: Option<&str>, phase: Option<Phase>) -> anyhow::Result<String> {
    let mut trust = match (previous, phase) {
        (Some(p), Some(_)) => format!("{}{}", ca.cert_pem, p),
        _ => ca.cert_pem.clone(),
    };
    for path in &design.tls.trust_also {
        let pem = read(path)?.ok_or_else(|| anyhow!("tls.trust_also: {} does not exist", path.display()))?;
        parse_cert(&pem, &path.display().to_string())?;
        trust.push_str(&pem);
    }
    Ok(trust)
}

/// A kept gateway certificate: of the host's key, not expiring soon, and
/// signed by the CA (or, while both are trusted, the previous one).
fn gateway_valid(
    pem: &str,
    host: &CertInfo,
    ca: &Ca,
    previous: Option<&str>,
    phase: Option<Phase>,
    now: OffsetDateTime,
) -> bool {
    parse_cert(pem, "gateway").is_ok_and(|g| {
        let by_previous = previous.is_some_and(|p| signed_by(&g.der, p));
        g.spki == host.spki
            && g.not_after - now >= RENEW_BEFORE
            && (signed_by(&g.der, &ca.cert_pem) || (phase == Some(Phase::TrustBoth) && by_previous))
    })
}

/// Why a host's certificate must be issued again, if it must.
fn reissue_reason(
    info: &CertInfo,
    names: &[String],
    ca: &Ca,
    previous: Option<&str>,
    phase: Option<Phase>,
    now: OffsetDateTime,
) -> Option<&'static str> {
    let by_ca = signed_by(&info.der, &ca.cert_pem);
    let by_previous = previous.is_some_and(|p| signed_by(&info.der, p));
    let mut have_names: Vec<String> = info.names.iter().map(|n| canonical(n)).collect();
    have_names.sort();
    let want: Vec<String> = names.iter().map(|n| canonical(n)).collect();
    if info.not_after - now < RENEW_BEFORE {
        Some("renew (expires within 30 days)")
    } else if !want.iter().all(|n| have_names.contains(n)) {
        // A name more (a host added); one less (a host removed)
        // reissues nothing: every peer still finds its own.
        Some("reissue (names changed)")
    } else if !(by_ca || (phase == Some(Phase::TrustBoth) && by_previous)) {
        Some("reissue (new CA)")
    } else {
        None
    }
}

/// The PKI as it is, changing nothing: for commands that install files
/// without issuing (flips). `None` before the first deploy.
pub fn load(design: &Design, now: OffsetDateTime) -> anyhow::Result<Option<Pki>> {
    if design.tls.ca.is_none() && !design.pki_dir.join("ca.crt").exists() {
        return Ok(None);
    }
    ensure(design, now, false).map(|(p, _)| Some(p))
}

/// The metrics CA and the client certificate it signs for Prometheus
/// (`metrics/`): the exporters let in that CA's certificates only, and
/// nothing else trusts it, so the certificate handed to a monitoring system
/// opens no etcd, Patroni or PostgreSQL. Made once; renewed together
/// within [`RENEW_BEFORE`] of the client certificate's expiry.
fn ensure_metrics(
    dir: &Path,
    cluster: &str,
    now: OffsetDateTime,
    write: bool,
    changes: &mut Changes,
) -> anyhow::Result<String> {
    let m = dir.join("metrics");
    let (ca_crt, ca_key, crt, key) = (
        m.join("ca.crt"),
        m.join("ca.key"),
        m.join("prometheus.crt"),
        m.join("prometheus.key"),
    );
    if let (Some(ca), Some(_), Some(cert), Some(_)) =
        (read(&ca_crt)?, read_key(&ca_key)?, read(&crt)?, read_private(&key)?)
    {
        let info = parse_cert(&cert, &crt.display().to_string())?;
        if info.not_after - now >= RENEW_BEFORE && signed_by(&info.der, &ca) {
            return Ok(ca);
        }
    }
    let (ca_pem, ca_key_pair) = new_ca(&format!("{cluster} metrics"), now)?;
    let ca = Ca {
        cert_pem: ca_pem.clone(),
        key: ca_key_pair,
        not_after: now + CA_VALIDITY,
    };
    let client = new_host_cert(&ca, "prometheus", &["prometheus".to_string()], now)?;
    changes.lines.push(format!(
        "issue the metrics CA and Prometheus's client certificate in {}",
        m.display()
    ));
    if write {
        ensure_dir(dir)?;
        ensure_dir(&m)?;
        crate::fsutil::write_atomic(&ca_key, ca.key.serialize_pem().as_bytes(), 0o600)?;
        crate::fsutil::write_atomic(&ca_crt, ca_pem.as_bytes(), 0o644)?;
        crate::fsutil::write_atomic(&key, client.key.as_bytes(), 0o600)?;
        crate::fsutil::write_atomic(&crt, client.cert.as_bytes(), 0o644)?;
    }
    Ok(ca_pem)
}

fn host_path(dir: &Path, host: &str, ext: &str) -> PathBuf {
    dir.join("hosts").join(format!("{host}.{ext}"))
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

fn save_ca(dir: &Path, cert: &str, key: &KeyPair) -> anyhow::Result<()> {
    ensure_dir(dir)?;
    crate::fsutil::write_atomic(&dir.join("ca.key"), key.serialize_pem().as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(&dir.join("ca.crt"), cert.as_bytes(), 0o644)
}

fn read_phase(dir: &Path) -> anyhow::Result<Option<Phase>> {
    match read(&dir.join("rotation"))?.as_deref().map(str::trim) {
        None => Ok(None),
        Some("trust-both") => Ok(Some(Phase::TrustBoth)),
        Some("reissue") => Ok(Some(Phase::Reissue)),
        Some(_) => bail!(
            "{}: unknown rotation phase; it holds trust-both or reissue",
            dir.join("rotation").display()
        ),
    }
}

/// The next step of a rotation of the generated CA, on disk: from no
/// rotation, a new CA (the old one kept as `previous-ca.crt`, trusted
/// alongside) and phase [`Phase::TrustBoth`]; then [`Phase::Reissue`]; then
/// done (the previous CA dropped). Returns the phase now in force.
pub fn advance_rotation(design: &Design, now: OffsetDateTime) -> anyhow::Result<Option<Phase>> {
    let dir = design.pki_dir.clone();
    match read_phase(&dir)? {
        None => {
            let old = read(&dir.join("ca.crt"))?
                .ok_or_else(|| anyhow!("{}: no CA to rotate: deploy first", dir.display()))?;
            let (cert, key) = new_ca(&design.platform.name, now)?;
            // The phase is written first: a crash in between leaves a
            // rotation that trusts both, never a CA nobody trusts.
            crate::fsutil::write_atomic(&dir.join("previous-ca.crt"), old.as_bytes(), 0o644)?;
            crate::fsutil::write_atomic(&dir.join("rotation"), Phase::TrustBoth.as_str().as_bytes(), 0o644)?;
            save_ca(&dir, &cert, &key)?;
            Ok(Some(Phase::TrustBoth))
        }
        Some(Phase::TrustBoth) => {
            crate::fsutil::write_atomic(&dir.join("rotation"), Phase::Reissue.as_str().as_bytes(), 0o644)?;
            Ok(Some(Phase::Reissue))
        }
        Some(Phase::Reissue) => {
            std::fs::remove_file(dir.join("rotation"))?;
            std::fs::remove_file(dir.join("previous-ca.crt"))?;
            Ok(None)
        }
    }
}

/// With the design's own CA there is no CA to replace: a rotation reissues
/// every host certificate under it (in one rolling deploy).
pub fn reissue_all(design: &Design) -> anyhow::Result<()> {
    let dir = design.pki_dir.join("hosts");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design(dir: &Path) -> Design {
        let path = dir.join("d.yaml");
        std::fs::write(
            &path,
            "platform: {name: c}\nclouds:\n  - name: dc1\n    status: primary\n    hosts:\n      - {name: a1, address: 10.0.0.1}\n      - {name: a2, address: 10.0.0.2}\n  - name: dc2\n    status: secondary\n    hosts:\n      - {name: b1, address: 10.0.0.3}\nglb: {fqdn: db.example.com, hosts: [{name: g1, address: 10.0.0.9}]}\n",
        )
        .unwrap();
        crate::design::load(&path).unwrap().design
    }

    #[test]
    fn names_cover_every_way_in() {
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        assert_eq!(
            wanted_names(&d, "a1"),
            [
                "a1",
                "db.example.com",
                "localhost",
                "10.0.0.1",
                "10.0.0.2",
                "10.0.0.3",
                "10.0.0.9",
                "127.0.0.1",
                "::1"
            ]
        );
    }

    #[test]
    fn a_second_run_changes_nothing_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        let (first, changes) = ensure(&d, now, true).unwrap();
        // The CA, three hosts, and the metrics CA with Prometheus's certificate.
        assert_eq!(changes.lines.len(), 5, "{:?}", changes.lines);
        let (second, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        assert_eq!(first.hosts["a1"].cert, second.hosts["a1"].cert);
        assert_eq!(first.metrics_ca, second.metrics_ca);
        // Nothing but the exporters trusts the metrics CA.
        let metrics_ca = first.metrics_ca.clone().unwrap();
        assert!(!first.trust.contains(metrics_ca.trim()));
        let prometheus = std::fs::read_to_string(d.pki_dir.join("metrics/prometheus.crt")).unwrap();
        let info = parse_cert(&prometheus, "prometheus").unwrap();
        assert!(signed_by(&info.der, &metrics_ca) && !signed_by(&info.der, &first.trust));
        for f in [
            "ca.key",
            "hosts/a1.key",
            "hosts/b1.key",
            "metrics/ca.key",
            "metrics/prometheus.key",
        ] {
            let mode = std::fs::metadata(d.pki_dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let mode = std::fs::metadata(&d.pki_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(!format!("{first:?}").contains("PRIVATE KEY"));
        let info = parse_cert(&first.hosts["a1"].cert, "a1").unwrap();
        assert!(signed_by(&info.der, &first.trust));
    }

    /// Issue 23: etcd's gateway refuses a certificate with a common name
    /// once authentication is on; each host gets one without, over its own
    /// key, for client use only, renewed with the host's.
    #[test]
    fn each_host_has_a_gateway_certificate_without_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        let (first, _) = ensure(&d, now, true).unwrap();
        let host = &first.hosts["a1"];
        let (_, p) = x509_parser::pem::parse_x509_pem(host.gateway.as_bytes()).unwrap();
        let cert = p.parse_x509().unwrap();
        assert_eq!(cert.subject().iter_common_name().count(), 0, "{}", cert.subject());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let info = parse_cert(&host.gateway, "gateway").unwrap();
        assert_eq!(info.spki, parse_cert(&host.cert, "host").unwrap().spki);
        assert!(signed_by(&info.der, &first.trust));
        // Kept while the host's certificate is; a lost one is issued again.
        let (second, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        assert_eq!(second.hosts["a1"].gateway, host.gateway);
        std::fs::remove_file(d.pki_dir.join("hosts/a1.gateway.crt")).unwrap();
        let (_, changes) = ensure(&d, now, true).unwrap();
        assert_eq!(changes.lines, ["issue the etcd gateway certificate of a1"]);
        let (later, _) = ensure(&d, now + Duration::days(340), true).unwrap();
        let renewed = parse_cert(&later.hosts["a1"].gateway, "gateway").unwrap();
        assert_eq!(renewed.spki, parse_cert(&later.hosts["a1"].cert, "host").unwrap().spki);
        assert_ne!(renewed.spki, info.spki);
    }

    /// Issue 28: with the site lease a GLB host gets a certificate its
    /// checks present to Patroni's REST API: a client's only, naming no
    /// server, so a GLB poses as no database host to the clients whose TLS
    /// it carries. Without the lease it needs none.
    #[test]
    fn a_glb_host_gets_a_client_certificate_with_the_site_lease_only() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (without, _) = ensure(&design(dir.path()), now, false).unwrap();
        assert!(!without.hosts.contains_key("g1"));
        let path = dir.path().join("site.yaml");
        std::fs::write(
            &path,
            std::fs::read_to_string(dir.path().join("d.yaml")).unwrap() + "witness: {name: w1, address: 10.0.0.8}\n",
        )
        .unwrap();
        let d = crate::design::load(&path).unwrap().design;
        assert!(d.site.is_some());
        let (with, _) = ensure(&d, now, false).unwrap();
        let (_, p) = x509_parser::pem::parse_x509_pem(with.hosts["g1"].cert.as_bytes()).unwrap();
        let cert = p.parse_x509().unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert!(signed_by(
            &parse_cert(&with.hosts["g1"].cert, "g1").unwrap().der,
            &with.trust
        ));
    }

    #[test]
    fn a_host_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        ensure(&d, now, true).unwrap();
        for f in ["hosts/b1.key", "metrics/prometheus.key"] {
            let path = d.pki_dir.join(f);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = format!("{:#}", ensure(&d, now, true).unwrap_err());
            assert!(e.contains(f) && e.contains("readable by others"), "{e}");
            assert!(!e.contains("PRIVATE KEY"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        ensure(&d, now, true).unwrap();
    }

    #[test]
    fn certificates_are_renewed_within_30_days_of_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        let (first, _) = ensure(&d, now, true).unwrap();
        let (_, changes) = ensure(&d, now + Duration::days(300), true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        let (later, changes) = ensure(&d, now + Duration::days(340), true).unwrap();
        // Three hosts, and Prometheus's certificate (with its CA).
        assert_eq!(changes.lines.len(), 4, "{:?}", changes.lines);
        assert!(later.hosts["a1"].not_after > first.hosts["a1"].not_after);
    }

    #[test]
    fn a_new_address_reissues_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        ensure(&d, now, true).unwrap();
        d.clouds[0].hosts[1].address = "10.0.0.22".into();
        let (_, changes) = ensure(&d, now, true).unwrap();
        assert_eq!(changes.lines.len(), 3, "{:?}", changes.lines);
        assert!(changes.lines.iter().all(|l| l.contains("names changed")));
    }

    #[test]
    fn a_removed_host_reissues_nothing_and_its_return_neither() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        ensure(&d, now, true).unwrap();
        let removed = d.clouds[0].hosts.remove(1);
        let (_, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        d.clouds[0].hosts.insert(1, removed);
        let (_, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
    }

    #[test]
    fn rotation_trusts_both_until_every_certificate_is_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let d = design(dir.path());
        let now = OffsetDateTime::now_utc();
        let (before, _) = ensure(&d, now, true).unwrap();
        assert_eq!(advance_rotation(&d, now).unwrap(), Some(Phase::TrustBoth));
        let (both, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "old certificates stay: {:?}", changes.lines);
        assert!(both.trust.starts_with(&before.trust[..0]) && both.trust.contains(before.trust.trim()));
        assert_eq!(both.trust.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(advance_rotation(&d, now).unwrap(), Some(Phase::Reissue));
        let (reissued, changes) = ensure(&d, now, true).unwrap();
        assert_eq!(changes.lines.len(), 3, "{:?}", changes.lines);
        assert_eq!(reissued.trust.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(advance_rotation(&d, now).unwrap(), None);
        let (after, changes) = ensure(&d, now, true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        assert_eq!(after.trust.matches("BEGIN CERTIFICATE").count(), 1);
        assert!(!after.trust.contains(before.trust.trim()));
        let info = parse_cert(&after.hosts["b1"].cert, "b1").unwrap();
        assert!(signed_by(&info.der, &after.trust));
    }

    #[test]
    fn the_designs_own_ca_signs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = new_ca("own", OffsetDateTime::now_utc()).unwrap();
        std::fs::write(dir.path().join("own.crt"), &cert).unwrap();
        std::fs::write(dir.path().join("own.key"), key.serialize_pem()).unwrap();
        let mut d = design(dir.path());
        d.tls.ca = Some(crate::design::OwnCa {
            cert: dir.path().join("own.crt"),
            key: dir.path().join("own.key"),
        });
        std::fs::set_permissions(dir.path().join("own.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ensure(&d, OffsetDateTime::now_utc(), true).unwrap_err().to_string();
        assert!(e.contains("readable by others") && !e.contains("PRIVATE"), "{e}");
        std::fs::set_permissions(dir.path().join("own.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let (pki, _) = ensure(&d, OffsetDateTime::now_utc(), true).unwrap();
        assert_eq!(pki.trust, cert);
        assert!(!d.pki_dir.join("ca.key").exists());
        let mode = std::fs::metadata(&d.pki_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "host keys live in a private directory");
        let info = parse_cert(&pki.hosts["a2"].cert, "a2").unwrap();
        assert!(signed_by(&info.der, &cert));

        // Replacing one's own CA by hand: the new one trusted first, then
        // signing (every certificate reissued) with the old one still trusted.
        let (new_cert, new_key) = new_ca("own2", OffsetDateTime::now_utc()).unwrap();
        std::fs::write(dir.path().join("new.crt"), &new_cert).unwrap();
        std::fs::write(dir.path().join("new.key"), new_key.serialize_pem()).unwrap();
        std::fs::set_permissions(dir.path().join("new.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        d.tls.trust_also = vec![dir.path().join("new.crt")];
        let (both, changes) = ensure(&d, OffsetDateTime::now_utc(), true).unwrap();
        assert!(changes.lines.is_empty(), "{:?}", changes.lines);
        assert_eq!(both.trust, format!("{cert}{new_cert}"));
        d.tls.ca = Some(crate::design::OwnCa {
            cert: dir.path().join("new.crt"),
            key: dir.path().join("new.key"),
        });
        d.tls.trust_also = vec![dir.path().join("own.crt")];
        let (_, changes) = ensure(&d, OffsetDateTime::now_utc(), true).unwrap();
        assert_eq!(changes.lines.len(), 3, "{:?}", changes.lines);
    }
}
