//! What `status` asks every host, in parallel, each call with its deadline.

use super::*;
use crate::design::{Cloud, Host};

pub(super) fn probe_script(d: &Design) -> String {
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
        "{site}{}echo \"patroni $(systemctl is-active patroni)\"\n{WATCHDOG_PROBE}\n{}\n{} >/dev/null 2>&1 && echo 'etcd healthy' || echo 'etcd unhealthy'\n{} 2>/dev/null | sed 's/^/csv /'\n{}\n{{ {}\n}} 2>/dev/null | sed 's/^/read_write /'\n{{ {}\n}} 2>/dev/null | sed 's/^/sender /'\n{{ {}\n}} 2>/dev/null | sed 's/^/pg_server /'\n{}\ntrue\n",
        crate::components::vip::held_script(d),
        versions_script(d),
        etcd::health_script(d.etcd.client_port),
        haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port),
        tls::expiry_script(),
        crate::fleet::psql_script(d.platform.postgres_port, "SELECT NOT pg_is_in_recovery()"),
        crate::fleet::psql_script(d.platform.postgres_port, SENDERS_SQL),
        crate::fleet::psql_script(d.platform.postgres_port, SERVER_SQL),
        controldata_timeline_script(d),
    )
}

/// `release N` (the Debian release) and `pg_data N` (the data directory's
/// major version): what an upgrade changes, readable with every service stopped.
pub(super) fn versions_script(d: &Design) -> String {
    format!(
        "sed -n 's/^VERSION_ID=//p' /etc/os-release 2>/dev/null | tr -d '\"' | sed 's/^/release /'\n\
         sed 's/^/pg_data /' {} 2>/dev/null",
        crate::shell::quote(&format!("{}/PG_VERSION", d.platform.data_dir))
    )
}

/// The running server's version, without Debian's suffix (`17.6`).
pub(super) const SERVER_SQL: &str = "SELECT split_part(current_setting('server_version'), ' ', 1)";

/// `13`, `17.6`, `18beta1`: what a version printed by a host may look like
/// before it reaches the table.
fn version_shaped(v: &str) -> bool {
    !v.is_empty() && v.len() <= 16 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
}

/// The probe's `key value` line's value, when the line is there.
fn probe_word<'a>(probe: Option<&'a str>, key: &str) -> Option<&'a str> {
    probe?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(str::trim)
}

/// `watchdog held|present|none`: whether Patroni's main process has the
/// watchdog device open (it does while it leads, with the mode on).
pub(super) const WATCHDOG_PROBE: &str = "p=$(systemctl show -p MainPID --value patroni 2>/dev/null); \
if [ \"${p:-0}\" != 0 ] && ls -l \"/proc/$p/fd\" 2>/dev/null | grep -q ' /dev/watchdog'; then echo 'watchdog held'; \
elif [ -c /dev/watchdog ]; then echo 'watchdog present'; else echo 'watchdog none'; fi";

/// `stored_timeline N`: the timeline of the data directory's last
/// checkpoint, which a host whose Patroni is stopped (no member any more)
/// still shows: a master of a newer timeline among them explains why
/// Patroni will not promote an older replica.
pub(super) fn controldata_timeline_script(d: &Design) -> String {
    format!(
        "{} {} 2>/dev/null | sed -n \"s/^Latest checkpoint's TimeLineID: */stored_timeline /p\"",
        crate::shell::quote(&format!("{}/pg_controldata", d.platform.bin_dir)),
        crate::shell::quote(&d.platform.data_dir)
    )
}

/// On a master, each streaming standby: its name (Patroni's member name),
/// the bytes it has yet to replay and the replay lag in seconds (empty
/// when it has caught up and nothing new was written). Nothing on a replica.
pub(super) const SENDERS_SQL: &str = "SELECT application_name || ' ' || \
coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text, '-') || ' ' || \
coalesce(extract(epoch FROM replay_lag)::text, '-') FROM pg_stat_replication WHERE NOT pg_is_in_recovery()";

