//! RawDesign -> Design: defaults, layering and every check, each problem
//! located in the file that caused it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::raw::*;
use super::shape;
use super::yaml::{self, Node, Span};
use super::*;
use crate::error::{Invalid, Problem, Severity};

mod backup;
mod checks;
mod clouds;
mod glb;
mod objects;
mod platform;
mod site;
mod tls;

use backup::*;
use checks::*;
use clouds::*;
use glb::*;
use objects::build_objects;
use platform::*;
pub(in crate::design) use platform::{bin_dir, default_data_dir};
use site::*;
use tls::*;

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
    let haproxy = build_haproxy(cx, root, components.haproxy.unwrap_or_default(), platform.as_ref());

    let ex = components.exporter.unwrap_or_default();
    let exporter = ex.enabled.unwrap_or(true).then(|| Exporter {
        port: ex.port.unwrap_or(9187),
        gateway_port: ex.gateway_port.unwrap_or(9188),
        etcd_metrics_port: ex.etcd_metrics_port.unwrap_or(2381),
        site_metrics_port: ex.site_metrics_port.unwrap_or(2482),
        node_port: ex.node_port.unwrap_or(9100),
    });

    let pgbouncer = build_pgbouncer(cx, root, components.pgbouncer.unwrap_or_default());

    let global_ssh = layer_ssh(cx, root, &base, default_ssh(), raw.ssh.as_ref(), "ssh");
    let clouds = build_clouds(cx, root, &base, raw.clouds, &global_ssh, &platform, mode);
    let glb = raw
        .glb
        .map(|g| build_glb(cx, root, &base, g, &global_ssh, &haproxy, pgbouncer.as_ref()));

    let site = build_site(cx, root, &base, raw.witness, raw.site, &global_ssh, clouds.len());
    if let (Some(s), Some(p)) = (&site, &platform) {
        check_synchronous_site(cx, root, s, p);
    }
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

    if let (Some(p), Some(pl)) = (&pgbouncer, &platform) {
        // Every host's PgBouncer connects to the one master.
        let hosts: u64 = clouds.iter().map(|c| c.hosts.len() as u64).sum();
        let max = pl
            .parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("max_connections"))
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(100);
        let most = u64::from(p.default_pool_size) * hosts;
        if most > max {
            cx.warn(
                root,
                "components.pgbouncer.default_pool_size",
                format!(
                    "{hosts} PgBouncers may open {most} server connections to the master for one database and role, \
                     more than its max_connections ({max})"
                ),
                "lower default_pool_size, set max_db_connections, or raise platform.parameters.max_connections",
            );
        }
    }
    let objects = build_objects(
        cx,
        root,
        raw.roles.unwrap_or_default(),
        raw.databases.unwrap_or_default(),
        raw.access,
    );
    check_unique_hosts(cx, root, &clouds, glb.as_ref(), site.as_ref(), backup.as_ref());
    check_ports(
        cx,
        root,
        &platform,
        &etcd,
        &governor,
        &haproxy,
        exporter.as_ref(),
        pgbouncer.as_ref(),
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
        pgbouncer,
        glb: glb.flatten(),
        site,
        backup,
        objects,
        secrets_file,
        pki_dir,
        tls,
        templates_dir,
        source_sha256: String::new(),
    })
}

/// HAProxy's ports: clients' (never PostgreSQL's own) and its statistics page.
fn build_haproxy(cx: &mut Checker, root: &Node, hp: RawHaproxy, platform: Option<&Platform>) -> Haproxy {
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
        read_only_port: hp.read_only_port.unwrap_or(5001),
        local_read_port: hp.local_read_port.unwrap_or(5003),
        local_reads: hp.local_reads.unwrap_or(false),
        replica_max_lag: hp.replica_max_lag.unwrap_or(16 * 1024 * 1024),
        read_only_fallback: hp.read_only_fallback.unwrap_or(true),
    };
    if haproxy.replica_max_lag == 0 {
        cx.error(
            root,
            "components.haproxy.replica_max_lag",
            "a replica_max_lag of 0 bytes leaves every replica out of the read-only pool",
            "give the bytes a replica may lag and still serve reads (default 16777216, 16 MiB)",
        );
    }
    if platform.is_some_and(|p| p.postgres_port == haproxy.port) {
        cx.error(
            root,
            "components.haproxy.port",
            format!("the HAProxy port {} is the PostgreSQL port", haproxy.port),
            "clients reach the master through HAProxy on its own port (default 5000); PostgreSQL keeps its port",
        );
    }
    haproxy
}

