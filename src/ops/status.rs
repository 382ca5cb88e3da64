//! `pgha status`: the cluster at a glance, read over SSH only.

use serde::Serialize;

use crate::components::{etcd, haproxy, patroni, tls};
use crate::design::Design;
use crate::fleet::Fleet;
use crate::ui;

#[derive(Debug, Serialize)]
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
    /// Patroni's watchdog here: `held` (Patroni has the device open: it
    /// leads and is armed), `present` (a device, not held), `none` (no
    /// device), `unknown` (not asked).
    pub watchdog: String,
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

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Archiving {
    pub host: String,
    pub last_archived_wal: Option<String>,
    pub last_archived_age_s: Option<i64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// The last attempt failed: the WAL waits on the master (pgBackRest
    /// drops it past `backup.archive_queue_max`, keeping the master writable).
    pub failing: bool,
}

/// A good backup older than this is worth a warning (a weekly full plus
/// daily differentials never leaves one this old).
const BACKUP_STALE_S: i64 = 8 * 86_400;

/// What the backups say: archiving that fails, a repository that cannot be
/// read or holds no backup, a newest backup older than 8 days.
pub(crate) fn backup_findings(b: &BackupStatus) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(a) = b.archiving.as_ref().filter(|a| a.failing) {
        out.push(Finding {
            level: Level::Warning,
            message: format!(
                "WAL archiving fails on {} ({} failures, last at {}): point-in-time recovery stops at the last archived \
                 segment ({}); the master keeps writing, its WAL waits up to backup.archive_queue_max; `pgha backup check` \
                 names the repository",
                a.host,
                a.failed_count,
                a.last_failed_wal.as_deref().unwrap_or("-"),
                a.last_archived_wal.as_deref().unwrap_or("none")
            ),
        });
    }
    for r in &b.repositories {
        let message = if r.status != "ok" {
            format!("repository {} ({}): {}", r.host, r.cloud, r.status)
        } else {
            match r.last_backup_age_s {
                None => format!("repository {} ({}) holds no backup: `pgha backup`", r.host, r.cloud),
                Some(age) if age > BACKUP_STALE_S => format!(
                    "the newest backup in {} ({}) is {} days old: are its timers running?",
                    r.host,
                    r.cloud,
                    age / 86_400
                ),
                Some(_) => continue,
            }
        };
        out.push(Finding {
            level: Level::Warning,
            message,
        });
    }
    out
}

/// Days before a certificate's expiry from which status warns: deploy
/// renews within the same 30 days.
const CERT_WARN_DAYS: i64 = 30;

/// A certificate that expires within 30 days is a warning (nothing renews
/// it but a deploy); an expired one stops etcd, Patroni's REST checks,
/// replication and the site lease at once: unsafe.
pub(crate) fn cert_findings(first: Option<&CertExpiry>) -> Vec<Finding> {
    let Some(c) = first else { return Vec::new() };
    let (level, message) = if c.days_left < 0 {
        (
            Level::Danger,
            format!(
                "the TLS certificate of {} expired at {}: etcd, Patroni's REST checks, replication and the site \
                 lease refuse it; `pgha deploy` issues new ones",
                c.host, c.expires
            ),
        )
    } else if c.days_left < CERT_WARN_DAYS {
        (
            Level::Warning,
            format!(
                "the TLS certificate of {} expires at {} ({} days): run `pgha deploy`, which renews every \
                 certificate within {CERT_WARN_DAYS} days of its expiry",
                c.host, c.expires, c.days_left
            ),
        )
    } else {
        return Vec::new();
    };
    vec![Finding { level, message }]
}

/// What a DBA must know from the rows: writable hosts where none may be,
/// clouds without a leader (and why), replicas behind the newest timeline,
/// changes pgha still owes a cloud. Pure, so every rule is unit-tested.
pub(crate) fn findings(
    hosts: &[HostRow],
    pending: &std::collections::BTreeMap<String, Vec<String>>,
    site: Option<&SiteStatus>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut say = |level, message: String| out.push(Finding { level, message });
    if let Some(site) = site {
        site_findings(site, hosts, &mut say);
    }
    let mut paused: Vec<&str> = hosts.iter().filter(|r| r.paused).map(|r| r.cloud.as_str()).collect();
    paused.dedup();
    for cloud in paused {
        say(
            Level::Warning,
            format!(
                "{cloud} is paused (maintenance mode): Patroni neither fails over nor restarts PostgreSQL there; \
                 `pgha resume --cloud {cloud}` ends it"
            ),
        );
    }
    let writable: Vec<&HostRow> = hosts.iter().filter(|r| r.read_write == Some(true)).collect();
    if writable.len() > 1 {
        let names: Vec<String> = writable.iter().map(|r| format!("{} ({})", r.host, r.cloud)).collect();
        say(
            Level::Danger,
            format!(
                "split brain: {} hosts take writes: {}; keep clients off all but one, then `pgha deploy` (or a flip) \
                 makes the others follow it and `pgha recover-node` counts what the others wrote",
                writable.len(),
                names.join(", ")
            ),
        );
    }
    // With a site lease the holder is the primary cloud (after an automatic
    // failover, before the design records it); without, the design says.
    let primary = |r: &HostRow| match site.and_then(|s| s.holder.as_deref()) {
        Some(holder) => r.cloud == holder,
        None if site.is_some_and(|s| s.readable) => false,
        None => r.cloud_status == "primary",
    };
    for r in writable.iter().filter(|r| !primary(r)) {
        say(
            Level::Danger,
            format!(
                "{} takes writes, but its cloud {} is not the primary cloud (a flip made while it was cut off?); \
                 `pgha deploy --cloud {}` makes it follow the primary cloud",
                r.host, r.cloud, r.cloud
            ),
        );
    }
    let mut clouds: Vec<&str> = hosts.iter().map(|r| r.cloud.as_str()).collect();
    clouds.dedup();
    for cloud in clouds {
        let rows: Vec<&HostRow> = hosts.iter().filter(|r| r.cloud == cloud).collect();
        let newest = rows.iter().filter_map(|r| r.timeline).max();
        let led = rows.iter().any(|r| r.role == "leader" || r.role == "standby leader");
        let behind: Vec<&&HostRow> = rows
            .iter()
            .filter(|r| r.timeline.is_some() && r.timeline < newest && r.role != "unreachable")
            .collect();
        if !led {
            let reachable = rows.iter().any(|r| r.role != "unreachable");
            let why = if !reachable {
                "no host answers (a lost data center?)".to_string()
            } else if behind.iter().any(|r| r.role != "stopped") {
                // A stopped host on an old timeline is no candidate: name the running ones.
                let behind: Vec<&&&HostRow> = behind.iter().filter(|r| r.role != "stopped").collect();
                format!(
                    "{} on an older timeline than the newest ({}): check_timeline keeps Patroni from promoting it \
                     (its commits would fork from the newest master's); start a host of the newest timeline, or \
                     `pgha failover --to HOST` names what promoting it would lose",
                    behind.iter().map(|r| r.host.as_str()).collect::<Vec<_>>().join(", "),
                    newest.unwrap_or_default()
                )
            } else if rows.iter().all(|r| r.role == "stopped" || r.role == "unreachable") {
                "Patroni is stopped on every reachable host".to_string()
            } else {
                "Patroni has not elected one (yet)".to_string()
            };
            say(Level::Warning, format!("cloud {cloud} has no leader: {why}"));
        } else {
            for r in behind {
                say(
                    Level::Warning,
                    format!(
                        "{} is on timeline {}, the newest in {cloud} is {}: it has not followed the last failover",
                        r.host,
                        r.timeline.unwrap_or_default(),
                        newest.unwrap_or_default()
                    ),
                );
            }
        }
    }
    for (cloud, items) in pending {
        say(
            Level::Warning,
            format!(
                "pgha owes cloud {cloud}: {} (applied by the next `pgha deploy` of it)",
                items.join("; ")
            ),
        );
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.level));
    out
}

