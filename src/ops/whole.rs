//! Steps shared by the commands that act on the whole cluster: the
//! upgrades' health check before any change, and the stop and start of
//! every host that a restore and a major upgrade make. The commands never
//! import each other; they share these.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::components::systemd::{self, Verb};
use crate::components::{site, upgrade};
use crate::design::{Cloud, Host};
use crate::fleet::Fleet;
use crate::wait::poll;

/// Every cloud healthy before the first change: not paused, led, every
/// member running and close behind, but for hosts a run left half-way.
/// Patroni's view of a replica's position is its member key, refreshed
/// once a loop: right after a burst of writes it reads behind a replica
/// that has caught up, so lag alone is read again for two loops before
/// it refuses (any other problem refuses at once).
pub(crate) async fn healthy_leaders(
    fleet: &Fleet,
    pending: &BTreeSet<String>,
    what: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let settle = Duration::from_secs(2 * u64::from(fleet.design.governor.loop_wait) + 5);
    let deadline = tokio::time::Instant::now() + settle;
    loop {
        let (leaders, problems, only_lag) = health_once(fleet, pending).await;
        if problems.is_empty() {
            return Ok(leaders);
        }
        if !only_lag || tokio::time::Instant::now() >= deadline {
            bail!(
                "the {what} cannot start (nothing was changed):\n  {}\n  hint: `pgha status` shows the \
                 cluster; `pgha recover-node HOST` brings a failed member back",
                problems.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One reading of [`healthy_leaders`]: the leaders, the problems, and
/// whether every problem is a replica's lag.
async fn health_once(fleet: &Fleet, pending: &BTreeSet<String>) -> (BTreeMap<String, String>, Vec<String>, bool) {
    let d = &fleet.design;
    let bound = d.governor.maximum_lag_on_failover;
    let mut leaders = BTreeMap::new();
    let mut problems = Vec::new();
    let mut lagging = 0;
    for c in &d.clouds {
        let view = match fleet.cluster_state(c).await {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{}: Patroni's view cannot be read: {e:#}", c.name));
                continue;
            }
        };
        if view.paused {
            problems.push(format!(
                "{} is paused (maintenance mode): `pgha resume --cloud {}` first, for the upgrade \
                 stops its members one by one and counts on Patroni",
                c.name, c.name
            ));
        }
        // The order follows the design's primary cloud: a master
        // elsewhere (an automatic failover the design does not record
        // yet) is settled first.
        if let (false, Some(m)) = (c.is_primary(), view.members.iter().find(|m| m.is_leader())) {
            problems.push(format!(
                "{} is a secondary cloud in the design, but {} is a master there (an automatic failover?): \
                 `pgha cloud make-primary {}` records it, or `pgha deploy` makes the cloud follow again",
                c.name, m.name, c.name
            ));
        }
        let leader = view.members.iter().find(|m| {
            (if c.is_primary() {
                m.is_leader()
            } else {
                m.is_standby_leader()
            }) && m.is_healthy()
        });
        // A secondary cloud whose standby leader a killed run left
        // stopped: that host goes on as its leader.
        let left = c.hosts.iter().find(|h| pending.contains(&h.name));
        match (leader, left) {
            (Some(l), _) => {
                leaders.insert(c.name.clone(), l.name.clone());
            }
            (None, Some(h)) if !c.is_primary() => {
                leaders.insert(c.name.clone(), h.name.clone());
            }
            (None, _) => problems.push(format!("{} has no running leader", c.name)),
        }
        for h in c.hosts.iter().filter(|h| !pending.contains(&h.name)) {
            match view.members.iter().find(|m| m.name == h.name) {
                Some(m) if !m.is_healthy() => {
                    problems.push(format!("{}: its member is {} ({})", h.name, m.state, m.role))
                }
                Some(m) => {
                    if let Some(lag) = m.lag.as_ref().and_then(|l| l.as_u64()).filter(|l| *l > bound) {
                        lagging += 1;
                        problems.push(format!(
                            "{}: its replica is {lag} bytes behind (maximum_lag_on_failover: {bound})",
                            h.name
                        ));
                    }
                }
                None => problems.push(format!("{}: not a member of {}'s Patroni cluster", h.name, c.name)),
            }
        }
    }
    problems.extend(etcd_down(fleet, pending).await);
    let only_lag = lagging == problems.len();
    (leaders, problems, only_lag)
}

/// Every member of every etcd cluster (each cloud's, the site's) that
/// does not answer healthy, but for hosts a killed run left: stopping a
/// host beside one would leave its cluster without a majority (a cloud's
/// Patroni without its DCS; the site lease unrenewed, its master fenced).
pub(crate) async fn etcd_down(fleet: &Fleet, pending: &BTreeSet<String>) -> Vec<String> {
    let d = &fleet.design;
    let mut clusters: Vec<(String, Vec<&Host>, u16)> = d
        .clouds
        .iter()
        .map(|c| {
            (
                format!("{}'s etcd", c.name),
                c.hosts.iter().collect(),
                d.etcd.client_port,
            )
        })
        .collect();
    if let Some(site) = &d.site {
        let members = d.site_members().into_iter().map(|(_, h)| h).collect();
        clusters.push(("the site etcd".to_string(), members, site.client_port));
    }
    let mut problems = Vec::new();
    for (what, members, port) in clusters {
        let script = upgrade::etcd_health_script(port);
        let mut out = Err(anyhow!("none of its hosts is connected"));
        for h in members.iter().filter(|h| !pending.contains(&h.name)) {
            let Ok(r) = fleet.remote(&h.name) else { continue };
            out = r.check("asking etcd's members", &script).await;
            if out.is_ok() {
                break;
            }
        }
        let healthy = match out {
            Ok(out) => upgrade::healthy_endpoints(&out),
            Err(e) => {
                problems.push(format!("{what}: no member could be asked ({e:#})"));
                continue;
            }
        };
        for h in members.iter().filter(|h| !pending.contains(&h.name)) {
            if !healthy.iter().any(|a| a == &h.address) {
                problems.push(format!("{what}: the member on {} is not healthy", h.name));
            }
        }
    }
    problems
}

/// Patroni on `leader`, the primary cloud's new master (restored, or
/// upgraded), takes the cluster (with the site lease first), then the
/// site's agents and fences start again.
pub(crate) async fn start_leader(fleet: &Fleet, primary: &Cloud, leader: &str) -> anyhow::Result<()> {
    let d = &fleet.design;
    if d.site.is_some() {
        super::site::take(fleet, &primary.name, false, false, None).await?;
        // A whole ttl from now: a Patroni that promotes (the data stopped
        // as a primary) asks for the lease in its pre_promote, and the
        // agents that would renew it are stopped until the master runs.
        super::site::renew(fleet, &primary.name).await?;
    }
    fleet
        .remote(leader)?
        .check("starting Patroni", &systemd::unit_script(Verb::Start, "patroni"))
        .await?;
    poll(Duration::from_secs(120), || async {
        Ok(fleet.master(primary).await.ok().flatten().as_deref() == Some(leader))
    })
    .await
    .with_context(|| format!("Patroni on {leader} did not take the cluster as its master"))?;
    if d.site.is_some() {
        // Its master renews the lease it just took.
        on_hosts(
            fleet,
            d.clouds_in_order().iter().flat_map(|c| &c.hosts),
            "starting the site agent and fence",
            &site_services_script(true),
        )
        .await?;
    }
    Ok(())
}

/// Every cloud led and whole again, and the GLB serving.
pub(crate) async fn wait_healthy(fleet: &Fleet, primary: &Cloud) -> anyhow::Result<()> {
    let d = &fleet.design;
    for c in &d.clouds_in_order() {
        let waited = poll(Duration::from_secs(600), || async {
            let members = fleet.cluster_view(c).await.unwrap_or_default();
            let led = members.iter().any(|m| {
                (if c.is_primary() {
                    m.is_leader()
                } else {
                    m.is_standby_leader()
                }) && m.is_healthy()
            });
            Ok(led
                && c.hosts
                    .iter()
                    .all(|h| members.iter().any(|m| m.name == h.name && m.is_healthy())))
        })
        .await;
        if let Err(e) = waited {
            // Which member is not there yet, as Patroni last said: the error
            // alone named only the cloud.
            let members = fleet.cluster_view(c).await.unwrap_or_default();
            let missing: Vec<String> = c
                .hosts
                .iter()
                .filter(|h| !members.iter().any(|m| m.name == h.name && m.is_healthy()))
                .map(|h| match members.iter().find(|m| m.name == h.name) {
                    Some(m) => format!("{} ({} {})", h.name, m.role, m.state),
                    None => format!("{} (not a Patroni member)", h.name),
                })
                .collect();
            return Err(e.context(format!(
                "{} did not become healthy; not healthy: {}",
                c.name,
                if missing.is_empty() {
                    "none now".to_string()
                } else {
                    missing.join(", ")
                }
            )));
        }
    }
    fleet.wait_serving(d, primary).await
}

/// Stops or starts the site's agent and fence. Stopped: the fence too,
/// for the cluster is down on purpose and the restored master starts
/// before its agent renews. Started: the restored master was promoted
/// outside Patroni (no pre_promote, no recorded renewal), so the fence
/// starts with a fresh grace, in which the agent renews.
pub(crate) fn site_services_script(start: bool) -> String {
    if start {
        format!(
            "{}\nrm -f {}\n{}",
            systemd::unit_script(Verb::Start, site::AGENT_SERVICE),
            site::FENCE_SINCE,
            systemd::unit_script(Verb::Start, site::FENCE_SERVICE)
        )
    } else {
        format!("{}\n{}", stop(site::AGENT_SERVICE), stop(site::FENCE_SERVICE))
    }
}

fn stop(unit: &str) -> String {
    systemd::unit_script(Verb::Stop, unit)
}

/// Runs `script` on every host at once; the first failure names its host.
pub(crate) async fn on_hosts<'a>(
    fleet: &Fleet,
    hosts: impl IntoIterator<Item = &'a Host>,
    what: &str,
    script: &str,
) -> anyhow::Result<()> {
    let runs = hosts.into_iter().map(|h| async move {
        fleet
            .remote(&h.name)?
            .check(what, script)
            .await
            .with_context(|| h.name.clone())
    });
    futures::future::try_join_all(runs).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{default_lab, Sim};

    /// The major upgrade's CI run: a replica read 6 MB behind in Patroni's
    /// view right after a bulk insert it had replayed (its member key a
    /// loop old), and the upgrade was refused.
    #[tokio::test(start_paused = true)]
    async fn a_lag_that_a_loop_later_is_gone_does_not_refuse() {
        let sim = Sim::new(&default_lab());
        for h in ["dc2-pg2", "dc2-pg3"] {
            sim.world().hosts.get_mut(h).unwrap().lag_reports = vec![6_427_992, 6_427_992];
        }
        let fleet = sim.fleet(&sim.design());
        let leaders = healthy_leaders(&fleet, &BTreeSet::new(), "major upgrade")
            .await
            .unwrap();
        assert_eq!(leaders.len(), 3, "{leaders:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lag_that_stays_refuses_once_two_loops_passed() {
        let sim = Sim::new(&default_lab());
        sim.world().hosts.get_mut("dc2-pg2").unwrap().lag_reports = vec![6_427_992; 100];
        let fleet = sim.fleet(&sim.design());
        let started = tokio::time::Instant::now();
        let e = healthy_leaders(&fleet, &BTreeSet::new(), "major upgrade")
            .await
            .unwrap_err();
        assert!(
            format!("{e:#}").contains("dc2-pg2: its replica is 6427992 bytes behind"),
            "{e:#}"
        );
        assert!(started.elapsed() >= Duration::from_secs(25), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_member_refuses_at_once() {
        let sim = Sim::new(&default_lab());
        sim.world().hosts.get_mut("dc2-pg2").unwrap().up = false;
        let fleet = sim.fleet(&sim.design());
        let started = tokio::time::Instant::now();
        let e = healthy_leaders(&fleet, &BTreeSet::new(), "major upgrade")
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("dc2-pg2: its member is stopped"), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
