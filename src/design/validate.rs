//! RawDesign -> Design: defaults, layering and every check, each problem
//! located in the file that caused it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::raw::*;
use super::shape;
use super::yaml::{self, Node, Span};
use super::*;
use crate::error::{Invalid, Problem, Severity};

/// A loaded design and the warnings it raised.
#[derive(Debug)]
pub struct Loaded {
    pub design: Design,
    pub warnings: Vec<Problem>,
}

/// Which checks apply. Cloud flips pass through a moment with no primary
/// cloud (the seed's order: make-secondary, then make-primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Deployable,
    AllowNoPrimary,
}

pub fn load(path: &Path) -> Result<Loaded, Invalid> {
    load_mode(path, Mode::Deployable)
}

pub fn load_mode(path: &Path, mode: Mode) -> Result<Loaded, Invalid> {
    match crate::fsutil::read_regular(path, crate::fsutil::MAX_DESIGN) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(src) => load_str_mode(&src, path, mode),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                Err(located(path, e.as_bytes(), at, "the design file is not UTF-8 text"))
            }
        },
        Err(e) => Err(single(
            path,
            &format!("cannot read the design file: {e}"),
            Some("pass the design with -f FILE (default: pgha.yaml in the current directory)"),
        )),
    }
}

/// A problem at byte `at` of the file, located by line and column.
fn located(path: &Path, bytes: &[u8], at: usize, message: &str) -> Invalid {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.len() - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
    let mut p = Problem::new(Severity::Error, path, Some(Span { line, col }), "", message);
    p.hint = Some("save the design as plain UTF-8 text without a byte order mark or NUL bytes".into());
    Invalid { problems: vec![p] }
}

pub fn load_str(src: &str, path: &Path) -> Result<Loaded, Invalid> {
    load_str_mode(src, path, Mode::Deployable)
}

pub fn load_str_mode(src: &str, path: &Path, mode: Mode) -> Result<Loaded, Invalid> {
    // The YAML parser would silently stop at a NUL and read a BOM as text.
    if src.starts_with('\u{feff}') {
        return Err(located(
            path,
            src.as_bytes(),
            0,
            "the design file starts with a byte order mark",
        ));
    }
    if let Some(at) = src.find('\0') {
        return Err(located(path, src.as_bytes(), at, "the design file contains a NUL byte"));
    }
    let mut cx = Checker::new(path);
    let root = cx.parse(src).ok_or_else(|| cx.finish_err())?;
    cx.refuse_control_characters(&root);
    let raw: Option<RawDesign> = cx.deserialize(&root);
    let Some(raw) = raw else {
        return Err(cx.finish_err());
    };
    let design = build(&mut cx, &root, raw, mode);
    if cx.problems.iter().any(Problem::is_error) {
        return Err(cx.finish_err());
    }
    let mut design = design.expect("a design without errors is complete");
    design.source_sha256 = crate::fsutil::sha256_hex(src.as_bytes());
    Ok(Loaded {
        design,
        warnings: cx.problems,
    })
}

fn single(path: &Path, message: &str, hint: Option<&str>) -> Invalid {
    let mut p = Problem::new(Severity::Error, path, None, "", message);
    p.hint = hint.map(str::to_string);
    Invalid { problems: vec![p] }
}

/// Collects problems for one file, locating fields through its YAML tree.
struct Checker {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl Checker {
    fn new(file: &Path) -> Self {
        Checker {
            file: file.to_path_buf(),
            problems: Vec::new(),
        }
    }

    fn parse(&mut self, src: &str) -> Option<Node> {
        match Node::parse(src) {
            Ok(node) => Some(node),
            Err(e) => {
                self.problems.push(
                    Problem::new(
                        Severity::Error,
                        &self.file,
                        Some(e.span),
                        "",
                        format!("invalid YAML: {}", e.message),
                    )
                    .hint("check indentation and quoting around this place"),
                );
                None
            }
        }
    }

    /// No value may carry a control character: a newline in a value is a
    /// new line in a config file or a shell script.
    fn refuse_control_characters(&mut self, root: &Node) {
        let mut found = Vec::new();
        root.visit_scalars("", &mut |path, node| {
            if let Some(c) = node.as_str().and_then(|s| s.chars().find(|c| c.is_control())) {
                found.push((path.to_string(), node.span, c));
            }
        });
        for (path, span, c) in found {
            self.problems.push(
                Problem::new(
                    Severity::Error,
                    &self.file,
                    Some(span),
                    &path,
                    format!("the value contains a control character (U+{:04X})", c as u32),
                )
                .hint("write the value on one line, without tabs or other control characters"),
            );
        }
    }