/// Patroni's watchdog mode and where it is armed.
fn watchdog_line(s: &Status) -> String {
    let on = |word: &str| -> Vec<&str> {
        s.hosts
            .iter()
            .filter(|r| r.watchdog == word)
            .map(|r| r.host.as_str())
            .collect()
    };
    let (held, present, none) = (on("held"), on("present"), on("none"));
    let mode = serde_json::to_value(s.watchdog_mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut parts = vec![format!("mode {mode}")];
    if !held.is_empty() {
        parts.push(format!("armed on {}", held.join(", ")));
    }
    if !present.is_empty() {
        parts.push(format!("a device, not held, on {}", present.len()));
    }
    if !none.is_empty() {
        parts.push(format!("no device on {} of {} hosts", none.len(), s.hosts.len()));
    }
    format!("Patroni watchdog: {}", parts.join("; "))
}

/// What the site lease says about the cluster.
fn site_findings(site: &SiteStatus, hosts: &[HostRow], say: &mut impl FnMut(Level, String)) {
    for (r, g) in hosts.iter().filter_map(|r| r.site_guard.as_ref().map(|g| (r, g))) {
        if g.agent != "active" {
            say(
                Level::Warning,
                format!(
                    "{}: the site agent (pgha-site-agent) is {}: this host cannot renew the site lease; as a master \
                     pgha-site-fence stops it within {} s; `systemctl start pgha-site-agent` there",
                    r.host, g.agent, g.fence_bound_s
                ),
            );
        }
        if g.fence != "active" {
            say(
                Level::Warning,
                format!(
                    "{}: the site fence (pgha-site-fence) is {}: a stopped or stuck site agent would leave this \
                     host's master writable; `systemctl start pgha-site-fence` there",
                    r.host, g.fence
                ),
            );
        }
        if !g.armed && site.readable {
            say(
                Level::Warning,
                format!(
                    "{}: the site fence is not armed: this host has not reached the site since it was deployed, and \
                     until it does, silence from the site fences no master here; check its agent's journal \
                     (`journalctl -u pgha-site-agent`) and its links to the site members",
                    r.host
                ),
            );
        }
        if g.gate != "active" {
            say(
                Level::Warning,
                format!(
                    "{}: the site gate (pgha-site-gate) is {}: HAProxy and the GLB send no client to this host, \
                     even as the master; `systemctl start pgha-site-gate` there",
                    r.host, g.gate
                ),
            );
        } else if r.read_write == Some(true) && g.gate_answer != Some(200) {
            say(
                Level::Warning,
                format!(
                    "{}: the master's site gate is {}; it opens once the site agent renews the lease",
                    r.host,
                    gate_word(g)
                ),
            );
        }
    }
    if !site.readable {
        say(
            Level::Warning,
            "the site members have no majority (or none answers): nobody can renew the site lease, and the primary \
             cloud's master fences itself; bring back the witness or a cloud's first host"
                .to_string(),
        );
        return;
    }
    for m in site.members.iter().filter(|m| !m.healthy) {
        say(
            Level::Warning,
            format!(
                "site member {} ({}) is unhealthy: the site lease survives no further loss",
                m.host, m.site
            ),
        );
    }
    match &site.holder {
        None => say(
            Level::Warning,
            format!(
                "no cloud holds the site lease{}: no master may be promoted anywhere; `pgha cloud make-primary CLOUD` gives it",
                site.last_holder
                    .as_ref()
                    .map(|l| format!(" (cloud {l} held it last and fenced itself, or was made secondary)"))
                    .unwrap_or_default()
            ),
        ),
        Some(holder) => {
            let design_primary = hosts.iter().find(|r| r.cloud_status == "primary").map(|r| r.cloud.as_str());
            if design_primary.is_some_and(|p| p != holder) {
                say(
                    Level::Warning,
                    format!(
                        "cloud {holder} holds the site lease but the design says {} is primary (an automatic \
                         failover?): `pgha cloud make-primary {holder}` records it",
                        design_primary.unwrap_or("-")
                    ),
                );
            }
        }
    }
}

/// The gate's answer as `status` prints it.
fn gate_word(g: &SiteGuard) -> String {
    match g.gate_answer {
        Some(200) => format!("open ({})", g.gate_says),
        Some(code) => format!("CLOSED, {code} ({}): no client reaches it through HAProxy", g.gate_says),
        None => format!("could not be asked ({})", g.gate_says),
    }
}

fn probe_script(d: &Design) -> String {
    let site = if let Some(site) = &d.site {
        format!(
            "echo \"site_agent $(systemctl is-active {})\"\necho \"site_fence $(systemctl is-active {})\"\n\
             echo \"site_gate $(systemctl is-active {})\"\n{}\n[ -f {} ] && echo site_armed\n",
            crate::components::site::AGENT_SERVICE,
            crate::components::site::FENCE_SERVICE,
            crate::components::site::GATE_SERVICE,
            crate::components::site::gate_answer_script(site.gate_port),
            crate::components::site::ARMED,
        )
    } else {
        String::new()
    };
    format!(
        "{site}echo \"patroni $(systemctl is-active patroni)\"\n{WATCHDOG_PROBE}\n{} >/dev/null 2>&1 && echo 'etcd healthy' || echo 'etcd unhealthy'\n{} 2>/dev/null | sed 's/^/csv /'\n{}\n{{ {}\n}} 2>/dev/null | sed 's/^/read_write /'\n{{ {}\n}} 2>/dev/null | sed 's/^/sender /'\n{}\ntrue\n",
        etcd::health_script(d.etcd.client_port),
        haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port),
        tls::expiry_script(),
        crate::fleet::psql_script(d.platform.postgres_port, "SELECT NOT pg_is_in_recovery()"),
        crate::fleet::psql_script(d.platform.postgres_port, SENDERS_SQL),
        controldata_timeline_script(d),
    )
}

