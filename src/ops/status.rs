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
    pub host: String,
    pub address: String,
    /// leader | replica | sync standby | standby leader | stopped | unreachable | unknown
    pub role: String,
    pub state: String,
    pub timeline: Option<u64>,
    /// Bytes behind the leader, when known.
    pub lag_bytes: Option<u64>,
    pub pending_restart: bool,
    /// healthy | unhealthy | unknown
    pub etcd: String,
    /// The server this host's HAProxy sends port 5000 to (`-`: none).
    pub haproxy_routes_to: String,
    /// When the host's installed TLS certificate expires (RFC 3339), when read.
    pub cert_expires: Option<String>,
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

#[derive(Debug, Serialize)]
pub(crate) struct Status {
    pub cluster: String,
    pub hosts: Vec<HostRow>,
    pub glb: Option<GlbStatus>,
    /// `deploy` renews a certificate within 30 days of its expiry.
    pub earliest_cert_expiry: Option<CertExpiry>,
}

fn probe_script(d: &Design) -> String {
    format!(
        "echo \"patroni $(systemctl is-active patroni)\"\n{} >/dev/null 2>&1 && echo 'etcd healthy' || echo 'etcd unhealthy'\n{} 2>/dev/null | sed 's/^/csv /'\n{}\ntrue\n",
        etcd::health_script(d.etcd.client_port),
        haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port),
        tls::expiry_script()
    )
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
    for cloud in d.clouds_in_order() {
        let members = fleet.cluster_view(cloud).await.unwrap_or_default();
        let probes = futures::future::join_all(cloud.hosts.iter().map(|h| async {
            match fleet.remotes.get(&h.name) {
                Some(r) => r.check("probing", &script).await.ok(),
                None => None,
            }
        }))
        .await;
        for (h, probe) in cloud.hosts.iter().zip(probes) {
            let member = members.iter().find(|m| m.name == h.name);
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
                host: h.name.clone(),
                address: h.address.clone(),
                role,
                state,
                timeline: member.and_then(|m| m.timeline),
                lag_bytes: member.and_then(|m| m.lag.as_ref()).and_then(|l| l.as_u64()),
                pending_restart: member.and_then(|m| m.pending_restart).unwrap_or(false),
                etcd: etcd_state.to_string(),
                haproxy_routes_to: routes,
                cert_expires: probe.as_deref().and_then(tls::parse_expiry).and_then(rfc3339),
            });
            if let Some(at) = probe.as_deref().and_then(tls::parse_expiry) {
                if !earliest.as_ref().is_some_and(|(_, e)| *e <= at) {
                    earliest = Some((h.name.clone(), at));
                }
            }
        }
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
    Status {
        cluster: d.platform.name.clone(),
        hosts,
        glb,
        earliest_cert_expiry: earliest.and_then(|(host, at)| {
            Some(CertExpiry {
                host,
                expires: rfc3339(at)?,
                days_left: (at - now).div_euclid(86_400),
            })
        }),
    }
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn human_bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b} B"),
        1024..=1_048_575 => format!("{:.1} kB", b as f64 / 1024.0),
        _ => format!("{:.1} MB", b as f64 / 1_048_576.0),
    }
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
            format!("{} ({})", r.cloud, r.cloud_status),
            format!("{} {}", r.host, r.address),
            role,
            r.state.clone(),
            r.timeline.map_or("-".into(), |t| t.to_string()),
            r.lag_bytes.map_or("-".into(), human_bytes),
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
    format!("Cluster {}\n{t}\n{glb}\n{certs}", s.cluster)
}

pub(crate) async fn run(design: &Design, output: ui::Output, watch: Option<u64>) -> anyhow::Result<()> {
    let fleet = Fleet::connect(design, true).await?;
    loop {
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
            None => break,
        }
    }
    fleet.close().await;
    Ok(())
}