    /// Deserializes, reporting every type error: each one's value is dropped
    /// and deserialization runs again, up to a bound.
    fn deserialize<T: serde::de::DeserializeOwned>(&mut self, root: &Node) -> Option<T> {
        let mut tree = root.clone();
        let mut failed = false;
        for _ in 0..64 {
            match yaml::from_node::<T>(&tree) {
                Ok(value) if !failed => return self.accept(value),
                Ok(value) => {
                    // Report the unknown keys too, but the value is incomplete.
                    self.accept(value);
                    return None;
                }
                Err(e) => {
                    failed = true;
                    self.problems.push(
                        Problem::new(Severity::Error, &self.file, e.span, &e.path, e.message)
                            .hint("see the design file reference in README.md"),
                    );
                    if !tree.prune(&e.path) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Keeps a deserialized value, reporting the unknown keys met on the way.
    fn accept<T>(&mut self, (value, unknown): (T, Vec<yaml::UnknownKey>)) -> Option<T> {
        for u in unknown {
            let hint = match suggest(&u.key, &u.expected) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of: {}", u.expected.join(", ")),
            };
            self.problems.push(
                Problem::new(
                    Severity::Error,
                    &self.file,
                    Some(u.span),
                    &u.path,
                    format!("unknown key `{}`", u.key),
                )
                .hint(hint),
            );
        }
        Some(value)
    }

    fn error(&mut self, root: &Node, field: &str, message: impl Into<String>, hint: impl Into<String>) {
        let span = root.span_of(field);
        self.problems
            .push(Problem::new(Severity::Error, &self.file, Some(span), field, message).hint(hint));
    }

    fn warn(&mut self, root: &Node, field: &str, message: impl Into<String>, hint: impl Into<String>) {
        let span = root.span_of(field);
        self.problems
            .push(Problem::new(Severity::Warning, &self.file, Some(span), field, message).hint(hint));
    }

    fn finish_err(&mut self) -> Invalid {
        Invalid {
            problems: std::mem::take(&mut self.problems),
        }
    }
}

/// The closest known key, if it is close enough to be a typo.
fn suggest<'a>(key: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(key, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

fn valid_name(s: &str) -> bool {
    shape::name(s)
}

const NAME_HINT: &str = "use letters, digits, '-', '_' or '.', starting with a letter or digit (at most 63)";

fn build(cx: &mut Checker, root: &Node, raw: RawDesign, mode: Mode) -> Option<Design> {
    let base = cx.file.parent().unwrap_or(Path::new("")).to_path_buf();
    let platform = build_platform(cx, root, raw.platform.unwrap_or_default());
    let components = raw.components.unwrap_or_default();
    let etcd = build_etcd(cx, root, components.etcd.unwrap_or_default());
    let governor = build_governor(cx, root, components.governor.unwrap_or_default());
    let hp = components.haproxy.unwrap_or_default();
    let haproxy = Haproxy {
        port: hp.port.unwrap_or(5000),
        stats_port: hp.stats_port.unwrap_or(7000),
        stats_address: stats_address(
            cx,
            root,
            hp.stats_address,
            "components.haproxy.stats_address",
            "127.0.0.1",
        ),
    };
    if platform.as_ref().is_some_and(|p| p.postgres_port == haproxy.port) {
        cx.error(
            root,
            "components.haproxy.port",
            format!("the HAProxy port {} is the PostgreSQL port", haproxy.port),
            "clients reach the master through HAProxy on its own port (default 5000); PostgreSQL keeps its port",
        );
    }

    let ex = components.exporter.unwrap_or_default();
    let exporter = ex.enabled.unwrap_or(true).then(|| Exporter {
        port: ex.port.unwrap_or(9187),
    });

    let global_ssh = layer_ssh(cx, root, &base, default_ssh(), raw.ssh.as_ref(), "ssh");
    let clouds = build_clouds(cx, root, &base, raw.clouds, &global_ssh, &platform, mode);
    let glb = raw.glb.map(|g| build_glb(cx, root, &base, g, &global_ssh, &haproxy));

    let site = build_site(cx, root, &base, raw.witness, raw.site, &global_ssh, clouds.len());
    let backup = raw.backup.and_then(|b| {
        build_backup(
            cx,
            root,
            &base,
            b,
            &global_ssh,
            &clouds,
            platform.as_ref().map(|p| p.data_dir.as_str()),
        )
    });

    check_unique_hosts(cx, root, &clouds, glb.as_ref(), site.as_ref(), backup.as_ref());
    check_ports(
        cx,
        root,
        &platform,
        &etcd,
        &governor,
        &haproxy,
        exporter.as_ref(),
        &clouds,
        glb.as_ref(),
        site.as_ref(),
        backup.as_ref(),
    );

    let secrets_file = match raw.secrets.and_then(|s| s.file) {
        Some(f) => base.join(f),
        None => {
            let stem = cx.file.file_stem().and_then(|s| s.to_str()).unwrap_or("pgha");
            base.join(format!("{stem}.secrets.yaml"))
        }
    };
    let stem = cx
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pgha")
        .to_string();
    let raw_tls = raw.tls.unwrap_or_default();
    let pki_dir = base.join(raw_tls.dir.clone().unwrap_or_else(|| format!("{stem}.pki")));
    let tls = build_tls(cx, root, &base, raw_tls);
    let templates_dir = raw.templates.map(|t| base.join(t));
    if let Some(dir) = &templates_dir {
        if !dir.is_dir() {
            cx.error(
                root,
                "templates",
                format!("the templates directory {} does not exist", dir.display()),
                "name a directory holding *.j2 files that replace the built-in templates",
            );
        }
    }

    Some(Design {
        path: cx.file.clone(),
        platform: platform?,
        clouds,
        etcd,
        governor,
        haproxy,
        exporter,
        glb: glb.flatten(),
        site,
        backup,
        secrets_file,
        pki_dir,
        tls,
        templates_dir,
        source_sha256: String::new(),
    })
}

/// A statistics page's address: an IP address; loopback unless opened.
fn stats_address(cx: &mut Checker, root: &Node, raw: Option<String>, field: &str, default: &str) -> String {
    let address = raw.unwrap_or_else(|| default.to_string());
    if address.parse::<std::net::IpAddr>().is_err() {
        cx.error(
            root,
            field,
            format!("`{address}` is not an IP address"),
            "use 127.0.0.1 (the default: the page answers on the host only) or an address of the host, \
             such as 0.0.0.0; any non-loopback address asks for the generated stats_password",
        );
    }
    address
}

/// The user's own CA needs both its certificate and its key.
fn build_tls(cx: &mut Checker, root: &Node, base: &Path, raw: RawTls) -> Tls {
    let mut check = |field: &str, file: &str| {
        let path = base.join(file);
        if let Err(e) = crate::fsutil::check_regular(&path) {
            cx.error(
                root,
                field,
                format!("cannot read {}: {e}", path.display()),
                "paths are relative to the design file; leave tls out to let pgha make the cluster's CA",
            );
        }
        path
    };
    let trust_also = raw
        .trust_also
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, f)| check(&format!("tls.trust_also[{i}]"), f))
        .collect();
    match (raw.ca_cert, raw.ca_key) {
        (None, None) => Tls { ca: None, trust_also },
        (Some(cert), Some(key)) => Tls {
            ca: Some(OwnCa {
                cert: check("tls.ca_cert", &cert),
                key: check("tls.ca_key", &key),
            }),
            trust_also,
        },
        (cert, _) => {
            let (field, other) = if cert.is_some() {
                ("tls.ca_key", "tls.ca_cert")
            } else {
                ("tls.ca_cert", "tls.ca_key")
            };
            cx.error(
                root,
                field,
                format!("{other} is set but {field} is not"),
                "name both the CA certificate and its private key (PEM), or neither",
            );
            Tls { ca: None, trust_also }
        }
    }
}

fn build_platform(cx: &mut Checker, root: &Node, raw: RawPlatform) -> Option<Platform> {
    let name = match raw.name {
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            cx.error(root, "platform.name", format!("invalid cluster name `{n}`"), NAME_HINT);
            None
        }
        None => {
            cx.error(
                root,
                "platform.name",
                "the platform has no name",
                "add `platform: {name: mycluster}`: it names the Patroni cluster",
            );
            None
        }
    };
    // Unnamed, it is the hosts' release's own, known once they are read.
    let version = raw.postgres_version.unwrap_or(crate::release::REFERENCE.postgres);
    if !(10..=99).contains(&version) {
        cx.error(
            root,
            "platform.postgres_version",
            format!("PostgreSQL {version} is not a supported major version"),
            "use a major version such as 17 (Debian 13 ships 17, Debian 12 ships 15), or leave it out to use the hosts' release's",
        );
    }
    let availability = match raw.availability.as_deref() {
        None | Some("redundant") => Availability::Redundant,
        Some("single") => Availability::Single,
        Some(other) => {
            cx.error(
                root,
                "platform.availability",
                format!("unknown availability `{other}`"),
                "use `redundant` (several computes per cloud) or `single` (one)",
            );
            Availability::Redundant
        }
    };
    let replication = match raw.replication.as_deref() {
        None | Some("asynchronous") => Replication::Asynchronous,
        Some("synchronous") => Replication::Synchronous,
        Some(other) => {
            cx.error(
                root,
                "platform.replication",
                format!("unknown replication mode `{other}`"),
                "use `asynchronous` (default) or `synchronous`",
            );
            Replication::Asynchronous
        }
    };
    let data_dir_pinned = raw.data_dir.is_some();
    let data_dir = raw.data_dir.unwrap_or_else(|| default_data_dir(version));
    if !shape::abs_path(&data_dir) {
        cx.error(
            root,
            "platform.data_dir",
            format!("data directory `{data_dir}` is not a plain absolute path"),
            "use an absolute path of letters, digits and `/._-+`, such as /var/lib/postgresql/15/pgha",
        );
    }
    let mut parameters = raw.parameters.unwrap_or_default();
    for (key, value) in &parameters {
        let field = format!("platform.parameters.{key}");
        if !shape::pg_parameter(key) {
            cx.error(
                root,
                &field,
                format!("`{key}` is not a PostgreSQL parameter name"),
                "use a name such as work_mem or pg_stat_statements.max",
            );
        } else if value.len() > 1024 {
            cx.error(root, &field, "the value is longer than 1024 characters", "shorten it");
        } else if value.chars().any(char::is_control) {
            cx.error(
                root,
                &field,
                "the value holds a control character (a line break?)",
                "a PostgreSQL setting is one line: write it without line breaks or tabs",
            );
        }
    }
    for (key, value) in DEFAULT_PARAMETERS {
        // PostgreSQL's names are case-insensitive: the design's own wins.
        if !parameters.keys().any(|k| k.eq_ignore_ascii_case(key)) {
            parameters.insert(key.to_string(), value.to_string());
        }
    }
    // No network is opened unless the design names it: clients come through
    // HAProxy and the GLB, whose hosts are allowed by address.
    let client_networks = raw.client_networks.unwrap_or_default();
    for (i, net) in client_networks.iter().enumerate() {
        if !shape::cidr(net) {
            cx.error(
                root,
                &format!("platform.client_networks[{i}]"),
                format!("`{net}` is not a network in CIDR form"),
                "write it like 10.0.0.0/8 or 192.168.1.10/32",
            );
        }
    }
    Some(Platform {
        name: name?,
        postgres_version: version,
        version_source: if raw.postgres_version.is_some() {
            VersionSource::Design
        } else {
            VersionSource::Reference
        },
        postgres_port: raw.postgres_port.unwrap_or(5432),
        bin_dir: bin_dir(version),
        data_dir,
        data_dir_pinned,
        availability,
        replication,
        client_networks,
        parameters,
    })
}

/// PostgreSQL settings pgha gives unless the design sets them.
///
/// `authentication_timeout` (60 s by default): before PostgreSQL 18 a
/// stopping postmaster never signals a "dead-end" child (one forked for a
/// connection that came while it was starting or stopping), stops
/// listening, and waits for it. A client cut off before its first packet
/// kept a fenced master's postmaster, and every local connection to it,
/// waiting the whole timeout (seen in tests/seed_scenario.rs), and Patroni
/// cannot start it again as a replica until it exits.
pub(crate) const DEFAULT_PARAMETERS: [(&str, &str); 1] = [("authentication_timeout", "10s")];

pub(super) fn default_data_dir(version: u32) -> String {
    format!("/var/lib/postgresql/{version}/pgha")
}

pub(super) fn bin_dir(version: u32) -> String {
    format!("/usr/lib/postgresql/{version}/bin")
}

fn build_etcd(cx: &mut Checker, root: &Node, raw: RawEtcd) -> Etcd {
    let etcd = Etcd {
        client_port: raw.client_port.unwrap_or(2379),
        peer_port: raw.peer_port.unwrap_or(2380),
        heartbeat_interval_ms: raw.heartbeat_interval_ms.unwrap_or(100),
        election_timeout_ms: raw.election_timeout_ms.unwrap_or(1000),
    };
    for (field, value, max) in [
        ("heartbeat_interval_ms", etcd.heartbeat_interval_ms, 10_000),
        ("election_timeout_ms", etcd.election_timeout_ms, 50_000),
    ] {
        if value == 0 || value > max {
            cx.error(
                root,
                &format!("components.etcd.{field}"),
                format!("{field} {value} is out of range (1 to {max})"),
                "etcd refuses an election timeout over 50 s; the defaults are 100 and 1000",
            );
        }
    }
    if u64::from(etcd.election_timeout_ms) < 5 * u64::from(etcd.heartbeat_interval_ms) {
        cx.error(
            root,
            "components.etcd.election_timeout_ms",
            format!(
                "election timeout {} ms is less than 5 x the heartbeat interval ({} ms)",
                etcd.election_timeout_ms, etcd.heartbeat_interval_ms
            ),
            "etcd refuses to start unless election_timeout_ms >= 5 x heartbeat_interval_ms",
        );
    }
    etcd
}

fn build_governor(cx: &mut Checker, root: &Node, raw: RawGovernor) -> Governor {
    let g = Governor {
        ttl: raw.ttl.unwrap_or(30),
        loop_wait: raw.loop_wait.unwrap_or(10),
        retry_timeout: raw.retry_timeout.unwrap_or(10),
        maximum_lag_on_failover: raw.maximum_lag_on_failover.unwrap_or(1_048_576),
        rest_port: raw.rest_port.unwrap_or(8008),
        leader_restart: match raw.leader_restart.as_deref() {
            None | Some("restart") => LeaderRestart::Restart,
            Some("switchover") => LeaderRestart::Switchover,
            Some(other) => {
                cx.error(
                    root,
                    "components.governor.leader_restart",
                    format!("unknown way to restart the leader `{other}`"),
                    "use `restart` (default: the master restarts in place) or `switchover` (to a restarted replica)",
                );
                LeaderRestart::Restart
            }
        },
        watchdog: match raw.watchdog.as_deref() {
            None | Some("automatic") => Watchdog::Automatic,
            Some("required") => Watchdog::Required,
            Some("off") => Watchdog::Off,
            Some(other) => {
                cx.error(
                    root,
                    "components.governor.watchdog",
                    format!("unknown watchdog mode `{other}`"),
                    "use `automatic` (default: where /dev/watchdog exists), `required` (a host without one is never \
                     leader) or `off`",
                );
                Watchdog::Automatic
            }
        },
    };
    for (field, value) in [
        ("ttl", g.ttl),
        ("loop_wait", g.loop_wait),
        ("retry_timeout", g.retry_timeout),
    ] {
        if value > MAX_TIMING {
            cx.error(
                root,
                &format!("components.governor.{field}"),
                format!("{field} {value} is out of range (at most {MAX_TIMING} seconds)"),
                "Patroni's timings are seconds: the defaults are ttl 30, loop_wait 10, retry_timeout 10",
            );
        }
    }
    // In u64: the sum of two u32 settings must not wrap.
    let needed = u64::from(g.loop_wait) + 2 * u64::from(g.retry_timeout);
    if needed > u64::from(g.ttl) {
        cx.error(
            root,
            "components.governor.ttl",
            format!(
                "loop_wait ({}) + 2 x retry_timeout ({}) = {needed} exceeds ttl ({})",
                g.loop_wait, g.retry_timeout, g.ttl
            ),
            "Patroni needs loop_wait + 2*retry_timeout <= ttl, or a healthy leader can lose its lock",
        );
    }
    // Patroni 4 raises smaller values to these minimums (with a warning), so
    // its live config would never match the design; Patroni 3 took them.
    for (field, value, min) in [
        ("ttl", g.ttl, 20),
        ("loop_wait", g.loop_wait, 1),
        ("retry_timeout", g.retry_timeout, 3),
    ] {
        if value < min {
            cx.error(
                root,
                &format!("components.governor.{field}"),
                format!("{field} {value} is below Patroni's minimum of {min} seconds"),
                "Patroni 4 (Debian 13) raises it to the minimum by itself; failover takes about ttl + loop_wait",
            );
        }
    }
    g
}

/// An hour: a longer Patroni timing is a typo, and keeps the sums far from overflow.
const MAX_TIMING: u32 = 3600;

fn default_ssh() -> Ssh {
    Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts: None,
    }
}

