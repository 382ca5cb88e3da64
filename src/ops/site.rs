//! The site lease as commands see it (see `components::site`): read it for
//! `status`, and give it to a cloud for `cloud make-primary`.

use std::time::Duration;

use tokio::time::Instant;

use anyhow::{anyhow, bail};

use crate::components::site::{self, SiteState};
use crate::design::Design;
use crate::fleet::Fleet;

/// The site members pgha can reach, `prefer`'s first.
fn members<'a>(fleet: &'a Fleet, prefer: Option<&str>) -> Vec<&'a str> {
    let mut hosts: Vec<(bool, &str)> = fleet
        .design
        .site_members()
        .into_iter()
        .filter(|(_, h)| fleet.reachable(&h.name))
        .map(|(c, h)| (c.map(|c| c.name.as_str()) != prefer, h.name.as_str()))
        .collect();
    hosts.sort_by_key(|(later, _)| *later);
    hosts.into_iter().map(|(_, h)| h).collect()
}

/// Runs `script` on the first site member that answers.
async fn on_a_member(fleet: &Fleet, prefer: Option<&str>, what: &str, script: &str) -> anyhow::Result<String> {
    let mut last = anyhow!("no site member is reachable over SSH");
    for host in members(fleet, prefer) {
        match fleet.remote(host)?.check(what, script).await {
            Ok(out) => return Ok(out),
            Err(e) => last = e.context(host.to_string()),
        }
    }
    Err(last)
}

/// A flip rewrites every HAProxy config and the GLB's, which check each
/// server's site gate: on hosts deployed by a pgha without the gate, that
/// would close every route. Refused before any change; a host that cannot
/// tell is left to the flip's own checks.
pub(crate) async fn refuse_without_gates(fleet: &Fleet) -> anyhow::Result<()> {
    if fleet.design.site.is_none() {
        return Ok(());
    }
    let script = site::gate_installed_script();
    let asks = fleet
        .design
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .filter(|h| fleet.reachable(&h.name))
        .map(|h| {
            let script = &script;
            async move {
                let out = match fleet.remote(&h.name) {
                    Ok(r) => r.check("looking for the site gate", script).await.ok(),
                    Err(_) => None,
                };
                (h.name.as_str(), out)
            }
        });
    let missing: Vec<&str> = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter(|(_, out)| out.as_deref().map(str::trim) == Some("none"))
        .map(|(h, _)| h)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "{} {} no site gate ({}): this pgha's HAProxy and GLB configs check it, and the flip would write them, \
         closing every route. Nothing was changed\n  hint: run `pgha deploy` first (it starts the gates before \
         HAProxy names them), then the flip",
        missing.join(", "),
        if missing.len() == 1 { "has" } else { "have" },
        site::GATE_SERVICE
    )
}

/// The lease, its holder and the members' health.
pub(crate) async fn read(fleet: &Fleet, prefer: Option<&str>) -> anyhow::Result<SiteState> {
    let out = on_a_member(
        fleet,
        prefer,
        "reading the site lease",
        &site::read_script(&fleet.design),
    )
    .await?;
    Ok(site::parse_read(&out))
}

/// Gives the lease to `cloud`. `demoted`: pgha has just made the holder a
/// standby cluster (a planned flip), so its lease may be moved at once.
/// Otherwise a lease held by another cloud is waited out (a cloud cut off
/// from most sites cannot renew it; it fenced itself), and one still renewed
/// after its ttl is refused unless `force`: that cloud is serving.
/// Renews the site lease once while it names `cloud` (no site: nothing to
/// do). `Ok(false)` when it names another cloud or none.
pub(crate) async fn renew(fleet: &Fleet, cloud: &str) -> anyhow::Result<bool> {
    if fleet.design.site.is_none() {
        return Ok(true);
    }
    let script = site::renew_script(&fleet.design, cloud);
    let out = on_a_member(fleet, Some(cloud), "renewing the site lease", &script).await?;
    Ok(out.trim() == "renewed")
}