pub(super) fn parse_senders(probe: &str) -> Vec<(String, CloudLag)> {
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

pub(super) fn role_label(m: &patroni::Member) -> String {
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
            hosts.push(host_row(d, cloud, view.paused, h, member, probe.as_deref(), &proxy));
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
    let glb = glb_status(fleet).await;
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
    found.extend(glb.iter().flat_map(glb_findings));
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

/// One host's row, from its Patroni member and its probe's answer (none:
/// unreachable).
pub(super) fn host_row(
    d: &Design,
    cloud: &Cloud,
    paused: bool,
    h: &Host,
    member: Option<&patroni::Member>,
    probe: Option<&str>,
    proxy: &str,
) -> HostRow {
    let expires = probe.and_then(tls::parse_expiry);
    let (patroni_active, etcd_state, routes) = match probe {
        Some(p) => {
            let csv: String = p
                .lines()
                .filter_map(|l| l.strip_prefix("csv "))
                .collect::<Vec<_>>()
                .join("\n");
            let up: Vec<String> = haproxy::up_servers(&csv, proxy);
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
    let (role, state) = match (member, probe) {
        (_, None) => ("unreachable".to_string(), "-".to_string()),
        (Some(m), _) if patroni_active => (role_label(m), m.state.clone()),
        (_, Some(_)) if !patroni_active => ("stopped".to_string(), "patroni stopped".to_string()),
        _ => ("unknown".to_string(), "not a member".to_string()),
    };
    HostRow {
        cloud: cloud.name.clone(),
        cloud_status: cloud.status.as_str().to_string(),
        paused,
        host: h.name.clone(),
        address: h.address.clone(),
        role,
        state,
        timeline: member.and_then(|m| m.timeline).or_else(|| {
            probe.and_then(|p| {
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
            .zip(probe)
            .map(|(site, p)| SiteGuard::parse(p, crate::components::site::fence_bound(site.ttl))),
        holds_vip: cloud.vip.as_ref().zip(probe).map(|(v, p)| {
            p.lines()
                .filter_map(|l| l.strip_prefix("vip "))
                .any(|a| a.trim() == v.address)
        }),
        watchdog: probe
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("watchdog ")))
            .unwrap_or("unknown")
            .to_string(),
        release: probe_word(probe, "release")
            .filter(|v| version_shaped(v))
            .map(str::to_string),
        postgres_running: probe_word(probe, "pg_server")
            .filter(|v| version_shaped(v))
            .map(str::to_string),
        postgres_data: probe_word(probe, "pg_data").and_then(|v| v.parse().ok()),
        read_write: probe.and_then(|p| {
            p.lines().find_map(|l| match l.strip_prefix("read_write ") {
                Some("t") => Some(true),
                Some("f") => Some(false),
                _ => None,
            })
        }),
    }
}

/// Where the GLB routes, read from its HAProxy's stats.
async fn glb_status(fleet: &Fleet) -> Option<GlbStatus> {
    let d = &fleet.design;
    match &d.glb {
        None => None,
        Some(g) => {
            let proxy = haproxy::glb_proxy(&d.platform.name);
            let mut up = Vec::new();
            let mut unread = Vec::new();
            for h in d.glb_hosts() {
                let read = match fleet.remotes.get(&h.name) {
                    Some(r) => r
                        .check(
                            "reading GLB stats",
                            &haproxy::stats_script(&g.stats_address, g.stats_port),
                        )
                        .await
                        .map_err(|e| format!("{e:#}")),
                    None => Err("unreachable over SSH".to_string()),
                };
                match read {
                    Ok(csv) => up.extend(haproxy::up_servers(&csv, &proxy)),
                    // Not read is not "no server up".
                    Err(e) => unread.push(format!("{}: {}", h.name, crate::shell::last_lines(&e, 1))),
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
                unread,
            })
        }
    }
}

/// The repositories' newest backups and the master's archiver.
pub(super) async fn backup_status(fleet: &Fleet, hosts: &[HostRow], now: i64) -> Option<BackupStatus> {
    fleet.design.backup.as_ref()?;
    let repositories = fleet
        .read_repositories()
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
        if let Ok(out) = fleet.psql(&master.host, crate::components::backup::ARCHIVER_SQL).await {
            archiving = crate::components::backup::parse_archiver(&master.host, &out);
        }
    }
    Some(BackupStatus {
        repositories,
        archiving,
    })
}

pub(super) async fn site_status(fleet: &Fleet) -> Option<SiteStatus> {
    let d = &fleet.design;
    let site = d.site.as_ref()?;
    let mut out = SiteStatus {
        ttl_s: site.ttl,
        auto_failover: site.auto_failover,
        synchronous: site.synchronous,
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
    let Ok(state) = crate::ops::site::read(fleet, None).await else {
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
    out.replication = state.sync;
    out.replication_unreadable = state.sync_unreadable;
    Some(out)
}

pub(super) fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}