/// Applies one layer of SSH settings on top of `base`, checking the files it names.
fn layer_ssh(cx: &mut Checker, root: &Node, dir: &Path, mut ssh: Ssh, raw: Option<&RawSsh>, field: &str) -> Ssh {
    let Some(raw) = raw else { return ssh };
    if let Some(user) = &raw.user {
        if !shape::posix_user(user) {
            cx.error(
                root,
                &format!("{field}.user"),
                format!("`{user}` is not a user name"),
                "use a POSIX user name: lowercase letters, digits, `_` and `-`, starting with a letter or `_`",
            );
        }
        ssh.user = user.clone();
    }
    if let Some(port) = raw.port {
        if port == 0 {
            cx.error(
                root,
                &format!("{field}.port"),
                "port 0 is not a port",
                "use a port from 1 to 65535 (22 for sshd)",
            );
        }
        ssh.port = port;
    }
    for (value, key, slot, what) in [
        (
            &raw.identity_file,
            "identity_file",
            &mut ssh.identity_file,
            "identity file",
        ),
        (
            &raw.known_hosts,
            "known_hosts",
            &mut ssh.known_hosts,
            "known_hosts file",
        ),
    ] {
        if let Some(file) = value {
            let path = dir.join(file);
            // Checked, not opened: opening a FIFO would hang the load.
            if let Err(e) = crate::fsutil::check_regular(&path) {
                cx.error(
                    root,
                    &format!("{field}.{key}"),
                    format!("cannot read the {what} {}: {e}", path.display()),
                    "paths are relative to the file that names them; `pgha lab up` writes one for the lab",
                );
            }
            *slot = Some(path);
        }
    }
    ssh
}