/// `watchdog held|present|none`: whether Patroni's main process has the
/// watchdog device open (it does while it leads, with the mode on).
const WATCHDOG_PROBE: &str = "p=$(systemctl show -p MainPID --value patroni 2>/dev/null); \
if [ \"${p:-0}\" != 0 ] && ls -l \"/proc/$p/fd\" 2>/dev/null | grep -q ' /dev/watchdog'; then echo 'watchdog held'; \
elif [ -c /dev/watchdog ]; then echo 'watchdog present'; else echo 'watchdog none'; fi";

/// `stored_timeline N`: the timeline of the data directory's last
/// checkpoint, which a host whose Patroni is stopped (no member any more)
/// still shows: a master of a newer timeline among them explains why
/// Patroni will not promote an older replica.
fn controldata_timeline_script(d: &Design) -> String {
    format!(
        "{} {} 2>/dev/null | sed -n \"s/^Latest checkpoint's TimeLineID: */stored_timeline /p\"",
        crate::shell::quote(&format!("{}/pg_controldata", d.platform.bin_dir)),
        crate::shell::quote(&d.platform.data_dir)
    )
}

/// On a master, each streaming standby: its name (Patroni's member name),
/// the bytes it has yet to replay and the replay lag in seconds (empty
/// when it has caught up and nothing new was written). Nothing on a replica.
const SENDERS_SQL: &str = "SELECT application_name || ' ' || \
coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text, '-') || ' ' || \
coalesce(extract(epoch FROM replay_lag)::text, '-') FROM pg_stat_replication WHERE NOT pg_is_in_recovery()";

/// A standby's distance to its master, from a `sender NAME BYTES SECONDS` line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct CloudLag {
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

fn parse_senders(probe: &str) -> Vec<(String, CloudLag)> {
    probe
        .lines()
        .filter_map(|l| l.strip_prefix("sender "))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (name, bytes, secs) = (f.next()?, f.next()?, f.next()?);
            let bytes = bytes.parse::<u64>().ok();
            // Caught up and idle: PostgreSQL reports no lag time; it is none.
            let seconds = secs
                .parse::<f64>()
                .ok()
                .or(if bytes == Some(0) { Some(0.0) } else { None });
            Some((name.to_string(), CloudLag { bytes, seconds }))
        })
        .collect()
}

fn role_label(m: &patroni::Member) -> String {
    if m.is_leader() {
        return "leader".to_string();
    }
    match m.role.as_str() {
        "standby_leader" => "standby leader",
        "sync_standby" => "sync standby",
        "quorum_standby" => "quorum standby",
        other => other,
    }
    .to_string()
}

