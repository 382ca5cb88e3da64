//! `pgha status`: the cluster at a glance, read over SSH only.

use serde::Serialize;

use crate::components::{etcd, haproxy, patroni, tls};
use crate::design::Design;
use crate::fleet::{Fleet, Reach};
use crate::ui;

mod findings;
mod gather;

pub(crate) use crate::components::backup::Archiving;
mod table;

pub(crate) use findings::*;
pub(crate) use gather::*;
pub(crate) use table::*;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostRow {
    pub cloud: String,
    pub cloud_status: String,
    /// The cloud is in maintenance mode (`pgha pause`): no automatic failover.
    pub paused: bool,
    pub host: String,
    pub address: String,
    /// leader | replica | sync standby | standby leader | stopped | unreachable | unknown
    pub role: String,
    pub state: String,
    pub timeline: Option<u64>,
    /// Bytes behind the leader, when known.
    pub lag_bytes: Option<u64>,
    /// A standby leader's distance to the primary cloud's master (its
    /// pg_stat_replication): the lag between clouds.
    pub cloud_lag: Option<CloudLag>,
    pub pending_restart: bool,
    /// healthy | unhealthy | unknown
    pub etcd: String,
    /// The server this host's HAProxy sends port 5000 to (`-`: none).
    pub haproxy_routes_to: String,
    /// When the host's installed TLS certificate expires (RFC 3339), when read.
    pub cert_expires: Option<String>,
    /// PostgreSQL takes writes here (asked of PostgreSQL itself, not Patroni).
    pub read_write: Option<bool>,
    /// The site lease's guards on this host, when the design has a site.
    pub site_guard: Option<SiteGuard>,
    /// The host's Debian release (`VERSION_ID` of /etc/os-release), when read.
    pub release: Option<String>,
    /// The PostgreSQL server that runs here (`17.6`), when it answered.
    pub postgres_running: Option<String>,
    /// The major version of the data directory (its `PG_VERSION`), when it has one.
    pub postgres_data: Option<u32>,
    /// Patroni's watchdog here: `held` (Patroni has the device open: it
    /// leads and is armed), `present` (a device, not held), `none` (no
    /// device), `unknown` (not asked).
    pub watchdog: String,
    /// The host holds its cloud's virtual IP (`None`: the cloud has none,
    /// or the host did not answer).
    pub holds_vip: Option<bool>,
}

impl HostRow {
    /// The major version this host's PostgreSQL runs, or its data directory holds.
    pub(crate) fn postgres_major(&self) -> Option<u32> {
        self.postgres_running
            .as_deref()
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .or(self.postgres_data)
    }

    /// `13 / 17.6`: the release and the server (its data's major when it is stopped).
    pub(crate) fn versions(&self) -> String {
        let pg = match (&self.postgres_running, self.postgres_data) {
            (Some(v), _) => v.clone(),
            (None, Some(m)) => format!("{m} (data)"),
            (None, None) => "-".to_string(),
        };
        format!("{} / {pg}", self.release.as_deref().unwrap_or("-"))
    }
}

/// The processes that keep a master inside the site lease (issue #23).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SiteGuard {
    /// `systemctl is-active pgha-site-agent`: renews the lease, fences first.
    pub agent: String,
    /// `systemctl is-active pgha-site-fence`: stops a master whose last
    /// renewal is `fence_bound_s` old, whatever became of the agent.
    pub fence: String,
    pub fence_bound_s: u32,
    /// `systemctl is-active pgha-site-gate`: HAProxy and the GLB route to
    /// this host only while its gate answers that the lease is fresh.
    pub gate: String,
    /// What the gate answers HAProxy now (200: open, 503: closed); `None`
    /// when it could not be asked.
    pub gate_answer: Option<u16>,
    /// The gate's reason, or why it could not be asked.
    pub gate_says: String,
    /// The site has answered this host: from now on silence fences.
    pub armed: bool,
}