#[allow(clippy::too_many_arguments)]
fn build_clouds(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    raw: Vec<RawCloud>,
    global_ssh: &Ssh,
    platform: &Option<Platform>,
    mode: Mode,
) -> Vec<Cloud> {
    if raw.is_empty() {
        cx.error(
            root,
            "clouds",
            "the design lists no clouds",
            "add at least one cloud with `status: primary`",
        );
        return Vec::new();
    }
    let mut clouds = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, rc) in raw.into_iter().enumerate() {
        let at = format!("clouds[{i}]");
        let name = match rc.name {
            Some(n) if valid_name(&n) => n,
            Some(n) => {
                cx.error(
                    root,
                    &format!("{at}.name"),
                    format!("invalid cloud name `{n}`"),
                    NAME_HINT,
                );
                continue;
            }
            None => {
                cx.error(root, &at, "this cloud has no name", "add `name: dc1`");
                continue;
            }
        };
        if let Some(first) = names.insert(name.clone(), i) {
            cx.error(
                root,
                &format!("{at}.name"),
                format!("cloud `{name}` is listed twice (also clouds[{first}])"),
                "give every cloud its own name",
            );
        }
        let status = match rc.status.as_deref() {
            Some("primary") => CloudStatus::Primary,
            Some("secondary") => CloudStatus::Secondary,
            Some(other) => {
                cx.error(
                    root,
                    &format!("{at}.status"),
                    format!("unknown cloud status `{other}`"),
                    "use `primary` or `secondary`",
                );
                CloudStatus::Secondary
            }
            None => {
                cx.error(
                    root,
                    &format!("{at}.status"),
                    format!("cloud `{name}` has no status"),
                    "add `status: primary` or `status: secondary`",
                );
                CloudStatus::Secondary
            }
        };
        let cloud_ssh = layer_ssh(
            cx,
            root,
            base,
            global_ssh.clone(),
            rc.ssh.as_ref(),
            &format!("{at}.ssh"),
        );
        let hosts = match (rc.hosts, rc.inventory) {
            (Some(_), Some(_)) => {
                cx.error(
                    root,
                    &format!("{at}.inventory"),
                    format!("cloud `{name}` has both `hosts` and `inventory`"),
                    "list the hosts in one place",
                );
                Vec::new()
            }
            (Some(hosts), None) => build_hosts(cx, root, base, hosts, &cloud_ssh, &format!("{at}.hosts")),
            (None, Some(file)) => load_inventory(cx, root, base, &file, &cloud_ssh, &format!("{at}.inventory")),
            (None, None) => {
                cx.error(
                    root,
                    &at,
                    format!("cloud `{name}` has no hosts"),
                    "add `hosts:` (name and address of each compute) or `inventory: inventories/FILE.yaml`",
                );
                Vec::new()
            }
        };
        let scaling = rc.scaling.unwrap_or(hosts.len());
        if scaling != hosts.len() && !hosts.is_empty() {
            cx.error(
                root,
                &format!("{at}.scaling"),
                format!("cloud `{name}` has scaling {scaling} but {} host(s)", hosts.len()),
                "scaling is the number of computes: list exactly that many hosts",
            );
        }
        if scaling == 0 && rc.scaling.is_some() {
            cx.error(
                root,
                &format!("{at}.scaling"),
                "scaling must be at least 1",
                "a cloud needs at least one compute",
            );
        }
        let single = platform
            .as_ref()
            .is_some_and(|p| p.availability == Availability::Single);
        if single && hosts.len() > 1 {
            cx.error(
                root,
                &format!("{at}.scaling"),
                format!(
                    "availability is `single` but cloud `{name}` has {} computes",
                    hosts.len()
                ),
                "use `availability: redundant` for more than one compute per cloud",
            );
        } else if !single && !hosts.is_empty() {
            let n = hosts.len();
            if n < 3 {
                cx.warn(
                    root,
                    &format!("{at}.scaling"),
                    format!("cloud `{name}` has {n} compute(s): its etcd cannot keep quorum if one fails"),
                    "use at least 3 computes per cloud",
                );
            } else if n > 5 {
                cx.warn(
                    root,
                    &format!("{at}.scaling"),
                    format!("cloud `{name}` has {n} computes: more than 5 adds replicas but little availability"),
                    "3 or 5 computes per cloud are usually enough",
                );
            }
            if n % 2 == 0 {
                cx.warn(
                    root,
                    &format!("{at}.scaling"),
                    format!("cloud `{name}` runs an even number ({n}) of etcd members"),
                    "an odd number tolerates as many failures with one member fewer",
                );
            }
        }
        clouds.push(Cloud {
            name,
            status,
            scaling,
            hosts,
        });
    }
    let primaries: Vec<&Cloud> = clouds.iter().filter(|c| c.is_primary()).collect();
    if primaries.is_empty() && mode == Mode::Deployable && !clouds.is_empty() {
        cx.error(
            root,
            "clouds",
            "no cloud has `status: primary`",
            "mark the cloud that serves traffic `status: primary` (after `pgha cloud make-secondary`, run `pgha cloud make-primary NAME`)",
        );
    }
    if primaries.len() > 1 {
        let names: Vec<&str> = primaries.iter().map(|c| c.name.as_str()).collect();
        let second = names[1];
        let i = clouds.iter().position(|c| c.name == second).unwrap_or(0);
        cx.error(
            root,
            &format!("clouds[{i}].status"),
            format!("more than one primary cloud ({})", names.join(", ")),
            "exactly one cloud elects the master and serves traffic; make the others `secondary`",
        );
    }
    clouds
}

