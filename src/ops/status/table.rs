//! The text form of the status (pure).

use super::*;

/// Patroni's watchdog mode and where it is armed.
pub(super) fn watchdog_line(s: &Status) -> String {
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
        "Debian / PG",
    ]);
    for r in &s.hosts {
        let mut role = r.role.clone();
        if r.pending_restart {
            role.push_str(" (restart pending)");
        }
        if r.holds_vip == Some(true) {
            role.push_str(" + virtual IP");
        }
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
            r.versions(),
        ]);
    }
    let glb = match &s.glb {
        Some(g) => {
            let mut line = format!(
                "GLB {}:{} -> {} ({})",
                g.fqdn,
                g.port,
                g.routes_to_cloud.as_deref().unwrap_or("no cloud"),
                match (g.up.is_empty(), g.unread.is_empty()) {
                    (false, _) => g.up.join(", "),
                    (true, true) => "no server up".to_string(),
                    (true, false) => "none seen".to_string(),
                }
            );
            if !g.unread.is_empty() {
                line.push_str(&format!("; not read: {}", g.unread.join("; ")));
            }
            line
        }
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
        text.push_str(&site_text(s, site));
    }
    if let Some(b) = &s.backup {
        text.push_str(&backup_text(b));
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

/// Between clouds: synchronous with which cloud, or asynchronous since when
/// and why, as the primary cloud's master recorded it at the site.
fn replication_text(site: &SiteStatus) -> String {
    use crate::components::site::SyncMode;
    let design = if site.synchronous {
        "synchronous"
    } else {
        "asynchronous"
    };
    let state = match &site.replication {
        _ if site.replication_unreadable => "its record at the site DOES NOT READ".to_string(),
        None if site.synchronous => "no record yet (the primary's master writes one)".to_string(),
        None => return String::new(),
        Some(r) => match (r.mode, &r.partner) {
            (SyncMode::Sync, Some(p)) => format!(
                "{} waits for {p} on every commit since {} (a failover to {p} loses nothing)",
                r.cloud,
                crate::fleet::format_lsn(r.lsn)
            ),
            _ => format!(
                "{} ASYNCHRONOUS since {} ({})",
                r.cloud,
                crate::fleet::format_lsn(r.lsn),
                r.why
            ),
        },
    };
    format!("\nBetween clouds: {design} (the design); {state}")
}

/// The site lease's lines: the lease, its members, the fences.
fn site_text(s: &Status, site: &SiteStatus) -> String {
    let mut text = String::new();
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
    let replication = replication_text(site);
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
    text.push_str(&replication);
    for (r, g) in s.hosts.iter().filter_map(|r| r.site_guard.as_ref().map(|g| (r, g))) {
        if r.read_write == Some(true) {
            text.push_str(&format!("\nSite gate of the master {}: {}", r.host, gate_word(g)));
        }
    }
    text
}

/// The repositories' and WAL archiving's lines.
fn backup_text(b: &BackupStatus) -> String {
    let mut text = String::new();
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
    text
}

/// Seconds as `42 s`, `17 min`, `5 h` or `3 d`.
pub(super) fn ago(s: i64) -> String {
    match s {
        ..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}
