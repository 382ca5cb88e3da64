//! The design file exactly as written: every field optional, no meaning
//! attached yet. `validate` turns it into a `Design`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawDesign {
    pub platform: Option<RawPlatform>,
    pub ssh: Option<RawSsh>,
    pub secrets: Option<RawSecrets>,
    pub tls: Option<RawTls>,
    pub templates: Option<String>,
    #[serde(default)]
    pub clouds: Vec<RawCloud>,
    pub components: Option<RawComponents>,
    pub glb: Option<RawGlb>,
    pub witness: Option<RawHost>,
    pub site: Option<RawSite>,
    pub backup: Option<RawBackup>,
    pub roles: Option<Vec<RawRole>>,
    pub databases: Option<Vec<RawDatabase>>,
    pub access: Option<Vec<RawAccess>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPlatform {
    pub name: Option<String>,
    pub postgres_version: Option<u32>,
    pub postgres_port: Option<u16>,
    pub data_dir: Option<String>,
    pub availability: Option<String>,
    pub replication: Option<String>,
    pub client_networks: Option<Vec<String>>,
    pub parameters: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawSsh {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub known_hosts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSecrets {
    pub file: Option<String>,
}

/// The cluster PKI: pgha's own CA by default, or the user's.
#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub trust_also: Option<Vec<String>>,
    pub dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCloud {
    pub name: Option<String>,
    pub status: Option<String>,
    pub scaling: Option<usize>,
    pub hosts: Option<Vec<RawHost>>,
    pub inventory: Option<String>,
    pub ssh: Option<RawSsh>,
    pub vip: Option<RawVip>,
}

/// A cloud's virtual IP (vip-manager on its database hosts).
#[derive(Debug, Default, Deserialize)]
pub struct RawVip {
    pub address: Option<String>,
    pub netmask: Option<u8>,
    pub interface: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHost {
    pub name: Option<String>,
    pub address: Option<String>,
    pub ssh: Option<RawSsh>,
}

/// An inventory file: the hosts of one cloud, kept apart from the design.
#[derive(Debug, Default, Deserialize)]
pub struct RawInventory {
    #[serde(default)]
    pub hosts: Vec<RawHost>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawComponents {
    pub etcd: Option<RawEtcd>,
    pub governor: Option<RawGovernor>,
    pub haproxy: Option<RawHaproxy>,
    pub exporter: Option<RawExporter>,
    pub pgbouncer: Option<RawPgbouncer>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPgbouncer {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub pool_mode: Option<String>,
    pub max_client_conn: Option<u32>,
    pub default_pool_size: Option<u32>,
    pub max_db_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawExporter {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub gateway_port: Option<u16>,
    pub etcd_metrics_port: Option<u16>,
    pub site_metrics_port: Option<u16>,
    pub node_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawEtcd {
    pub client_port: Option<u16>,
    pub peer_port: Option<u16>,
    pub heartbeat_interval_ms: Option<u32>,
    pub election_timeout_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawGovernor {
    pub ttl: Option<u32>,
    pub loop_wait: Option<u32>,
    pub retry_timeout: Option<u32>,
    pub maximum_lag_on_failover: Option<u64>,
    pub rest_port: Option<u16>,
    pub leader_restart: Option<String>,
    pub watchdog: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHaproxy {
    pub port: Option<u16>,
    pub stats_port: Option<u16>,
    pub stats_address: Option<String>,
    pub read_only_port: Option<u16>,
    pub local_read_port: Option<u16>,
    pub local_reads: Option<bool>,
    pub replica_max_lag: Option<u64>,
    pub read_only_fallback: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawGlb {
    pub fqdn: Option<String>,
    pub port: Option<u16>,
    pub kind: Option<String>,
    pub hosts: Option<Vec<RawHost>>,
    pub command: Option<String>,
    pub stats_port: Option<u16>,
    pub stats_address: Option<String>,
    pub read_only_port: Option<u16>,
    pub pooled_port: Option<u16>,
}

/// The site lease: which cloud may have a writable master, held in a small
/// etcd cluster across the sites (one member per cloud plus the witness).
#[derive(Debug, Default, Deserialize)]
pub struct RawSite {
    pub enabled: Option<bool>,
    pub ttl: Option<u32>,
    pub auto_failover: Option<bool>,
    pub maximum_lag: Option<u64>,
    pub client_port: Option<u16>,
    pub peer_port: Option<u16>,
    pub gate_port: Option<u16>,
    pub synchronous: Option<bool>,
    pub synchronous_timeout: Option<u32>,
}

/// Backups with pgBackRest: a repository host per cloud.
#[derive(Debug, Default, Deserialize)]
pub struct RawBackup {
    pub enabled: Option<bool>,
    pub repositories: Option<Vec<RawRepository>>,
    pub retention_full: Option<u32>,
    pub retention_diff: Option<u32>,
    pub schedule: Option<RawSchedule>,
    pub archive_queue_max: Option<u64>,
    pub io_timeout: Option<u32>,
    pub port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRepository {
    pub cloud: Option<String>,
    /// A host of its own: its name, address and SSH settings.
    pub name: Option<String>,
    pub address: Option<String>,
    pub ssh: Option<RawSsh>,
    /// Or one of the cloud's database hosts, by name (small setups).
    pub host: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSchedule {
    pub full: Option<String>,
    pub diff: Option<String>,
    pub incr: Option<String>,
}

/// A role the design declares.
#[derive(Debug, Default, Deserialize)]
pub struct RawRole {
    pub name: Option<String>,
    pub login: Option<bool>,
    pub inherit: Option<bool>,
    pub createdb: Option<bool>,
    pub createrole: Option<bool>,
    pub bypassrls: Option<bool>,
    pub connection_limit: Option<i32>,
    pub valid_until: Option<String>,
    pub member_of: Option<Vec<String>>,
    /// `secrets`, `none` or `env:VARIABLE`.
    pub password: Option<String>,
    /// `present` or `absent`.
    pub state: Option<String>,
}

/// A database the design declares.
#[derive(Debug, Default, Deserialize)]
pub struct RawDatabase {
    pub name: Option<String>,
    pub owner: Option<String>,
    pub encoding: Option<String>,
    pub locale: Option<String>,
    pub extensions: Option<Vec<String>>,
}

/// A pg_hba rule: a database and a role, both names or `all`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAccess {
    pub database: Option<String>,
    pub role: Option<String>,
}