/// Marks `from`'s lease as handed over to `to` before a planned flip
/// demotes `from` (see `site::handover_script`). Nothing to mark when the
/// key names no lease of `from`.
pub(crate) async fn hand_over(fleet: &Fleet, from: &str, to: &str) -> anyhow::Result<()> {
    let script = site::handover_script(&fleet.design, from, to);
    for _ in 0..5 {
        let out = on_a_member(fleet, Some(from), "marking the site lease as handed over", &script).await?;
        match out.trim() {
            "marked" | "not held" => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    bail!("the site lease kept changing while pgha marked it as handed over to {to}; nothing was demoted")
}

/// What a flip checks of the site's replication record (issue 29) just
/// before it takes the lease: the record is read after the revisions the
/// take compares, so the one judged is the one the old primary cloud left.
pub(crate) type Judge<'a> = &'a (dyn Fn(&SiteState) -> anyhow::Result<()> + Sync);

/// `cloud` takes the site lease: at once from a holder pgha just demoted
/// (`demoted`) or with `force`, else once the lease expired. With `judge`,
/// the replication record the take would stand on must pass it, and the
/// take holds only if the record did not change since. `Ok(true)` when
/// this call wrote it, `Ok(false)` when `cloud` held it already (or there
/// is no site lease).
pub(crate) async fn take(
    fleet: &Fleet,
    cloud: &str,
    demoted: bool,
    force: bool,
    judge: Option<Judge<'_>>,
) -> anyhow::Result<bool> {
    let d: &Design = &fleet.design;
    let Some(s) = &d.site else { return Ok(false) };
    let deadline = Instant::now() + Duration::from_secs(u64::from(s.ttl) + 10);
    let mut told = false;
    loop {
        // The revisions before what is judged (the holder, the record): a
        // change after them fails the transaction. Its error waits for the
        // members' health, which says why.
        let revisions = on_a_member(
            fleet,
            Some(cloud),
            "reading the site's revisions",
            &site::revision_script(d),
        )
        .await;
        let state = read(fleet, Some(cloud)).await?;
        let healthy = state.members.iter().filter(|(_, ok)| *ok).count();
        if healthy * 2 <= d.site_members().len() {
            bail!(
                "only {healthy} of {} site members answer: without their majority nobody can hold the site lease, \
                 and {cloud} may not become primary\n  hint: bring the witness or another cloud's first host back",
                d.site_members().len()
            );
        }
        match state.holder.as_deref() {
            Some(h) if h == cloud => return Ok(false),
            None => {}
            Some(_) if demoted || force => {}
            Some(holder) if Instant::now() >= deadline => bail!(
                "cloud {holder} still renews the site lease ({}s left): its master is serving and reaches most \
                 sites; making {cloud} primary now would make two masters. Nothing was promoted\n  hint: `pgha cloud \
                 make-primary {cloud}` while {holder} is reachable demotes it first; `--accept-data-loss` takes the lease anyway \
                 (its master then fences itself as soon as it reads the lease)",
                state.remaining.unwrap_or(0)
            ),
            Some(holder) => {
                if !told {
                    crate::ui::progress::note(format!(
                        "cloud {holder} holds the site lease ({}s left): waiting for it to expire",
                        state.remaining.unwrap_or(0)
                    ));
                    told = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let late = Instant::now() >= deadline;
        match revisions.map(|out| site::parse_revisions(&out).ok_or(out)) {
            Ok(Ok(revisions)) => {
                if let Some(judge) = judge {
                    judge(&state)?;
                }
                let script = site::take_script(d, cloud, s.ttl, revisions, judge.is_some());
                let out = on_a_member(fleet, Some(cloud), "taking the site lease", &script).await?;
                if out.trim() == "taken" {
                    return Ok(true);
                }
                if late {
                    bail!("the site lease kept changing while {cloud} took it; nothing was promoted");
                }
                // Another writer moved it between the read and the transaction.
            }
            Ok(Err(out)) if late => bail!(
                "the site's revisions do not read: {:?}; nothing was promoted",
                out.trim()
            ),
            Err(e) if late => return Err(e.context("nothing was promoted")),
            // Revisions that did not read are read again, as after a lost race.
            Ok(Err(_)) | Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