pub(crate) async fn gather(fleet: &Fleet) -> Status {
    let d = &fleet.design;
    let script = probe_script(d);
    let proxy = haproxy::primary_proxy(&d.platform.name);
    let mut hosts = Vec::new();
    let mut earliest: Option<(String, i64)> = None;
    let mut senders: Vec<(String, CloudLag)> = Vec::new();
    for cloud in d.clouds_in_order() {
        let view = fleet.cluster_state(cloud).await.unwrap_or_default();
        let members = view.members;
        let probes = futures::future::join_all(cloud.hosts.iter().map(|h| async {
            match fleet.remotes.get(&h.name) {
                Some(r) => r.check("probing", &script).await.ok(),
                None => None,
            }
        }))
        .await;
        for (h, probe) in cloud.hosts.iter().zip(probes) {
            if cloud.is_primary() {
                senders.extend(probe.as_deref().map(parse_senders).unwrap_or_default());
            }
            let member = members.iter().find(|m| m.name == h.name);
            let expires = probe.as_deref().and_then(tls::parse_expiry);
            let (patroni_active, etcd_state, routes) = match &probe {
                Some(p) => {
                    let csv: String = p
                        .lines()
                        .filter_map(|l| l.strip_prefix("csv "))
                        .collect::<Vec<_>>()
                        .join("\n");
                    let up: Vec<String> = haproxy::up_servers(&csv, &proxy);
                    (
                        p.contains("patroni active"),
                        if p.contains("etcd healthy") {
                            "healthy"
                        } else {
                            "unhealthy"
                        },
                        if up.is_empty() { "-".to_string() } else { up.join(",") },
                    )
                }
                None => (false, "unknown", "unknown".to_string()),
            };
            let (role, state) = match (member, &probe) {
                (_, None) => ("unreachable".to_string(), "-".to_string()),
                (Some(m), _) if patroni_active => (role_label(m), m.state.clone()),
                (_, Some(_)) if !patroni_active => ("stopped".to_string(), "patroni stopped".to_string()),
                _ => ("unknown".to_string(), "not a member".to_string()),
            };
            hosts.push(HostRow {
                cloud: cloud.name.clone(),
                cloud_status: cloud.status.as_str().to_string(),
                paused: view.paused,
                host: h.name.clone(),
                address: h.address.clone(),
                role,
                state,
                timeline: member.and_then(|m| m.timeline).or_else(|| {
                    probe.as_deref().and_then(|p| {
                        p.lines()
                            .find_map(|l| l.strip_prefix("stored_timeline "))
                            .and_then(|t| t.trim().parse().ok())
                    })
                }),
                lag_bytes: member.and_then(|m| m.lag.as_ref()).and_then(|l| l.as_u64()),
                cloud_lag: None,
                pending_restart: member.and_then(|m| m.pending_restart).unwrap_or(false),
                etcd: etcd_state.to_string(),
                haproxy_routes_to: routes,
                cert_expires: expires.and_then(rfc3339),
                site_guard: d
                    .site
                    .as_ref()
                    .zip(probe.as_deref())
                    .map(|(site, p)| SiteGuard::parse(p, crate::components::site::fence_bound(site.ttl))),
                watchdog: probe
                    .as_deref()
                    .and_then(|p| p.lines().find_map(|l| l.strip_prefix("watchdog ")))
                    .unwrap_or("unknown")
                    .to_string(),
                read_write: probe.as_deref().and_then(|p| {
                    p.lines().find_map(|l| match l.strip_prefix("read_write ") {
                        Some("t") => Some(true),
                        Some("f") => Some(false),
                        _ => None,
                    })
                }),
            });
            if let Some(at) = expires {
                if earliest.as_ref().is_none_or(|(_, e)| *e > at) {
                    earliest = Some((h.name.clone(), at));
                }
            }
        }
    }
    // The standby leaders of the other clouds, as the primary's master sees them.
    for row in hosts.iter_mut().filter(|r| r.role == "standby leader") {
        row.cloud_lag = senders.iter().find(|(n, _)| *n == row.host).map(|(_, l)| *l);
    }
    let glb = match &d.glb {
        None => None,
        Some(g) => {
            let proxy = format!("{}-glb", d.platform.name);
            let mut up = Vec::new();
            for h in d.glb_hosts() {
                if let Some(r) = fleet.remotes.get(&h.name) {
                    if let Ok(csv) = r
                        .check(
                            "reading GLB stats",
                            &haproxy::stats_script(&g.stats_address, g.stats_port),
                        )
                        .await
                    {
                        up.extend(haproxy::up_servers(&csv, &proxy));
                    }
                }
            }
            up.sort();
            up.dedup();
            let routes_to_cloud = d
                .clouds
                .iter()
                .find(|c| !up.is_empty() && up.iter().all(|u| c.hosts.iter().any(|h| &h.name == u)))
                .map(|c| c.name.clone());
            Some(GlbStatus {
                fqdn: g.fqdn.clone(),
                port: g.port,
                routes_to_cloud,
                up,
            })
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let pending = crate::state::load(d).map(|s| s.pending).unwrap_or_default();
    let site = site_status(fleet).await;
    let backup = backup_status(fleet, &hosts, now).await;
    let earliest_cert_expiry = earliest.and_then(|(host, at)| {
        Some(CertExpiry {
            host,
            expires: rfc3339(at)?,
            days_left: (at - now).div_euclid(86_400),
        })
    });
    let mut found = findings(&hosts, &pending, site.as_ref());
    found.extend(backup.iter().flat_map(backup_findings));
    found.extend(cert_findings(earliest_cert_expiry.as_ref()));
    found.sort_by_key(|f| std::cmp::Reverse(f.level));
    Status {
        findings: found,
        backup,
        watchdog_mode: d.governor.watchdog,
        cluster: d.platform.name.clone(),
        hosts,
        glb,
        site,
        earliest_cert_expiry,
    }
}

/// The repositories' newest backups and the master's archiver.
async fn backup_status(fleet: &Fleet, hosts: &[HostRow], now: i64) -> Option<BackupStatus> {
    fleet.design.backup.as_ref()?;
    let repositories = super::backup::read_all(fleet)
        .await
        .into_iter()
        .map(|r| {
            let last = r.info.last_good();
            RepoSummary {
                last_backup: last.map(|b| b.label.clone()),
                last_backup_type: last.map(|b| b.kind.clone()),
                last_backup_at: last.and_then(|b| rfc3339(b.stop)),
                last_backup_age_s: last.map(|b| now - b.stop),
                archive_newest_wal: r.info.wal_max.clone(),
                cloud: r.cloud,
                host: r.host,
                status: r.info.status,
            }
        })
        .collect();
    let mut archiving = None;
    if let Some(master) = hosts.iter().find(|r| r.read_write == Some(true)) {
        let sql = "SELECT coalesce(last_archived_wal, ''), coalesce(extract(epoch FROM now() - last_archived_time)::bigint, -1), \
                   failed_count, coalesce(last_failed_wal, ''), \
                   coalesce(last_failed_time > coalesce(last_archived_time, 'epoch'), false) FROM pg_stat_archiver";
        if let Ok(out) = fleet.psql(&master.host, sql).await {
            archiving = parse_archiver(&master.host, &out);
        }
    }
    Some(BackupStatus {
        repositories,
        archiving,
    })
}

/// One `pg_stat_archiver` row as `psql -At` prints it.
fn parse_archiver(host: &str, row: &str) -> Option<Archiving> {
    let f: Vec<&str> = row.trim().split('|').collect();
    let [wal, age, failed, failed_wal, failing] = f.as_slice() else {
        return None;
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Some(Archiving {
        host: host.to_string(),
        last_archived_wal: some(wal),
        last_archived_age_s: age.parse().ok().filter(|a| *a >= 0),
        failed_count: failed.parse().unwrap_or(0),
        last_failed_wal: some(failed_wal),
        failing: *failing == "t",
    })
}

async fn site_status(fleet: &Fleet) -> Option<SiteStatus> {
    let d = &fleet.design;
    let site = d.site.as_ref()?;
    let mut out = SiteStatus {
        ttl_s: site.ttl,
        auto_failover: site.auto_failover,
        members: d
            .site_members()
            .iter()
            .map(|(c, h)| SiteMember {
                host: h.name.clone(),
                site: c.map_or("witness".to_string(), |c| c.name.clone()),
                healthy: false,
            })
            .collect(),
        ..Default::default()
    };
    let Ok(state) = super::site::read(fleet, None).await else {
        return Some(out);
    };
    let url_of = |address: &str| {
        format!(
            "https://{}:{}",
            crate::design::shape::url_host(address),
            site.client_port
        )
    };
    for (m, (_, h)) in out.members.iter_mut().zip(d.site_members()) {
        m.healthy = state.members.iter().any(|(u, ok)| *ok && *u == url_of(&h.address));
    }
    let healthy = out.members.iter().filter(|m| m.healthy).count();
    out.readable = healthy * 2 > out.members.len();
    out.holder = state.holder;
    out.holder_host = state.holder_host;
    out.lease_remaining_s = state.remaining;
    out.lease_age_s = state.remaining.map(|r| i64::from(site.ttl) - r);
    out.last_holder = state.last;
    Some(out)
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub(crate) fn table(s: &Status) -> String {
    let mut t = ui::table(&[
        "Cloud",
        "Host",
        "Role",
        "State",
        "TL",
        "Lag",
        "etcd",
        "HAProxy :5000 ->",
    ]);
    for r in &s.hosts {
        let role = if r.pending_restart {
            format!("{} (restart pending)", r.role)
        } else {
            r.role.clone()
        };
        t.add_row(vec![
            format!(
                "{} ({}{})",
                r.cloud,
                r.cloud_status,
                if r.paused { ", paused" } else { "" }
            ),
            format!("{} {}", r.host, r.address),
            role,
            r.state.clone(),
            r.timeline.map_or("-".into(), |t| t.to_string()),
            match (&r.cloud_lag, r.lag_bytes) {
                (Some(l), _) => format!(
                    "{} / {} (to the primary cloud)",
                    l.bytes.map_or("-".into(), ui::bytes),
                    l.seconds.map_or("-".into(), |s| format!("{s:.1} s"))
                ),
                (None, b) => b.map_or("-".into(), ui::bytes),
            },
            r.etcd.clone(),
            r.haproxy_routes_to.clone(),
        ]);
    }
    let glb = match &s.glb {
        Some(g) => format!(
            "GLB {}:{} -> {} ({})",
            g.fqdn,
            g.port,
            g.routes_to_cloud.as_deref().unwrap_or("no cloud"),
            if g.up.is_empty() {
                "no server up".to_string()
            } else {
                g.up.join(", ")
            }
        ),
        None => "no GLB in the design".to_string(),
    };
    let certs = match &s.earliest_cert_expiry {
        Some(c) => format!(
            "TLS certificates: the first expires {} ({} days, {}); deploy renews within 30 days",
            c.expires, c.days_left, c.host
        ),
        None => "TLS certificates: none read".to_string(),
    };
    let mut text = format!("Cluster {}\n{t}\n{glb}\n{certs}\n{}", s.cluster, watchdog_line(s));
    if let Some(site) = &s.site {
        let members: Vec<String> = site
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} ({}) {}",
                    m.host,
                    m.site,
                    if m.healthy { "healthy" } else { "UNHEALTHY" }
                )
            })
            .collect();
        let lease = match (&site.holder, site.lease_age_s) {
            (Some(h), Some(age)) => format!(
                "held by {h}{}, renewed {age} s ago, {} s left of {} s",
                site.holder_host.as_ref().map(|h| format!(" ({h})")).unwrap_or_default(),
                site.lease_remaining_s.unwrap_or(0),
                site.ttl_s
            ),
            (Some(h), None) => format!("held by {h}"),
            (None, _) if site.readable => "held by no cloud".to_string(),
            (None, _) => "unknown (no majority of site members answers)".to_string(),
        };
        let guards: Vec<&SiteGuard> = s.hosts.iter().filter_map(|r| r.site_guard.as_ref()).collect();
        // The database hosts whose guard fails `ok`.
        let hosts_without = |ok: fn(&SiteGuard) -> bool| -> Vec<&str> {
            s.hosts
                .iter()
                .filter(|r| r.site_guard.as_ref().is_some_and(|g| !ok(g)))
                .map(|r| r.host.as_str())
                .collect()
        };
        let armed = match hosts_without(|g| g.armed).as_slice() {
            [] => format!("armed on every database host ({})", guards.len()),
            not => format!(
                "armed on {} of {} hosts, NOT on {}",
                guards.len() - not.len(),
                guards.len(),
                not.join(", ")
            ),
        };
        let running_on = |ok: fn(&SiteGuard) -> bool| match hosts_without(ok).as_slice() {
            [] => "running on every database host".to_string(),
            down => format!("NOT running on {}", down.join(", ")),
        };
        text.push_str(&format!(
            "\nSite lease: {lease}; auto failover {}\nSite members: {}\nSite fence: the agent fences a master {:.0} s \
             after its last renewal ({}); pgha-site-fence, apart from it, stops one at {} s ({}); pgha-site-gate closes \
             the client path to one at {:.1} s ({}); {armed}",
            if site.auto_failover { "on" } else { "off" },
            members.join(", "),
            f64::from(site.ttl_s) / 3.0,
            running_on(|g| g.agent == "active"),
            crate::components::site::fence_bound(site.ttl_s),
            running_on(|g| g.fence == "active"),
            crate::components::site::gate_bound(site.ttl_s),
            running_on(|g| g.gate == "active"),
        ));
        for (r, g) in s.hosts.iter().filter_map(|r| r.site_guard.as_ref().map(|g| (r, g))) {
            if r.read_write == Some(true) {
                text.push_str(&format!("\nSite gate of the master {}: {}", r.host, gate_word(g)));
            }
        }
    }
    if let Some(b) = &s.backup {
        for r in &b.repositories {
            let last = match (&r.last_backup, r.last_backup_age_s) {
                (Some(l), Some(age)) => format!(
                    "newest backup {l} ({}, {} ago)",
                    r.last_backup_type.as_deref().unwrap_or("?"),
                    ago(age)
                ),
                _ => "no backup".to_string(),
            };
            text.push_str(&format!("\nBackups in {} ({}): {}, {last}", r.host, r.cloud, r.status));
        }
        if let Some(a) = &b.archiving {
            text.push_str(&format!(
                "\nWAL archiving from {}: {}, last archived {}{}",
                a.host,
                if a.failing { "FAILING" } else { "ok" },
                a.last_archived_wal.as_deref().unwrap_or("none"),
                a.last_archived_age_s
                    .map(|s| format!(" {} ago", ago(s)))
                    .unwrap_or_default()
            ));
        }
    }
    for f in &s.findings {
        let label = match f.level {
            Level::Danger => "DANGER",
            Level::Warning => "warning",
        };
        text.push_str(&format!("\n{label}: {}", f.message));
    }
    text
}

