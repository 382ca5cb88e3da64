//! recover-node against a fake fleet: its refusals and its verdicts, and
//! what each verdict does to the node's data.

use super::*;
use crate::testkit::{Sim, THREE_CLOUDS};

fn opts() -> Options {
    Options {
        yes: true,
        force: false,
        reclone: false,
        dry_run: false,
    }
}

async fn recover_node(sim: &Sim, host: &str, opts: &Options) -> anyhow::Result<()> {
    let design = sim.design();
    let (cloud, h) = match design.find_host(host) {
        Some((Some(c), h)) => (c.clone(), h.clone()),
        _ => panic!("no host {host}"),
    };
    let fleet = sim.fleet(&design);
    run_on(&fleet, &cloud, &h, opts, ui::Output::Json).await
}

/// dc1-pg2 failed: Patroni stopped, its WAL as `set` leaves it.
fn failed(sim: &Sim, set: impl FnOnce(&mut crate::testkit::SimHost)) {
    let mut w = sim.world();
    let h = w.hosts.get_mut("dc1-pg2").unwrap();
    h.up = false;
    set(h);
}

fn did(sim: &Sim, what: &str) -> bool {
    sim.events().iter().any(|e| e == &format!("dc1-pg2: {what}"))
}

#[tokio::test(start_paused = true)]
async fn the_running_master_is_not_recovered_without_force() {
    let sim = Sim::new(THREE_CLOUDS);
    let e = recover_node(&sim, "dc1-pg1", &opts()).await.unwrap_err();
    assert!(e.downcast_ref::<Usage>().is_some(), "exit 2: {e:#}");
    assert!(e.to_string().contains("use `pgha switchover` first"), "{e}");
    assert!(!sim.events().iter().any(|e| e.contains("stop patroni")));
    assert!(sim.world().lock.is_none(), "the lock is released on a refusal");
}

#[tokio::test(start_paused = true)]
async fn a_healthy_replica_is_left_alone() {
    let sim = Sim::new(THREE_CLOUDS);
    recover_node(&sim, "dc1-pg2", &opts()).await.unwrap();
    assert!(!did(&sim, "stop patroni"), "{:#?}", sim.events());
}

#[tokio::test(start_paused = true)]
async fn a_replica_behind_the_master_takes_the_fast_path() {
    let sim = Sim::new(THREE_CLOUDS);
    failed(&sim, |h| h.lsn = 0x5000000);
    recover_node(&sim, "dc1-pg2", &opts()).await.unwrap();
    assert!(did(&sim, "stop patroni") && did(&sim, "start patroni"));
    assert!(!did(&sim, "discard data"), "{:#?}", sim.events());
    let w = sim.world();
    assert!(w.hosts["dc1-pg2"].up && w.hosts["dc1-pg2"].lost.is_empty());
}

#[tokio::test(start_paused = true)]
async fn commits_only_the_node_holds_stop_the_recovery_and_force_keeps_them_aside() {
    let sim = Sim::new(THREE_CLOUDS);
    failed(&sim, |h| {
        h.lsn = 0x5001000;
        h.commits = vec!["2026-11-26 10:00:01+00".into()];
    });
    let e = format!("{:#}", recover_node(&sim, "dc1-pg2", &opts()).await.unwrap_err());
    assert!(
        e.contains("holds data that exists nowhere else") && e.contains("1 commit"),
        "{e}"
    );
    assert!(
        !did(&sim, "start patroni") && !did(&sim, "discard data"),
        "left stopped, data untouched"
    );
    assert!(!sim.world().hosts["dc1-pg2"].up);
    let force = Options { force: true, ..opts() };
    recover_node(&sim, "dc1-pg2", &force).await.unwrap();
    assert!(did(&sim, "discard data (kept aside)"), "{:#?}", sim.events());
    let w = sim.world();
    let h = &w.hosts["dc1-pg2"];
    assert_eq!(h.kept_aside, ["2026-11-26 10:00:01+00"]);
    assert!(h.lost.is_empty() && h.up && h.data);
}

#[tokio::test(start_paused = true)]
async fn a_timeline_born_twice_is_copied_afresh_not_rewound() {
    // Same timeline number as the master, same position range, other records.
    let sim = Sim::new(THREE_CLOUDS);
    failed(&sim, |h| {
        h.lsn = 0x5000040;
        h.records = "other".into();
    });
    recover_node(&sim, "dc1-pg2", &opts()).await.unwrap();
    assert!(did(&sim, "discard data"), "{:#?}", sim.events());
}

#[tokio::test(start_paused = true)]
async fn an_empty_node_is_copied_and_an_unhealthy_etcd_member_restarted_first() {
    let sim = Sim::new(THREE_CLOUDS);
    failed(&sim, |h| {
        h.data = false;
        h.etcd_healthy = false;
    });
    let e = format!("{:#}", recover_node(&sim, "dc1-pg2", &opts()).await.unwrap_err());
    // The fake's etcd stays unhealthy: the restart is tried, then the repair stops.
    assert!(e.contains("restarting etcd") || e.contains("etcd"), "{e}");
    assert!(!did(&sim, "start patroni"));
    sim.world().hosts.get_mut("dc1-pg2").unwrap().etcd_healthy = true;
    recover_node(&sim, "dc1-pg2", &opts()).await.unwrap();
    assert!(did(&sim, "start patroni") && sim.world().hosts["dc1-pg2"].data);
}
