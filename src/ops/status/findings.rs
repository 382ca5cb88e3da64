//! What needs the DBA's attention, judged from what was gathered (pure).

use super::*;

/// A good backup older than this is worth a warning (a weekly full plus
/// daily differentials never leaves one this old).
pub(super) const BACKUP_STALE_S: i64 = 8 * 86_400;

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
pub(super) const CERT_WARN_DAYS: i64 = 30;

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

/// A GLB that routes no client, or whose HAProxy could not be asked (then
/// where it routes is not known, never taken for "nowhere").
pub(crate) fn glb_findings(g: &GlbStatus) -> Vec<Finding> {
    let mut out: Vec<Finding> = g
        .unread
        .iter()
        .map(|why| Finding {
            level: Level::Warning,
            message: format!("the GLB's HAProxy could not be asked ({why}): where it sends clients is not known"),
        })
        .collect();
    if g.up.is_empty() && g.unread.is_empty() {
        out.push(Finding {
            level: Level::Warning,
            message: "the GLB has no server up: clients through it reach no master (a flip or failover under way?); \
                      `pgha status` again shows whether it lasts"
                .to_string(),
        });
    }
    out
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
    version_findings(hosts, &mut say);
    let mut clouds: Vec<&str> = hosts.iter().map(|r| r.cloud.as_str()).collect();
    clouds.dedup();
    for cloud in clouds {
        let rows: Vec<&HostRow> = hosts.iter().filter(|r| r.cloud == cloud).collect();
        leader_findings(cloud, &rows, &mut say);
        vip_findings(cloud, &rows, &mut say);
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

/// A mixed cluster: hosts on different Debian releases (so different
/// Patroni, etcd and HAProxy), or data of different PostgreSQL majors.
fn version_findings(hosts: &[HostRow], say: &mut impl FnMut(Level, String)) {
    let groups = |of: &dyn Fn(&HostRow) -> Option<String>| {
        let mut by: std::collections::BTreeMap<String, Vec<&str>> = std::collections::BTreeMap::new();
        for r in hosts {
            if let Some(v) = of(r) {
                by.entry(v).or_default().push(r.host.as_str());
            }
        }
        by
    };
    let listed = |by: &std::collections::BTreeMap<String, Vec<&str>>, label: &str| {
        by.iter()
            .map(|(v, on)| format!("{label} {v} on {}", on.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let releases = groups(&|r| r.release.clone());
    if releases.len() > 1 {
        say(
            Level::Warning,
            format!(
                "a mixed cluster: {}; hosts of two releases run different Patroni, etcd and HAProxy versions, \
                 for the span of a release upgrade only",
                listed(&releases, "Debian")
            ),
        );
    }
    let majors = groups(&|r| r.postgres_major().map(|m| m.to_string()));
    if majors.len() > 1 {
        say(
            Level::Warning,
            format!(
                "PostgreSQL major versions differ: {}; a replica streams only from a master of its own major",
                listed(&majors, "PostgreSQL")
            ),
        );
    }
}

/// A cloud without a leader (and why), or its hosts left on an older
/// timeline than its newest.
fn leader_findings(cloud: &str, rows: &[&HostRow], say: &mut impl FnMut(Level, String)) {
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

/// A cloud's virtual IP belongs on its leader alone.
fn vip_findings(cloud: &str, rows: &[&HostRow], say: &mut impl FnMut(Level, String)) {
    if rows.iter().all(|r| r.holds_vip.is_none()) {
        return;
    }
    let holders: Vec<&str> = rows
        .iter()
        .filter(|r| r.holds_vip == Some(true))
        .map(|r| r.host.as_str())
        .collect();
    // A leader that did not say what it holds is no evidence either way.
    let leader = rows
        .iter()
        .find(|r| (r.role == "leader" || r.role == "standby leader") && r.holds_vip.is_some())
        .map(|r| r.host.as_str());
    let units = format!(
        "`journalctl -u {} -u {}` there",
        crate::components::vip::LEADER_SERVICE,
        crate::components::vip::MANAGER_SERVICE
    );
    match (holders.as_slice(), leader) {
        ([], Some(l)) => say(
            Level::Warning,
            format!("cloud {cloud}'s virtual IP is on no host, not on its leader {l}: {units}"),
        ),
        ([h], Some(l)) if *h != l => say(
            Level::Warning,
            format!("cloud {cloud}'s virtual IP is on {h}, not on its leader {l}: {units}"),
        ),
        ([_], _) | ([], None) => {}
        (many, _) => say(
            Level::Warning,
            format!(
                "cloud {cloud}'s virtual IP is on {} hosts ({}): its clients reach either; {units}",
                many.len(),
                many.join(", ")
            ),
        ),
    }
}

/// What the site lease says about the cluster.
pub(super) fn site_findings(site: &SiteStatus, hosts: &[HostRow], say: &mut impl FnMut(Level, String)) {
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
pub(super) fn gate_word(g: &SiteGuard) -> String {
    match g.gate_answer {
        Some(200) => format!("open ({})", g.gate_says),
        Some(code) => format!("CLOSED, {code} ({}): no client reaches it through HAProxy", g.gate_says),
        None => format!("could not be asked ({})", g.gate_says),
    }
}