/// Seconds as `42 s`, `17 min`, `5 h` or `3 d`.
fn ago(s: i64) -> String {
    match s {
        ..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
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

pub(crate) async fn run(design: &Design, output: ui::Output, watch: Option<u64>) -> anyhow::Result<()> {
    let fleet = Fleet::connect(design, true).await?;
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
mod tests {
    use super::*;

    fn row(cloud: &str, status: &str, host: &str, role: &str, tl: u64, rw: bool) -> HostRow {
        HostRow {
            cloud: cloud.into(),
            cloud_status: status.into(),
            paused: false,
            host: host.into(),
            address: String::new(),
            role: role.into(),
            state: "running".into(),
            timeline: Some(tl),
            lag_bytes: None,
            cloud_lag: None,
            pending_restart: false,
            etcd: "healthy".into(),
            haproxy_routes_to: "-".into(),
            cert_expires: None,
            read_write: Some(rw),
            site_guard: None,
            watchdog: "none".into(),
        }
    }

    /// The probe is one shell script: it must parse without a warning (a
    /// here-document left open once swallowed the rest of it, and every
    /// host showed as unreachable).
    #[test]
    fn the_probe_parses_cleanly() {
        for example in ["two-clouds", "three-sites"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.yaml"));
            let d = crate::design::load(&path).unwrap().design;
            let script = probe_script(&d);
            crate::shell::assert_parses_cleanly(&script);
            assert!(
                script.contains("\nPGHA_SQL\n} 2>/dev/null | sed 's/^/read_write /'\n"),
                "{script}"
            );
            // The site's gate is asked through a here-document of its own.
            assert_eq!(script.contains("\nPGHA_GATE\n"), d.site.is_some(), "{script}");
        }
    }

    #[test]
    fn the_masters_closed_gate_is_a_finding_and_a_replicas_is_not() {
        let probe =
            |answer: &str| format!("site_agent active\nsite_fence active\nsite_gate active\n{answer}site_armed\n");
        let open = SiteGuard::parse(
            &probe("site_gate_answer 200 the site lease was renewed 1.2 s ago\n"),
            14,
        );
        assert_eq!(open.gate_answer, Some(200));
        assert_eq!(open.gate_says, "the site lease was renewed 1.2 s ago");
        assert!(open.armed);
        let closed = SiteGuard::parse(
            &probe("site_gate_answer 503 no renewal of the site lease is recorded since boot\n"),
            14,
        );
        let silent = SiteGuard::parse(
            &probe("site_gate_answer none ConnectionRefusedError [Errno 111] Connection refused\n"),
            14,
        );
        assert_eq!(silent.gate_answer, None);
        assert_eq!(SiteGuard::parse(&probe(""), 14).gate_answer, None);
        let site = SiteStatus {
            readable: true,
            holder: Some("dc1".into()),
            ..Default::default()
        };
        let with = |g: &SiteGuard, role: &str, rw: bool| {
            let mut r = row("dc1", "primary", "a1", role, 1, rw);
            r.site_guard = Some(g.clone());
            let mut f = Vec::new();
            site_findings(&site, &[r], &mut |l, m| f.push((l, m)));
            f
        };
        assert!(with(&open, "leader", true).is_empty());
        assert!(with(&closed, "replica", false).is_empty());
        let f = with(&closed, "leader", true);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].1
                .starts_with("a1: the master's site gate is CLOSED, 503 (no renewal of the site lease"),
            "{f:?}"
        );
        let f = with(&silent, "leader", true);
        assert!(f[0].1.contains("could not be asked (ConnectionRefusedError"), "{f:?}");
    }

    #[test]
    fn an_unarmed_host_is_a_finding_while_the_site_answers() {
        let unarmed = SiteGuard::parse(
            "site_agent active\nsite_fence active\nsite_gate active\nsite_gate_answer 200 not armed\n",
            14,
        );
        assert!(!unarmed.armed);
        let found = |readable: bool| {
            let site = SiteStatus {
                readable,
                holder: Some("dc1".into()),
                ..Default::default()
            };
            let mut r = row("dc1", "primary", "a2", "replica", 1, false);
            r.site_guard = Some(unarmed.clone());
            let mut f = Vec::new();
            site_findings(&site, &[r], &mut |l, m| f.push((l, m)));
            f
        };
        let f = found(true);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].1.starts_with("a2: the site fence is not armed"), "{f:?}");
        // A site nobody can read is its own finding; arming waits on it.
        assert!(found(false).iter().all(|(_, m)| !m.contains("not armed")));
    }

    fn levels(f: &[Finding]) -> Vec<Level> {
        f.iter().map(|f| f.level).collect()
    }

    #[test]
    fn a_healthy_cluster_has_no_findings() {
        let rows = [
            row("dc1", "primary", "a1", "leader", 2, true),
            row("dc1", "primary", "a2", "replica", 2, false),
            row("dc2", "secondary", "b1", "standby leader", 2, false),
        ];
        assert!(findings(&rows, &Default::default(), None).is_empty());
    }

    // HAZARDS #5: after a flip made during a partition, the old primary
    // cloud's master still takes writes once the link is back.
    #[test]
    fn the_master_reports_how_far_each_standby_is() {
        let probe = "patroni active\nread_write t\nsender dc2-pg1 1024 0.25\nsender dc1-pg2 0 -\nsender dc3-pg1 - -\n";
        assert_eq!(
            parse_senders(probe),
            [
                (
                    "dc2-pg1".to_string(),
                    CloudLag {
                        bytes: Some(1024),
                        seconds: Some(0.25)
                    }
                ),
                (
                    "dc1-pg2".to_string(),
                    CloudLag {
                        bytes: Some(0),
                        seconds: Some(0.0)
                    }
                ),
                (
                    "dc3-pg1".to_string(),
                    CloudLag {
                        bytes: None,
                        seconds: None
                    }
                ),
            ]
        );
        assert!(parse_senders("read_write f\n").is_empty());
    }

    #[test]
    fn a_paused_cloud_is_a_warning_once() {
        let mut hosts = vec![
            row("dc1", "primary", "a1", "leader", 1, true),
            row("dc2", "secondary", "b1", "standby leader", 1, false),
            row("dc2", "secondary", "b2", "replica", 1, false),
        ];
        for h in &mut hosts[1..] {
            h.paused = true;
        }
        let f = findings(&hosts, &Default::default(), None);
        assert_eq!(levels(&f), [Level::Warning]);
        assert!(f[0].message.starts_with("dc2 is paused"), "{f:?}");
        assert!(f[0].message.contains("pgha resume --cloud dc2"), "{f:?}");
    }

    #[test]
    fn a_writable_host_outside_the_primary_cloud_is_a_split_brain() {
        let rows = [
            row("dc1", "secondary", "a1", "leader", 1, true),
            row("dc2", "primary", "b1", "leader", 2, true),
        ];
        let f = findings(&rows, &Default::default(), None);
        assert_eq!(levels(&f), [Level::Danger, Level::Danger], "{f:?}");
        assert!(
            f[0].message
                .contains("split brain: 2 hosts take writes: a1 (dc1), b1 (dc2)"),
            "{f:?}"
        );
        assert!(
            f[1].message
                .contains("a1 takes writes, but its cloud dc1 is not the primary cloud"),
            "{f:?}"
        );
    }

    // HAZARDS #4: the only running replica is behind the newest timeline.
    #[test]
    fn a_cloud_without_leader_says_why() {
        let mut stopped = row("dc1", "primary", "a2", "stopped", 2, false);
        stopped.read_write = None;
        // Stopped hosts show the timeline of their last checkpoint.
        let mut old = row("dc1", "primary", "a1", "stopped", 1, false);
        old.read_write = None;
        let rows = [
            old,
            stopped,
            row("dc1", "primary", "a3", "replica", 1, false),
            row("dc2", "secondary", "b1", "standby leader", 2, false),
        ];
        let f = findings(&rows, &Default::default(), None);
        assert_eq!(levels(&f), [Level::Warning], "{f:?}");
        assert!(
            f[0].message
                .starts_with("cloud dc1 has no leader: a3 on an older timeline than the newest (2)"),
            "{f:?}"
        );
        assert!(f[0].message.contains("`pgha failover --to HOST`"), "{f:?}");
    }

    #[test]
    fn the_watchdog_line_names_where_patroni_holds_it() {
        let mut rows = vec![
            row("dc1", "primary", "a1", "leader", 3, true),
            row("dc1", "primary", "a2", "replica", 3, false),
            row("dc1", "primary", "a3", "replica", 3, false),
        ];
        rows[0].watchdog = "held".into();
        rows[1].watchdog = "present".into();
        let s = Status {
            watchdog_mode: crate::design::Watchdog::Automatic,
            cluster: "c".into(),
            hosts: rows,
            glb: None,
            site: None,
            earliest_cert_expiry: None,
            backup: None,
            findings: Vec::new(),
        };
        assert_eq!(
            watchdog_line(&s),
            "Patroni watchdog: mode automatic; armed on a1; a device, not held, on 1; no device on 1 of 3 hosts"
        );
    }

    #[test]
    fn replicas_behind_and_pending_changes_are_warnings() {
        let rows = [
            row("dc1", "primary", "a1", "leader", 3, true),
            row("dc1", "primary", "a2", "replica", 2, false),
        ];
        let pending = [("dc2".to_string(), vec!["become a standby cluster".to_string()])].into();
        let f = findings(&rows, &pending, None);
        assert_eq!(levels(&f), [Level::Warning, Level::Warning], "{f:?}");
        assert!(
            f[0].message.contains("a2 is on timeline 2, the newest in dc1 is 3"),
            "{f:?}"
        );
        assert!(
            f[1].message.contains("pgha owes cloud dc2: become a standby cluster"),
            "{f:?}"
        );
        let s = Status {
            watchdog_mode: crate::design::Watchdog::Automatic,
            cluster: "c".into(),
            hosts: Vec::new(),
            glb: None,
            site: None,
            earliest_cert_expiry: None,
            backup: None,
            findings: f,
        };
        let e = attention(&s).unwrap_err();
        assert_eq!(crate::error::exit_code(&e), 3);
    }

    #[test]
    fn the_archiver_row_says_whether_archiving_fails() {
        let a = parse_archiver("a1", "000000010000000000000009|12|3|00000001000000000000000A|t\n").unwrap();
        assert!(a.failing);
        assert_eq!(a.failed_count, 3);
        assert_eq!(a.last_archived_age_s, Some(12));
        let fresh = parse_archiver("a1", "|-1|0||f").unwrap();
        assert_eq!(
            (fresh.last_archived_wal, fresh.last_archived_age_s, fresh.failing),
            (None, None, false)
        );
        assert!(parse_archiver("a1", "garbage").is_none());
    }

    #[test]
    fn certificates_near_expiry_warn_and_expired_ones_are_unsafe() {
        let c = |days_left| CertExpiry {
            host: "a2".into(),
            expires: "2027-01-01T00:00:00Z".into(),
            days_left,
        };
        assert!(cert_findings(None).is_empty());
        assert!(cert_findings(Some(&c(30))).is_empty());
        let f = cert_findings(Some(&c(10)));
        assert_eq!(levels(&f), [Level::Warning]);
        assert!(
            f[0].message.contains("a2 expires") && f[0].message.contains("(10 days)"),
            "{f:?}"
        );
        let f = cert_findings(Some(&c(-1)));
        assert_eq!(levels(&f), [Level::Danger]);
        assert!(f[0].message.contains("a2 expired"), "{f:?}");
    }

    #[test]
    fn backups_warn_on_failing_archiving_and_missing_or_stale_backups() {
        let repo = |status: &str, age: Option<i64>| RepoSummary {
            cloud: "dc1".into(),
            host: "b1".into(),
            status: status.into(),
            last_backup: age.map(|_| "L".into()),
            last_backup_type: age.map(|_| "full".into()),
            last_backup_at: None,
            last_backup_age_s: age,
            archive_newest_wal: None,
        };
        let healthy = BackupStatus {
            repositories: vec![repo("ok", Some(3600))],
            archiving: Some(Archiving::default()),
        };
        assert!(backup_findings(&healthy).is_empty());
        let bad = BackupStatus {
            repositories: vec![
                repo("ok", None),
                repo("ok", Some(9 * 86_400)),
                repo("unreachable over SSH", None),
            ],
            archiving: Some(Archiving {
                host: "a1".into(),
                failing: true,
                failed_count: 2,
                ..Archiving::default()
            }),
        };
        let f: Vec<String> = backup_findings(&bad).into_iter().map(|f| f.message).collect();
        assert_eq!(f.len(), 4, "{f:?}");
        assert!(f[0].starts_with("WAL archiving fails on a1 (2 failures"), "{f:?}");
        assert!(f[1].contains("holds no backup"), "{f:?}");
        assert!(f[2].contains("9 days old"), "{f:?}");
        assert!(f[3].contains("unreachable over SSH"), "{f:?}");
    }

    fn site(holder: Option<&str>, witness_ok: bool) -> SiteStatus {
        SiteStatus {
            readable: true,
            members: vec![
                SiteMember {
                    host: "a1".into(),
                    site: "dc1".into(),
                    healthy: true,
                },
                SiteMember {
                    host: "b1".into(),
                    site: "dc2".into(),
                    healthy: true,
                },
                SiteMember {
                    host: "w".into(),
                    site: "witness".into(),
                    healthy: witness_ok,
                },
            ],
            holder: holder.map(str::to_string),
            ttl_s: 30,
            ..Default::default()
        }
    }

    // Issue 11: with the site lease, the holder is the primary cloud.
    #[test]
    fn the_site_lease_decides_which_cloud_may_write() {
        let healthy = [
            row("dc1", "primary", "a1", "leader", 2, true),
            row("dc2", "secondary", "b1", "standby leader", 2, false),
        ];
        assert!(findings(&healthy, &Default::default(), Some(&site(Some("dc1"), true))).is_empty());
        // After an automatic failover, before the design records it: dc2
        // writes and holds the lease, which is safe; the design is behind.
        let taken_over = [
            row("dc1", "primary", "a1", "standby leader", 3, false),
            row("dc2", "secondary", "b1", "leader", 3, true),
        ];
        let f = findings(&taken_over, &Default::default(), Some(&site(Some("dc2"), true)));
        assert_eq!(levels(&f), [Level::Warning], "{f:?}");
        assert!(
            f[0].message
                .contains("cloud dc2 holds the site lease but the design says dc1"),
            "{f:?}"
        );
        // A writable host outside the holder's cloud is unsafe.
        let f = findings(&healthy, &Default::default(), Some(&site(Some("dc2"), true)));
        assert_eq!(f[0].level, Level::Danger, "{f:?}");
        assert!(f[0].message.contains("a1 takes writes"), "{f:?}");
        // No holder, a member down, no majority: each a warning.
        let f = findings(&taken_over[..1], &Default::default(), Some(&site(None, false)));
        let text: Vec<&str> = f.iter().map(|f| f.message.as_str()).collect();
        assert!(
            text.iter().any(|m| m.contains("site member w (witness) is unhealthy")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("no cloud holds the site lease")),
            "{text:?}"
        );
        let dark = SiteStatus {
            readable: false,
            ..site(None, false)
        };
        let f = findings(&healthy, &Default::default(), Some(&dark));
        assert!(f[0].message.contains("no majority"), "{f:?}");
    }
}