fn build_hosts(cx: &mut Checker, root: &Node, dir: &Path, raw: Vec<RawHost>, ssh: &Ssh, at: &str) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (i, rh) in raw.into_iter().enumerate() {
        let here = format!("{at}[{i}]");
        let name = match rh.name {
            Some(n) if valid_name(&n) => Some(n),
            Some(n) => {
                cx.error(
                    root,
                    &format!("{here}.name"),
                    format!("invalid host name `{n}`"),
                    NAME_HINT,
                );
                None
            }
            None => {
                cx.error(root, &here, "this host has no name", "add `name: pg1`");
                None
            }
        };
        let address = match rh.address {
            Some(a) if shape::address(&a).is_some() => Some(a),
            Some(a) => {
                cx.error(
                    root,
                    &format!("{here}.address"),
                    format!("invalid address `{a}`"),
                    "use an IPv4 or IPv6 address (without brackets) or a DNS host name",
                );
                None
            }
            None => {
                cx.error(
                    root,
                    &here,
                    "this host has no address",
                    "add `address: 10.0.0.11` (IP or DNS name)",
                );
                None
            }
        };
        let ssh = layer_ssh(cx, root, dir, ssh.clone(), rh.ssh.as_ref(), &format!("{here}.ssh"));
        if let (Some(name), Some(address)) = (name, address) {
            hosts.push(Host { name, address, ssh });
        }
    }
    hosts
}

