//! The design: what the DBA asked for, checked and with every default filled in.
//!
//! `raw` mirrors the YAML; `validate` turns it into the types below. Nothing
//! downstream ever looks at raw YAML.

pub mod edit;
pub mod init;
pub mod objects;
pub mod raw;
pub(crate) mod shape;
mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Problem;

pub use validate::{load, load_mode, load_str, load_str_mode, Loaded, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloudStatus {
    Primary,
    Secondary,
}

impl CloudStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudStatus::Primary => "primary",
            CloudStatus::Secondary => "secondary",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Single,
    Redundant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    Asynchronous,
    Synchronous,
}

#[derive(Debug, Clone, Serialize)]
pub struct Design {
    /// The design file, as given on the command line.
    pub path: PathBuf,
    pub platform: Platform,
    pub clouds: Vec<Cloud>,
    pub etcd: Etcd,
    pub governor: Governor,
    pub haproxy: Haproxy,
    /// The PostgreSQL metrics exporter on every database host (on unless disabled).
    pub exporter: Option<Exporter>,
    /// The connection pooler on every database host (off unless enabled).
    pub pgbouncer: Option<Pgbouncer>,
    pub glb: Option<Glb>,
    /// The site lease across clouds: with a witness, or three clouds or more.
    pub site: Option<Site>,
    /// Backups and the WAL archive (pgBackRest): a repository host per cloud.
    pub backup: Option<Backup>,
    /// Databases, roles and access rules pgha keeps on the master.
    pub objects: objects::Objects,
    /// Where the passwords live (0600); generated on first deploy.
    pub secrets_file: PathBuf,
    /// The cluster PKI's directory (0700): CA, host certificates, keys.
    pub pki_dir: PathBuf,
    pub tls: Tls,
    /// A directory whose `*.j2` files replace the embedded templates.
    pub templates_dir: Option<PathBuf>,
    /// The SHA-256 of the text this design was read from: a changing
    /// command stops when the file no longer says the same.
    pub source_sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    /// The cluster name: Patroni's scope, etcd's key prefix.
    pub name: String,
    /// The design's, or else the hosts' release's (see [`Design::for_postgres`]).
    pub postgres_version: u32,
    #[serde(skip)]
    pub version_source: VersionSource,
    pub postgres_port: u16,
    pub data_dir: String,
    #[serde(skip)]
    pub data_dir_pinned: bool,
    pub bin_dir: String,
    pub availability: Availability,
    pub replication: Replication,
    pub client_networks: Vec<String>,
    pub parameters: BTreeMap<String, String>,
}

/// Where `postgres_version` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The design names it: the hosts' release does not change it.
    Design,
    /// The design names none and the hosts were not read yet: the reference
    /// release's, until [`Design::for_hosts`] learns theirs.
    Reference,
    /// The release the hosts run ships it (no host runs Patroni yet).
    Hosts,
    /// Patroni runs it on the hosts (its `bin_dir`), whatever their release.
    Running,
}

/// What a database host runs, as [`Design::for_hosts`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRuns {
    /// `$ID $VERSION_ID`: `debian 13`.
    pub os: String,
    /// The PostgreSQL major Patroni is configured for there, if any.
    pub configured: Option<u32>,
}

impl VersionSource {
    /// Why the version is what it is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            VersionSource::Design => "platform.postgres_version",
            VersionSource::Reference => "Debian 13's, as platform.postgres_version is not set and no host was read",
            VersionSource::Hosts => "the hosts' release's own, as platform.postgres_version is not set",
            VersionSource::Running => "the one Patroni runs on the hosts, as platform.postgres_version is not set",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cloud {
    pub name: String,
    pub status: CloudStatus,
    pub scaling: usize,
    pub hosts: Vec<Host>,
    /// A virtual IP on the cloud's leader (vip-manager), for sites without
    /// a load balancer.
    pub vip: Option<Vip>,
}

/// A cloud's virtual IP: held by the host whose Patroni leads the cloud
/// (the master, or a standby cloud's standby leader), moved by vip-manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vip {
    /// An IP address (never a name) on the hosts' network.
    pub address: String,
    pub netmask: u8,
    pub interface: String,
}