impl SiteGuard {
    fn parse(probe: &str, bound: u32) -> SiteGuard {
        let word = |key: &str| {
            probe
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map_or("unknown".to_string(), |v| v.trim().to_string())
        };
        let answer = word("site_gate_answer ");
        let (code, says) = answer.split_once(' ').unwrap_or((answer.as_str(), ""));
        SiteGuard {
            agent: word("site_agent "),
            fence: word("site_fence "),
            fence_bound_s: bound,
            gate: word("site_gate "),
            gate_answer: code.parse().ok(),
            gate_says: if says.is_empty() { "no answer" } else { says }.to_string(),
            armed: probe.lines().any(|l| l == "site_armed"),
        }
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// Degraded: the cluster serves, but less safely. Exit code 3.
    Warning,
    /// Unsafe: a writable host where none may be (split brain). Exit code 4.
    Danger,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub level: Level,
    pub message: String,
}

/// The certificate that expires first, of those the hosts have installed.
#[derive(Debug, Serialize)]
pub(crate) struct CertExpiry {
    pub host: String,
    pub expires: String,
    pub days_left: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct GlbStatus {
    pub fqdn: String,
    pub port: u16,
    /// The cloud whose HAProxy instances the GLB forwards to.
    pub routes_to_cloud: Option<String>,
    pub up: Vec<String>,
    /// GLB hosts whose HAProxy could not be asked, with why: what they
    /// route to is not known.
    pub unread: Vec<String>,
}

/// The site lease, as the site members report it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SiteStatus {
    /// The site members answered (a majority of them: otherwise nobody can
    /// hold the lease).
    pub readable: bool,
    pub members: Vec<SiteMember>,
    /// The cloud whose master may take writes.
    pub holder: Option<String>,
    pub holder_host: Option<String>,
    /// Seconds since the holder last renewed, and left before it expires.
    pub lease_age_s: Option<i64>,
    pub lease_remaining_s: Option<i64>,
    pub ttl_s: u32,
    /// The last holder, also after its lease ended.
    pub last_holder: Option<String>,
    pub auto_failover: bool,
    /// `site.synchronous` in the design.
    pub synchronous: bool,
    /// The primary cloud's record of its replication to the others: what
    /// a failover between clouds may lose (issue 29).
    pub replication: Option<crate::components::site::SyncRecord>,
    pub replication_unreadable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SiteMember {
    pub host: String,
    /// The cloud's name, or `witness`.
    pub site: String,
    pub healthy: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub cluster: String,
    /// `components.governor.watchdog`: Patroni's watchdog mode.
    pub watchdog_mode: crate::design::Watchdog,
    pub hosts: Vec<HostRow>,
    pub glb: Option<GlbStatus>,
    /// `None` without a site lease (two clouds, no witness).
    pub site: Option<SiteStatus>,
    /// `deploy` renews a certificate within 30 days of its expiry.
    pub earliest_cert_expiry: Option<CertExpiry>,
    /// `None` without backups in the design.
    pub backup: Option<BackupStatus>,
    /// What needs attention, worst first; empty when all is well.
    pub findings: Vec<Finding>,
}

/// Backups: each repository's newest good backup, and whether the master's
/// WAL archiving fails.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct BackupStatus {
    pub repositories: Vec<RepoSummary>,
    /// From the master's `pg_stat_archiver`; `None` with no writable host.
    pub archiving: Option<Archiving>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepoSummary {
    pub cloud: String,
    pub host: String,
    /// `ok`, or pgBackRest's (or SSH's) reason.
    pub status: String,
    pub last_backup: Option<String>,
    pub last_backup_type: Option<String>,
    /// When it finished (RFC 3339), and how long ago in seconds.
    pub last_backup_at: Option<String>,
    pub last_backup_age_s: Option<i64>,
    /// The newest WAL segment in the archive.
    pub archive_newest_wal: Option<String>,
}

/// A standby's distance to its master, from a `sender NAME BYTES SECONDS` line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct CloudLag {
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

/// Exit 0 when all is well, 3 when degraded, 4 when unsafe.
fn attention(s: &Status) -> anyhow::Result<()> {
    match s.findings.first() {
        None => Ok(()),
        Some(worst) => Err(crate::error::Attention {
            code: if worst.level == Level::Danger { 4 } else { 3 },
            message: format!(
                "{} finding(s), the worst: {}",
                s.findings.len(),
                if worst.level == Level::Danger {
                    "unsafe"
                } else {
                    "degraded"
                }
            ),
        }
        .into()),
    }
}

/// A Nagios plugin's exit code and output for `s`: the worst finding on
/// the first line (what Nagios shows), every finding after it.
pub(crate) fn nagios(s: &Status) -> (u8, String) {
    let Some(worst) = s.findings.first() else {
        return (
            NAGIOS_OK,
            format!(
                "PGHA OK - cluster {}: {} hosts, nothing needs attention",
                s.cluster,
                s.hosts.len()
            ),
        );
    };
    let (code, state) = match worst.level {
        Level::Warning => (NAGIOS_WARNING, "WARNING"),
        Level::Danger => (NAGIOS_CRITICAL, "CRITICAL"),
    };
    let first = format!(
        "PGHA {state} - cluster {}: {} finding(s), the worst: {}",
        s.cluster,
        s.findings.len(),
        one_line(&worst.message)
    );
    let rest: String = s
        .findings
        .iter()
        .map(|f| format!("\n{}", one_line(&f.message)))
        .collect();
    (code, first + &rest)
}

/// Nagios's plugin exit codes.
pub(crate) const NAGIOS_OK: u8 = 0;
pub(crate) const NAGIOS_WARNING: u8 = 1;
pub(crate) const NAGIOS_CRITICAL: u8 = 2;
pub(crate) const NAGIOS_UNKNOWN: u8 = 3;

/// Nagios's line for what kept pgha from telling.
pub(crate) fn nagios_unknown(why: &str) -> String {
    format!("PGHA UNKNOWN - {}", one_line(why))
}

/// A message on one line; `|` starts Nagios's performance data, so it goes.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "/")
}

/// `status --nagios`: Nagios's answer; whatever keeps pgha from telling
/// (an SSH failure, a bad design) is UNKNOWN, never OK.
pub(crate) async fn run_nagios(design: &Design) -> anyhow::Result<()> {
    let (code, out) = match Fleet::connect(design, Reach::ALL).await {
        // No host answering is pgha's own view failing (its key, its
        // network), not the cluster's: could not tell.
        Ok(fleet) if fleet.remotes.is_empty() => {
            fleet.close().await;
            (NAGIOS_UNKNOWN, nagios_unknown("no host answers over SSH"))
        }
        Ok(fleet) => {
            let s = gather(&fleet).await;
            fleet.close().await;
            nagios(&s)
        }
        Err(e) => (NAGIOS_UNKNOWN, nagios_unknown(&format!("{e:#}"))),
    };
    ui::print(&out)?;
    if code == NAGIOS_OK {
        return Ok(());
    }
    Err(crate::error::Attention {
        code,
        message: String::new(),
    }
    .into())
}

pub(crate) async fn run(design: &Design, output: ui::Output, watch: Option<u64>) -> anyhow::Result<()> {
    let fleet = Fleet::connect(design, Reach::ALL).await?;
    let verdict = loop {
        let s = gather(&fleet).await;
        match output {
            ui::Output::Json => ui::print_json(&s)?,
            // Clear the screen between refreshes when watching.
            ui::Output::Text => ui::print(&format!(
                "{}{}",
                if watch.is_some() { "\x1b[2J\x1b[H" } else { "" },
                table(&s)
            ))?,
        }
        match watch {
            Some(secs) => tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))).await,
            None => break attention(&s),
        }
    };
    fleet.close().await;
    verdict
}

#[cfg(test)]
mod tests;