fn load_inventory(cx: &mut Checker, root: &Node, base: &Path, file: &str, ssh: &Ssh, at: &str) -> Vec<Host> {
    let path = base.join(file);
    let src = match crate::fsutil::read_text(&path, crate::fsutil::MAX_SMALL) {
        Ok(s) if s.starts_with('\u{feff}') || s.contains('\0') => {
            cx.error(
                root,
                at,
                format!("the inventory {} holds a byte order mark or a NUL byte", path.display()),
                "save it as plain UTF-8 text",
            );
            return Vec::new();
        }
        Ok(s) => s,
        Err(e) => {
            cx.error(
                root,
                at,
                format!("cannot read the inventory: {e:#}"),
                "inventory paths are relative to the design file",
            );
            return Vec::new();
        }
    };
    // Problems inside the inventory name the inventory, not the design.
    let mut inner = Checker::new(&path);
    let hosts = inner
        .parse(&src)
        .and_then(|node| {
            inner.refuse_control_characters(&node);
            let raw: Option<RawInventory> = inner.deserialize(&node);
            raw.map(|raw| {
                let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
                if raw.hosts.is_empty() {
                    inner.error(
                        &node,
                        "hosts",
                        "the inventory lists no hosts",
                        "add `hosts:` with a name and address each",
                    );
                }
                build_hosts(&mut inner, &node, &dir, raw.hosts, ssh, "hosts")
            })
        })
        .unwrap_or_default();
    cx.problems.append(&mut inner.problems);
    hosts
}

fn build_glb(cx: &mut Checker, root: &Node, base: &Path, raw: RawGlb, ssh: &Ssh, haproxy: &Haproxy) -> Option<Glb> {
    let fqdn = raw.fqdn.unwrap_or_default();
    if fqdn.is_empty() {
        cx.error(
            root,
            "glb.fqdn",
            "the GLB has no fqdn",
            "add `fqdn: db.example.com`: the name clients connect to",
        );
    } else if shape::address(&fqdn).is_none() {
        cx.error(
            root,
            "glb.fqdn",
            format!("`{fqdn}` is not a DNS name or an address"),
            "use a fully qualified name such as db.example.com (or the address clients use)",
        );
    }
    let kind = match (raw.kind.as_deref(), raw.hosts, raw.command) {
        (None | Some("haproxy"), Some(hosts), None) => {
            let hosts = build_hosts(cx, root, base, hosts, ssh, "glb.hosts");
            if hosts.is_empty() {
                cx.error(
                    root,
                    "glb.hosts",
                    "the GLB lists no hosts",
                    "add at least one host for pgha to configure",
                );
            }
            GlbKind::Haproxy { hosts }
        }
        (Some("external"), None, Some(command)) if !command.trim().is_empty() => GlbKind::External { command },
        (Some("external"), _, _) => {
            cx.error(
                root,
                "glb.command",
                "an external GLB needs `command` (and no `hosts`)",
                "pgha runs the command with PGHA_PRIMARY_CLOUD and PGHA_TARGETS when the primary cloud changes",
            );
            return None;
        }
        (None | Some("haproxy"), _, _) => {
            cx.error(
                root,
                "glb.hosts",
                "a `haproxy` GLB needs `hosts` (and no `command`)",
                "list the GLB hosts, or set `kind: external` with a `command`",
            );
            return None;
        }
        (Some(other), _, _) => {
            cx.error(
                root,
                "glb.kind",
                format!("unknown GLB kind `{other}`"),
                "use `haproxy` or `external`",
            );
            return None;
        }
    };
    Some(Glb {
        fqdn,
        port: raw.port.unwrap_or(haproxy.port),
        stats_port: raw.stats_port.unwrap_or(haproxy.stats_port),
        stats_address: stats_address(
            cx,
            root,
            raw.stats_address.or_else(|| Some(haproxy.stats_address.clone())),
            "glb.stats_address",
            "127.0.0.1",
        ),
        kind,
    })
}

/// The site lease: on with a witness or with three clouds or more.
fn build_site(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    witness: Option<RawHost>,
    raw: Option<RawSite>,
    ssh: &Ssh,
    clouds: usize,
) -> Option<Site> {
    let witness = witness.and_then(|w| {
        let before = cx.problems.len();
        let mut hosts = build_hosts(cx, root, base, vec![w], ssh, "witness");
        // One host, not a list: its fields are `witness.*`.
        for p in &mut cx.problems[before..] {
            if let Some(rest) = p.field.strip_prefix("witness[0]") {
                p.field = format!("witness{rest}");
            }
        }
        hosts.pop()
    });
    if raw.as_ref().and_then(|r| r.enabled) == Some(false) {
        if witness.is_some() {
            cx.error(
                root,
                "site.enabled",
                "a witness without the site lease would do nothing",
                "remove `witness:`, or `enabled: false` under site",
            );
        }
        return None;
    }
    if witness.is_none() && clouds < 3 {
        if raw.is_some() {
            cx.error(
                root,
                "site",
                "a site lease needs a witness host or three clouds or more",
                "add `witness:` with the name and address of a host in a third site: with two clouds alone, \
                 neither can tell a partition from the other cloud's loss",
            );
        }
        return None;
    }
    let members = clouds + usize::from(witness.is_some());
    if members.is_multiple_of(2) {
        cx.error(
            root,
            "witness",
            format!("the site members would be {members} (one per cloud plus the witness): an even count"),
            "with an odd number of clouds leave the witness out; with an even number add one: \
             a majority of an even count survives no more losses than one member fewer",
        );
    }
    let raw = raw.unwrap_or_default();
    let site = Site {
        witness,
        ttl: raw.ttl.unwrap_or(30),
        auto_failover: raw.auto_failover.unwrap_or(false),
        maximum_lag: raw.maximum_lag.unwrap_or(16 * 1024 * 1024),
        client_port: raw.client_port.unwrap_or(2479),
        peer_port: raw.peer_port.unwrap_or(2480),
        gate_port: raw.gate_port.unwrap_or(2481),
    };
    if !(15..=600).contains(&site.ttl) {
        cx.error(
            root,
            "site.ttl",
            format!("ttl {} is out of range (15 to 600 seconds)", site.ttl),
            "the lease's life: a master cut off from the other sites fences itself after a third of it, \
             and another cloud may take over after all of it (default 30)",
        );
    }
    Some(site)
}