/// PgBouncer: off unless enabled; transaction pooling by default.
fn build_pgbouncer(cx: &mut Checker, root: &Node, raw: RawPgbouncer) -> Option<Pgbouncer> {
    if !raw.enabled.unwrap_or(false) {
        return None;
    }
    let pool_mode = match raw.pool_mode.as_deref() {
        None | Some("transaction") => PoolMode::Transaction,
        Some("session") => PoolMode::Session,
        Some(other) => {
            cx.error(
                root,
                "components.pgbouncer.pool_mode",
                format!("unknown pool mode `{other}`"),
                "use `transaction` (the default: a server connection per transaction) or `session`",
            );
            PoolMode::Transaction
        }
    };
    let p = Pgbouncer {
        port: raw.port.unwrap_or(6432),
        pool_mode,
        max_client_conn: raw.max_client_conn.unwrap_or(1000),
        default_pool_size: raw.default_pool_size.unwrap_or(20),
        max_db_connections: raw.max_db_connections.unwrap_or(0),
    };
    for (field, value) in [
        ("components.pgbouncer.max_client_conn", p.max_client_conn),
        ("components.pgbouncer.default_pool_size", p.default_pool_size),
    ] {
        if value == 0 || value > 100_000 {
            cx.error(
                root,
                field,
                format!("{value} is out of range"),
                "give a number from 1 to 100000",
            );
        }
    }
    Some(p)
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

#[cfg(test)]
mod tests;

/// Synchronous replication between clouds sets synchronous_standby_names
/// itself (the master's site agent, through Patroni's dynamic config).
/// Patroni's synchronous_mode owns that setting inside a cloud and would
/// overwrite it; PostgreSQL has one list, so a commit cannot wait for both a
/// member of its own cloud and one of another.
fn check_synchronous_site(cx: &mut Checker, root: &Node, site: &Site, platform: &Platform) {
    if !site.synchronous {
        return;
    }
    if platform.replication == Replication::Synchronous {
        cx.error(
            root,
            "site.synchronous",
            "synchronous replication between clouds and `platform.replication: synchronous` both want \
             synchronous_standby_names",
            "choose one: `site.synchronous: true` makes every commit wait for another cloud; \
             `replication: synchronous` for a member of the same cloud",
        );
    }
    if let Some((_, v)) = platform
        .parameters
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("synchronous_commit"))
        // PostgreSQL takes false, no and 0 for off too.
        .filter(|(_, v)| {
            ["off", "false", "no", "0", "local", "remote_write"].contains(&v.to_ascii_lowercase().as_str())
        })
    {
        // remote_write confirms once the other cloud's OS has the WAL, not
        // its disk: that host's crash plus the primary cloud's loss loses it.
        let why = if v.eq_ignore_ascii_case("remote_write") {
            "before another cloud has flushed the WAL to its disk"
        } else {
            "without waiting for another cloud"
        };
        cx.error(
            root,
            "platform.parameters.synchronous_commit",
            format!("synchronous_commit `{v}` confirms commits {why}"),
            "remove it (PostgreSQL's `on` waits for the other cloud's flush) or leave `site.synchronous` off",
        );
    }
    if platform
        .parameters
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("synchronous_standby_names"))
    {
        cx.error(
            root,
            "platform.parameters.synchronous_standby_names",
            "with `site.synchronous: true` the site agent sets synchronous_standby_names",
            "remove it from platform.parameters",
        );
    }
}