impl Cloud {
    pub fn is_primary(&self) -> bool {
        self.status == CloudStatus::Primary
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub ssh: Ssh,
}

/// SSH settings after layering global -> cloud -> host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    pub client_port: u16,
    pub peer_port: u16,
    pub heartbeat_interval_ms: u32,
    pub election_timeout_ms: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Governor {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub maximum_lag_on_failover: u64,
    pub rest_port: u16,
    /// How a parameter change that needs a restart reaches the primary
    /// cloud's master, after its replicas restarted.
    pub leader_restart: LeaderRestart,
    /// Patroni's use of the host's watchdog device (`/dev/watchdog`).
    pub watchdog: Watchdog,
}

/// Patroni's watchdog: a leader whose loop stalls past its key's ttl (less
/// a margin) resets the host before a replica may promote, a fence that
/// outlives Patroni and the site agent both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Watchdog {
    /// Used where the device exists and Patroni may open it, else not.
    Automatic,
    /// A host without a usable device never becomes leader.
    Required,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderRestart {
    /// Restart it in place: writes pause while PostgreSQL restarts.
    Restart,
    /// Switch over to a restarted replica first; the old master restarts as a replica.
    Switchover,
}

/// Metrics: Debian's prometheus-postgres-exporter, and HAProxy's gateway
/// to etcd's, Patroni's and its own, each served over TLS to clients with
/// a certificate of the metrics CA.
#[derive(Debug, Clone, Serialize)]
pub struct Exporter {
    pub port: u16,
    /// HAProxy's metrics frontend on every database host.
    pub gateway_port: u16,
    /// The cloud's etcd member's metrics listener, on loopback only.
    pub etcd_metrics_port: u16,
    /// The site member's, on loopback only.
    pub site_metrics_port: u16,
    /// Debian's node exporter (the host's disks, memory, load, and pgha's
    /// own textfile), on loopback only.
    pub node_port: u16,
}

/// PgBouncer on every database host: clients' connections pooled onto
/// few to the master, through the host's own HAProxy read-write port.
#[derive(Debug, Clone, Serialize)]
pub struct Pgbouncer {
    pub port: u16,
    pub pool_mode: PoolMode,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
    /// 0: no limit.
    pub max_db_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// A server connection per transaction: most clients on fewest connections.
    Transaction,
    /// A server connection per client session (session state kept).
    Session,
}

#[derive(Debug, Clone, Serialize)]
pub struct Haproxy {
    /// Read-write: the master, wherever it is.
    pub port: u16,
    pub stats_port: u16,
    /// Where the statistics page listens: loopback by default; any other
    /// address asks for the generated `stats_password`.
    pub stats_address: String,
    /// Read-only: the replicas of the cloud that has the master.
    pub read_only_port: u16,
    /// This cloud's own replicas (the hop behind `read_only_port` with a
    /// site lease; clients' too with `local_reads`).
    pub local_read_port: u16,
    /// Clients may read from their own cloud's members on `local_read_port`.
    pub local_reads: bool,
    /// Bytes a replica may lag its leader and stay in a read-only pool.
    pub replica_max_lag: u64,
    /// With no replica in the pool, read-only clients reach the master.
    pub read_only_fallback: bool,
}

/// Whether a statistics page on `address` needs a password.
pub fn stats_open(address: &str) -> bool {
    !address.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The site lease (see `components::site`): a cross-site etcd cluster of one
/// member per cloud (its first host) plus the witness holds which cloud is
/// primary, as a lease that cloud's master renews.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    /// A host outside the clouds, in a third site: it only runs a member.
    pub witness: Option<Host>,
    /// Seconds the lease lives without a renewal.
    pub ttl: u32,
    /// A secondary cloud takes an expired lease and promotes by itself.
    pub auto_failover: bool,
    /// Bytes of WAL a secondary cloud may miss and still take the lease.
    pub maximum_lag: u64,
    pub client_port: u16,
    pub peer_port: u16,
    /// The site gate on every database host (TLS): HAProxy and the GLB
    /// route to a master only while it answers 200 there.
    pub gate_port: u16,
    /// Every commit of the primary cloud's master waits for a member of
    /// another cloud (issue 29), as long as the site records it so.
    pub synchronous: bool,
    /// Seconds a commit may wait for that cloud before the master records
    /// "asynchronous since" at the site and goes on without it.
    pub synchronous_timeout: u32,
}

impl Site {
    /// Seconds a master goes without a renewal before it fences itself:
    /// a third of the lease, so it is down well before the lease can expire.
    pub fn fence_after(&self) -> f64 {
        f64::from(self.ttl) / 3.0
    }
}

/// Backups and the WAL archive with pgBackRest (see `components::backup`).
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    /// One per cloud, in the design's cloud order.
    pub repositories: Vec<Repository>,
    /// Full backups kept (older ones expire with their WAL).
    pub retention_full: u32,
    /// Differential backups kept.
    pub retention_diff: u32,
    /// systemd calendar expressions (OnCalendar=); `None`: not scheduled.
    pub schedule_full: Option<String>,
    pub schedule_diff: Option<String>,
    pub schedule_incr: Option<String>,
    /// Bytes of WAL waiting to be archived before pgBackRest drops it
    /// (keeping the master writable; point-in-time recovery then has a gap).
    pub archive_queue_max: u64,
    /// Seconds without progress after which a pgBackRest call to another
    /// host fails (pgBackRest's `io-timeout`).
    pub io_timeout: u32,
    /// The pgBackRest TLS server's port on database and repository hosts.
    pub port: u16,
}