/// Where a repository lives on its host unless the design says.
const DEFAULT_REPOSITORY_PATH: &str = "/var/lib/pgbackrest";

/// Is one of two directories inside the other (or the same)?
fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// Backups: a repository for every cloud, retention and schedule.
fn build_backup(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    raw: RawBackup,
    ssh: &Ssh,
    clouds: &[Cloud],
    data_dir: Option<&str>,
) -> Option<Backup> {
    if raw.enabled == Some(false) {
        return None;
    }
    let mut repositories = Vec::new();
    let raw_repos = raw.repositories.unwrap_or_default();
    for (i, rr) in raw_repos.into_iter().enumerate() {
        let here = format!("backup.repositories[{i}]");
        let cloud = match rr.cloud {
            Some(c) if clouds.iter().any(|x| x.name == c) => Some(c),
            Some(c) => {
                let names: Vec<&str> = clouds.iter().map(|c| c.name.as_str()).collect();
                cx.error(
                    root,
                    &format!("{here}.cloud"),
                    format!("no cloud named `{c}`"),
                    format!("name one of the design's clouds: {}", names.join(", ")),
                );
                None
            }
            None => {
                cx.error(root, &here, "this repository names no cloud", "add `cloud: dc1`");
                None
            }
        };
        let path = rr.path.unwrap_or_else(|| DEFAULT_REPOSITORY_PATH.to_string());
        if !shape::abs_path(&path) || path == "/" {
            cx.error(
                root,
                &format!("{here}.path"),
                format!("`{}` is not a plain absolute path", path.escape_debug()),
                "the repository's directory, e.g. /var/lib/pgbackrest (letters, digits and / . _ -)",
            );
        } else if let Some(data_dir) = data_dir.filter(|d| overlaps(&path, d)) {
            cx.error(
                root,
                &format!("{here}.path"),
                format!("`{path}` overlaps the data directory {data_dir}"),
                "a restore moves the data directory aside: keep the repository out of it, e.g. /var/lib/pgbackrest",
            );
        }
        let (host, on_database_host) = match rr.host {
            // On one of the cloud's database hosts: nothing else to describe.
            Some(name) => {
                if rr.name.is_some() || rr.address.is_some() || rr.ssh.is_some() {
                    cx.error(
                        root,
                        &format!("{here}.host"),
                        "this repository is both on a database host (`host`) and on a host of its own (`name`, `address`)",
                        "keep `host` for a repository on a database host (small setups), or `name` and `address` \
                         for a repository host",
                    );
                }
                let of_cloud = cloud.as_deref().and_then(|c| clouds.iter().find(|x| x.name == c));
                match of_cloud.map(|c| (c, c.hosts.iter().find(|h| h.name == name))) {
                    Some((_, Some(h))) => (Some(h.clone()), true),
                    Some((c, None)) => {
                        let names: Vec<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
                        cx.error(
                            root,
                            &format!("{here}.host"),
                            format!("`{}` is not a database host of cloud `{}`", name.escape_debug(), c.name),
                            format!("name one of its hosts: {}", names.join(", ")),
                        );
                        (None, true)
                    }
                    None => (None, true),
                }
            }
            None => {
                let before = cx.problems.len();
                let raw_host = RawHost {
                    name: rr.name,
                    address: rr.address,
                    ssh: rr.ssh,
                };
                let mut hosts = build_hosts(cx, root, base, vec![raw_host], ssh, "backup.repositories");
                // One host per entry: its fields are `backup.repositories[i].*`.
                for p in &mut cx.problems[before..] {
                    if let Some(rest) = p.field.strip_prefix("backup.repositories[0]") {
                        p.field = format!("{here}{rest}");
                    }
                }
                (hosts.pop(), false)
            }
        };
        if let (Some(cloud), Some(host)) = (cloud, host) {
            if repositories.iter().any(|r: &Repository| r.cloud == cloud) {
                cx.error(
                    root,
                    &format!("{here}.cloud"),
                    format!("cloud `{cloud}` has a repository already"),
                    "one repository per cloud",
                );
            }
            repositories.push(Repository {
                cloud,
                host,
                path,
                on_database_host,
            });
        }
    }
    for c in clouds {
        if !repositories.iter().any(|r| r.cloud == c.name) {
            cx.error(
                root,
                "backup.repositories",
                format!("cloud `{}` has no repository", c.name),
                "every cloud needs its own repository (its replicas are made from it, and it keeps \
                 a copy of the WAL archive if another data center is lost): add one with `cloud`, `name` and `address`, \
                 or with `cloud` and `host` (one of its database hosts), or `enabled: false`",
            );
        }
    }
    // The design's cloud order: repository N is pgBackRest's repoN everywhere.
    repositories.sort_by_key(|r| clouds.iter().position(|c| c.name == r.cloud));
    let schedule = raw.schedule.unwrap_or_default();
    let mut calendar = |field: &str, value: Option<String>, default: Option<&str>| -> Option<String> {
        match value.as_deref() {
            None => default.map(str::to_string),
            Some("off") => None,
            Some(v) if shape::calendar(v) => Some(v.to_string()),
            Some(v) => {
                cx.error(
                    root,
                    field,
                    format!("`{}` is not a calendar expression pgha accepts", v.escape_debug()),
                    "a systemd OnCalendar= expression such as `Sun *-*-* 01:00:00` or `daily` \
                     (letters, digits, space and * . , : / ~ -), or `off`",
                );
                None
            }
        }
    };
    let backup = Backup {
        repositories,
        retention_full: raw.retention_full.unwrap_or(2),
        retention_diff: raw.retention_diff.unwrap_or(6),
        schedule_full: calendar("backup.schedule.full", schedule.full, Some("Sun *-*-* 01:00:00")),
        schedule_diff: calendar("backup.schedule.diff", schedule.diff, Some("Mon..Sat *-*-* 01:00:00")),
        schedule_incr: calendar("backup.schedule.incr", schedule.incr, None),
        archive_queue_max: raw.archive_queue_max.unwrap_or(4 << 30),
        io_timeout: raw.io_timeout.unwrap_or(15),
        port: raw.port.unwrap_or(8432),
    };
    if !(3..=600).contains(&backup.io_timeout) {
        cx.error(
            root,
            "backup.io_timeout",
            format!("{} s is out of range (3 to 600)", backup.io_timeout),
            "seconds without progress before a pgBackRest call to an unreachable repository or host fails \
             (default 15): short, so a lost data center is reported, never waited on",
        );
    }
    for (field, value) in [
        ("backup.retention_full", backup.retention_full),
        ("backup.retention_diff", backup.retention_diff),
    ] {
        if !(1..=999).contains(&value) {
            cx.error(
                root,
                field,
                format!("{value} is out of range (1 to 999)"),
                "how many backups of this type to keep: older ones expire, with the WAL only they needed",
            );
        }
    }
    if backup.archive_queue_max < 64 << 20 {
        cx.error(
            root,
            "backup.archive_queue_max",
            format!("{} bytes is less than 64 MiB", backup.archive_queue_max),
            "the WAL (in bytes) that may wait for an unreachable repository before pgBackRest drops it \
             to keep the master writable (default 4 GiB)",
        );
    }
    Some(backup)
}

/// Host names and addresses identify a host in every command: no two alike.
fn check_unique_hosts(
    cx: &mut Checker,
    root: &Node,
    clouds: &[Cloud],
    glb: Option<&Option<Glb>>,
    site: Option<&Site>,
    backup: Option<&Backup>,
) {
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut addresses: HashMap<&str, String> = HashMap::new();
    let glb_hosts = match glb {
        Some(Some(Glb {
            kind: GlbKind::Haproxy { hosts },
            ..
        })) => hosts.as_slice(),
        _ => &[],
    };
    let located = clouds
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| {
            c.hosts
                .iter()
                .enumerate()
                .map(move |(hi, h)| (format!("clouds[{ci}].hosts[{hi}]"), h))
        })
        .chain(
            glb_hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("glb.hosts[{i}]"), h)),
        )
        .chain(
            site.and_then(|s| s.witness.as_ref())
                .map(|h| ("witness".to_string(), h)),
        )
        .chain(backup.iter().flat_map(|b| {
            b.repositories
                .iter()
                .enumerate()
                // One on a database host is that host, listed already.
                .filter(|(_, r)| !r.on_database_host)
                .map(|(i, r)| (format!("backup.repositories[{i}]"), &r.host))
        }));
    for (at, host) in located {
        if let Some(first) = names.insert(&host.name, at.clone()) {
            cx.error(
                root,
                &format!("{at}.name"),
                format!("host name `{}` is used twice (also {first})", host.name),
                "host names identify hosts in every command: make them unique",
            );
        }
        if let Some(first) = addresses.insert(&host.address, at.clone()) {
            cx.error(
                root,
                &format!("{at}.address"),
                format!("address `{}` is used twice (also {first})", host.address),
                "every compute needs its own address",
            );
        }
    }
}

/// Every port one host listens on must be distinct.
#[allow(clippy::too_many_arguments)]
fn check_ports(
    cx: &mut Checker,
    root: &Node,
    platform: &Option<Platform>,
    etcd: &Etcd,
    governor: &Governor,
    haproxy: &Haproxy,
    exporter: Option<&Exporter>,
    clouds: &[Cloud],
    glb: Option<&Option<Glb>>,
    site: Option<&Site>,
    backup: Option<&Backup>,
) {
    let Some(platform) = platform else { return };
    let mut db_ports = vec![
        ("platform.postgres_port", platform.postgres_port),
        ("components.etcd.client_port", etcd.client_port),
        ("components.etcd.peer_port", etcd.peer_port),
        ("components.governor.rest_port", governor.rest_port),
        ("components.haproxy.port", haproxy.port),
        ("components.haproxy.stats_port", haproxy.stats_port),
    ];
    if let Some(s) = site {
        db_ports.extend([
            ("site.client_port", s.client_port),
            ("site.peer_port", s.peer_port),
            ("site.gate_port", s.gate_port),
        ]);
    }
    if let Some(b) = backup {
        db_ports.push(("backup.port", b.port));
    }
    if let Some(e) = exporter {
        db_ports.push(("components.exporter.port", e.port));
    }
    let glb_ports = match glb {
        Some(Some(g)) => vec![("glb.port", g.port), ("glb.stats_port", g.stats_port)],
        _ => Vec::new(),
    };
    for (field, port) in db_ports.iter().chain(&glb_ports) {
        if *port == 0 {
            cx.error(root, field, "port 0 is not a port", "use a port from 1 to 65535");
        }
    }
    let mut by_address: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
    for host in clouds.iter().flat_map(|c| &c.hosts) {
        by_address
            .entry(&host.address)
            .or_default()
            .extend(db_ports.iter().copied());
    }
    if let Some(Some(g)) = glb {
        if let GlbKind::Haproxy { hosts } = &g.kind {
            for host in hosts {
                by_address
                    .entry(&host.address)
                    .or_default()
                    .extend([("glb.port", g.port), ("glb.stats_port", g.stats_port)]);
            }
        }
    }
    // Report each colliding pair once, not once per host.
    let mut reported = Vec::new();
    for ports in by_address.values() {
        for (i, (field_a, a)) in ports.iter().enumerate() {
            for (field_b, b) in &ports[i + 1..] {
                if a == b && field_a != field_b && !reported.contains(&(*field_a, *field_b)) {
                    reported.push((*field_a, *field_b));
                    if (*field_a, *field_b) == ("platform.postgres_port", "components.haproxy.port") {
                        continue; // reported with its own message
                    }
                    // Point at the one the user wrote; defaults have no line.
                    let (here, other) = if root.lookup(field_b).is_some() || root.lookup(field_a).is_none() {
                        (field_b, field_a)
                    } else {
                        (field_a, field_b)
                    };
                    cx.error(
                        root,
                        here,
                        format!("port {b} of `{here}` collides with `{other}` on the same host"),
                        "every component on a host needs its own port",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