/// A cloud's repository: where its backups and its copy of the WAL archive
/// live. On a host of its own, or (small setups) under a path of one of the
/// cloud's database hosts.
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    pub cloud: String,
    pub host: Host,
    /// The repository's directory on its host.
    pub path: String,
    /// `host` is one of the cloud's database hosts, not a machine of its own.
    pub on_database_host: bool,
}

impl Backup {
    pub fn repository(&self, cloud: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.cloud == cloud)
    }
}

/// TLS settings: which CA signs the hosts' certificates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tls {
    /// The user's own CA; `None`: pgha's generated one in the PKI directory.
    pub ca: Option<OwnCa>,
    /// More CA certificates every host trusts (replacing one's own CA).
    pub trust_also: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OwnCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Glb {
    pub fqdn: String,
    pub port: u16,
    /// Read-only: the replicas of the cloud that has the master.
    pub read_only_port: u16,
    /// Pooled read-write: the database hosts' PgBouncer.
    pub pooled_port: u16,
    pub stats_port: u16,
    pub stats_address: String,
    pub kind: GlbKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GlbKind {
    /// HAProxy hosts that pgha configures to forward to the primary cloud.
    Haproxy { hosts: Vec<Host> },
    /// Someone else's load balancer: pgha runs this command (with
    /// PGHA_PRIMARY_CLOUD and PGHA_TARGETS set) when the primary cloud changes.
    External { command: String },
}

impl Design {
    /// The roles and databases pgha keeps on the master: the design's,
    /// and PgBouncer's own role when the pooler is on.
    pub fn managed_objects(&self) -> objects::Objects {
        let mut o = self.objects.clone();
        if self.pgbouncer.is_some() {
            o.roles.push(objects::pooler_role());
        }
        o
    }

    /// This design with PostgreSQL `version` where it names none: the
    /// version, its binaries and (unless named) its data directory.
    pub fn for_postgres(&self, version: u32) -> Design {
        let mut d = self.clone();
        let p = &mut d.platform;
        if p.version_source != VersionSource::Design {
            p.version_source = VersionSource::Hosts;
            p.postgres_version = version;
            p.bin_dir = validate::bin_dir(version);
            if !p.data_dir_pinned {
                p.data_dir = validate::default_data_dir(version);
            }
        }
        d
    }

    /// This design at PostgreSQL `version` whatever it names: a major
    /// upgrade's old and new cluster. A data directory the design names
    /// stays the same for both.
    pub fn with_major(&self, version: u32) -> Design {
        let mut d = self.clone();
        let p = &mut d.platform;
        p.postgres_version = version;
        p.bin_dir = validate::bin_dir(version);
        if !p.data_dir_pinned {
            p.data_dir = validate::default_data_dir(version);
        }
        d
    }

    /// This design for its database hosts as they run (`hosts`: host name ->
    /// what it runs, for the hosts that answered). An unnamed PostgreSQL
    /// version is the one Patroni runs on the hosts (a cluster keeps its
    /// major across a release upgrade); for a cluster not yet set up, their
    /// release's. Hosts that run, or whose releases ship, different versions
    /// need the version named.
    pub fn for_hosts(&self, hosts: &BTreeMap<String, HostRuns>) -> Result<Design, crate::error::Usage> {
        if self.platform.version_source == VersionSource::Design {
            return Ok(self.clone());
        }
        let running = self.versions_of(hosts, |h| Ok(h.configured))?;
        let (by_version, source) = if running.is_empty() {
            let shipped = self.versions_of(hosts, |h| match crate::release::of(&h.os) {
                Some(r) => Ok(Some(r.postgres)),
                None => Err(format!(
                    "runs `{}`: pgha knows which PostgreSQL {} ship, not this release's\n  \
                     hint: name the version in the design (platform.postgres_version) and pgha installs that one",
                    h.os,
                    crate::release::supported_list(),
                )),
            })?;
            (shipped, VersionSource::Hosts)
        } else {
            (running, VersionSource::Running)
        };
        match by_version.len() {
            0 => Ok(self.clone()),
            1 => {
                let mut d = self.for_postgres(*by_version.keys().next().expect("one version"));
                d.platform.version_source = source;
                Ok(d)
            }
            _ => {
                let groups: Vec<String> = by_version
                    .iter()
                    .map(|(v, hosts)| format!("PostgreSQL {v} on {}", hosts.join(", ")))
                    .collect();
                let what = if source == VersionSource::Running {
                    "Patroni runs different PostgreSQL versions on the hosts"
                } else {
                    "the hosts' releases ship different PostgreSQL versions"
                };
                Err(crate::error::Usage(format!(
                    "{what} ({}): every host of a cluster runs one major version\n  \
                     hint: name it in the design (platform.postgres_version) and make it installable on every host \
                     (the PostgreSQL project's apt repository, apt.postgresql.org, ships every version for both releases)",
                    groups.join("; ")
                )))
            }
        }
    }

    /// The database hosts that answered, by the version `of` gives each
    /// (none: not counted); an error names the host.
    fn versions_of(
        &self,
        hosts: &BTreeMap<String, HostRuns>,
        of: impl Fn(&HostRuns) -> Result<Option<u32>, String>,
    ) -> Result<BTreeMap<u32, Vec<String>>, crate::error::Usage> {
        let mut by_version: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for h in self.clouds.iter().flat_map(|c| &c.hosts) {
            let Some(runs) = hosts.get(&h.name) else { continue };
            let version = of(runs).map_err(|e| crate::error::Usage(format!("{} {e}", h.name)))?;
            if let Some(v) = version {
                by_version
                    .entry(v)
                    .or_default()
                    .push(format!("{} ({})", h.name, runs.os));
            }
        }
        Ok(by_version)
    }

    pub fn primary_clouds(&self) -> impl Iterator<Item = &Cloud> {
        self.clouds.iter().filter(|c| c.is_primary())
    }

    /// Clouds in deployment order: primary first, then secondary, each in
    /// the order the design lists them.
    pub fn clouds_in_order(&self) -> Vec<&Cloud> {
        let (mut first, rest): (Vec<&Cloud>, Vec<&Cloud>) = self.clouds.iter().partition(|c| c.is_primary());
        first.extend(rest);
        first
    }

    pub fn cloud(&self, name: &str) -> Option<&Cloud> {
        self.clouds.iter().find(|c| c.name == name)
    }

    pub fn glb_hosts(&self) -> &[Host] {
        match &self.glb {
            Some(Glb {
                kind: GlbKind::Haproxy { hosts },
                ..
            }) => hosts,
            _ => &[],
        }
    }

    /// Every host pgha manages, with its cloud (`None` for GLB hosts).
    pub fn all_hosts(&self) -> impl Iterator<Item = (Option<&Cloud>, &Host)> {
        let db = self
            .clouds
            .iter()
            .flat_map(|c| c.hosts.iter().map(move |h| (Some(c), h)));
        db.chain(self.glb_hosts().iter().map(|h| (None, h)))
    }

    pub fn find_host(&self, name: &str) -> Option<(Option<&Cloud>, &Host)> {
        self.all_hosts().find(|(_, h)| h.name == name || h.address == name)
    }

    /// Whether a site member runs on the host named `name`.
    pub fn is_site_member(&self, name: &str) -> bool {
        self.site_members().iter().any(|(_, h)| h.name == name)
    }

    /// The site members: each cloud's first host, then the witness.
    pub fn site_members(&self) -> Vec<(Option<&Cloud>, &Host)> {
        let Some(site) = &self.site else { return Vec::new() };
        let mut members: Vec<(Option<&Cloud>, &Host)> = self
            .clouds
            .iter()
            .filter_map(|c| c.hosts.first().map(|h| (Some(c), h)))
            .collect();
        members.extend(site.witness.iter().map(|w| (None, w)));
        members
    }

    /// The repositories' hosts of their own (not on a database host), in
    /// cloud order: the machines a repository adds to the cluster.
    pub fn repository_hosts(&self) -> impl Iterator<Item = &Host> {
        self.backup
            .iter()
            .flat_map(|b| b.repositories.iter().filter(|r| !r.on_database_host).map(|r| &r.host))
    }

    /// Is `name` a repository host?
    pub fn is_repository(&self, name: &str) -> bool {
        self.repository_on(name).is_some()
    }

    /// The repository on host `name`.
    pub fn repository_on(&self, name: &str) -> Option<&Repository> {
        self.backup
            .iter()
            .flat_map(|b| &b.repositories)
            .find(|r| r.host.name == name)
    }

    pub fn witness(&self) -> Option<&Host> {
        self.site.as_ref().and_then(|s| s.witness.as_ref())
    }

    /// The directory the design file is in; relative paths in it start here.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }
}

/// Warnings that did not stop the load.
pub type Warnings = Vec<Problem>;
