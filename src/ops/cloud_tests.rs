//! The flip runner against a fake fleet: step order, refusals, the lock, and
//! a flip killed at every call then run again.

use super::*;
use crate::testkit::{servers_in, CrashWhen, Sim, THREE_CLOUDS};

const YES: Options = Options {
    yes: true,
    force: false,
    dry_run: false,
};

async fn flip(sim: &Sim, name: &str, flip: Flip) -> anyhow::Result<()> {
    flip_with(sim, name, flip, &YES).await
}

async fn flip_with(sim: &Sim, name: &str, flip: Flip, opts: &Options) -> anyhow::Result<()> {
    let design = sim.design();
    let fleet = sim.fleet(&design);
    run_on(&fleet, name, flip, opts, ui::Output::Json).await
}

fn position(events: &[String], what: &str) -> usize {
    events
        .iter()
        .position(|e| e.ends_with(what))
        .unwrap_or_else(|| panic!("no `{what}` in {events:#?}"))
}

/// The end every flip to `cloud` must reach, in the hosts and in the files.
fn assert_serving(sim: &Sim, cloud: &str) {
    let design = sim.design();
    let w = sim.world();
    let leader = format!("{cloud}-pg1");
    assert_eq!(w.writable_masters(), [leader], "one master, in {cloud}");
    assert!(w.most_masters <= 1, "two writable masters at some point");
    assert!(w.promoted_behind.is_empty(), "promoted behind {:?}", w.promoted_behind);
    for c in &design.clouds {
        assert_eq!(c.is_primary(), c.name == cloud, "design status of {}", c.name);
        if c.name != cloud {
            assert_eq!(w.follows(&c.name).as_deref(), Some(cloud), "{} follows {cloud}", c.name);
        }
    }
    let target: Vec<String> = design
        .cloud(cloud)
        .unwrap()
        .hosts
        .iter()
        .map(|h| h.name.clone())
        .collect();
    // With the site lease, HAProxy and the GLB list every host, and the
    // site gate of each opens only on the master.
    if design.site.is_none() {
        for h in design.clouds.iter().flat_map(|c| &c.hosts) {
            assert_eq!(w.routed(&h.name, "sim-primary"), target, "HAProxy on {}", h.name);
        }
        assert_eq!(w.routed("glb1", "sim-glb"), target, "the GLB");
    } else {
        assert_eq!(w.site_holder.as_deref(), Some(cloud), "the site lease");
    }
    let state = state::load(&design).unwrap();
    assert!(state.flip.is_none(), "the flip is finished: {:?}", state.flip);
    assert!(w.lock.is_none(), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn a_planned_flip_drains_fences_waits_then_promotes() {
    let sim = Sim::new(THREE_CLOUDS);
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    let e = sim.events();
    assert_eq!(e[0], "dc1-pg1: lock", "the lock comes first: {e:#?}");
    let drain = position(&e, "glb1: install /etc/haproxy/haproxy.cfg and reload");
    let demote = position(&e, "dc1 follows dc2");
    // Where dc1's WAL ends is asked of the master it demoted, not of Patroni.
    let old_end = position(&e, "dc1-pg1: read WAL position");
    assert!(demote < old_end, "{e:#?}");
    let caught_up = e
        .iter()
        .rposition(|x| x == "dc2-pg1: read WAL position")
        .expect("the new leader's position is read");
    let promote = position(&e, "promote dc2");
    let follow = position(&e, "dc3 follows dc2");
    assert!(
        drain < demote && demote < caught_up && caught_up < promote && promote < follow,
        "{e:#?}"
    );
    assert_eq!(e.last().unwrap(), "dc1-pg1: unlock");
    assert_serving(&sim, "dc2");
}

/// A host an older pgha deployed has no certificate for the metrics
/// gateway (a flip writes no TLS file): its HAProxy gets the new route
/// without the gateway, which HAProxy would refuse to load; the others'
/// keep it.
#[tokio::test(start_paused = true)]
async fn a_flip_onto_a_host_without_haproxy_pem_routes_without_naming_it() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world()
        .hosts
        .get_mut("dc2-pg2")
        .unwrap()
        .files
        .remove(haproxy::PEM.path);
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
    let w = sim.world();
    let config = |h: &str| w.hosts[h].files[haproxy::CONFIG.path].clone();
    // Neither the metrics gateway nor the checks' client certificate.
    assert!(!config("dc2-pg2").contains("-metrics"), "{}", config("dc2-pg2"));
    assert!(!config("dc2-pg2").contains(haproxy::PEM.path), "{}", config("dc2-pg2"));
    assert!(
        config("dc2-pg1").contains(&format!("ca-file /etc/pgha/tls/ca.crt crt {}", haproxy::PEM.path)),
        "{}",
        config("dc2-pg1")
    );
    assert!(
        config("dc2-pg1").contains("frontend sim-metrics"),
        "{}",
        config("dc2-pg1")
    );
    assert_eq!(
        servers_in(&config("dc2-pg2"), "sim-primary"),
        servers_in(&config("dc2-pg1"), "sim-primary")
    );
}

/// A standby leader whose WAL receiver does not stream: the flip is
/// refused before anything is fenced (nothing restarts it behind the DBA's
/// back); once it streams again, the same command runs as planned.
#[tokio::test(start_paused = true)]
async fn a_standby_leader_that_does_not_stream_refuses_the_flip_before_any_change() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("dc2-pg1").unwrap().stuck_receiver = true;
    let e = flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("does not stream from the primary cloud"),
        "{e:#}"
    );
    assert!(format!("{e:#}").contains("nothing was changed"), "{e:#}");
    let events = sim.events();
    assert!(
        !events.iter().any(|x| x.contains("install") || x.contains("follows")),
        "{events:#?}"
    );
    assert_eq!(sim.world().writable_masters(), ["dc1-pg1"]);
    sim.world().hosts.get_mut("dc2-pg1").unwrap().stuck_receiver = false;
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
}

#[tokio::test(start_paused = true)]
async fn make_secondary_then_make_primary_is_the_seeds_flip() {
    let sim = Sim::new(THREE_CLOUDS);
    flip(&sim, "dc1", Flip::MakeSecondary).await.unwrap();
    {
        let w = sim.world();
        assert!(w.writable_masters().is_empty(), "no master while no cloud is primary");
        assert!(w.routed("glb1", "sim-glb").is_empty(), "the GLB forwards nowhere");
    }
    assert!(sim.design().primary_clouds().next().is_none());
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
}

#[tokio::test(start_paused = true)]
async fn a_lost_primary_cloud_is_fenced_on_record_and_the_new_one_promoted() {
    let mut sim = Sim::new(THREE_CLOUDS);
    sim.lose_cloud("dc1");
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    let e = sim.events();
    assert_eq!(
        e[0], "dc2-pg1: lock",
        "the lock is taken where the flip promotes: {e:#?}"
    );
    assert!(!e.iter().any(|x| x.starts_with("dc1")));
    let design = sim.design();
    let pending = state::load(&design).unwrap().pending;
    assert_eq!(pending["dc1"], ["become a standby cluster"], "{pending:?}");
    let w = sim.world();
    assert_eq!(w.writable_masters(), ["dc2-pg1"]);
    assert_eq!(w.clouds["dc3"].standby_of.as_deref(), Some("dc2"));
}

#[tokio::test(start_paused = true)]
async fn commits_only_another_cloud_holds_stop_the_promotion_unless_forced() {
    let mut sim = Sim::new(THREE_CLOUDS);
    sim.lose_cloud("dc1");
    {
        let mut w = sim.world();
        let h = w.hosts.get_mut("dc3-pg2").unwrap();
        h.lsn += 0x1000;
        h.commits = vec!["2026-11-26 10:00:01.000001+00".into()];
    }
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("would lose data") && e.contains("dc3-pg2"), "{e}");
    assert!(sim.world().writable_masters().is_empty());
    assert!(!sim.events().iter().any(|x| x.contains("promote")));
    // The run is recorded as unfinished: the same command with --accept-data-loss finishes it.
    flip_with(&sim, "dc2", Flip::MakePrimary, &Options { force: true, ..YES })
        .await
        .unwrap();
    assert_eq!(sim.world().writable_masters(), ["dc2-pg1"]);
}

/// A stopped host's position is where its last record starts (pg_waldump):
/// one record past the new leader's end it reads equal to that end, and
/// its commits are still looked for, never taken for nothing to lose.
#[tokio::test(start_paused = true)]
async fn a_stopped_host_one_record_ahead_is_not_taken_for_caught_up() {
    let mut sim = Sim::new(THREE_CLOUDS);
    sim.lose_cloud("dc1");
    {
        let mut w = sim.world();
        let lsn = w.hosts["dc2-pg1"].lsn;
        let h = w.hosts.get_mut("dc3-pg2").unwrap();
        h.up = false;
        h.lsn = lsn + 24;
        h.commits = vec!["2026-12-04 18:00:00.000001+00".into()];
    }
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("would lose data") && e.contains("dc3-pg2"), "{e}");
    assert!(sim.world().writable_masters().is_empty());
}

/// Issue 22: a reachable host whose WAL cannot be read (pg_waldump fails on
/// a stopped dc3 host) may hold commits the new primary lacks: refused
/// without --accept-data-loss, never skipped as "nothing to lose".
#[tokio::test(start_paused = true)]
async fn a_host_whose_wal_cannot_be_read_stops_the_promotion_unless_forced() {
    let mut sim = Sim::new(THREE_CLOUDS);
    sim.lose_cloud("dc1");
    {
        let mut w = sim.world();
        let h = w.hosts.get_mut("dc3-pg2").unwrap();
        h.up = false;
        h.wal_unreadable = true;
    }
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(
        e.contains("would lose data") && e.contains("dc3-pg2: its WAL position cannot be read"),
        "{e}"
    );
    assert!(sim.world().writable_masters().is_empty());
    flip_with(&sim, "dc2", Flip::MakePrimary, &Options { force: true, ..YES })
        .await
        .unwrap();
    assert_eq!(sim.world().writable_masters(), ["dc2-pg1"]);
}

#[tokio::test(start_paused = true)]
async fn a_flip_while_another_pgha_holds_the_cluster_lock_is_refused_before_any_change() {
    let sim = Sim::new(THREE_CLOUDS);
    let other = crate::lock::Holder {
        user: "alice".into(),
        host: "ops2".into(),
        pid: 4242,
        command: "deploy".into(),
        since: 0,
    };
    let value = crate::remote::base64(serde_json::to_string(&other).unwrap().as_bytes());
    sim.world().lock = Some((value, "1".into()));
    let e = flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err();
    let busy = e.downcast_ref::<crate::lock::Busy>().expect("Busy (exit 1)");
    assert_eq!(busy.holder.as_ref(), Some(&other));
    assert!(e.to_string().contains("alice@ops2 (pid 4242)"), "{e}");
    assert_eq!(sim.events(), ["dc1-pg1: lock refused"]);
    assert!(state::load(&sim.design()).unwrap().flip.is_none(), "nothing recorded");
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_changes_nothing() {
    let sim = Sim::new(THREE_CLOUDS);
    let design = sim.design();
    let fleet = sim.fleet(&design);
    let dry = Options { dry_run: true, ..YES };
    run_on(&fleet, "dc2", Flip::MakePrimary, &dry, ui::Output::Json)
        .await
        .unwrap();
    // Only read: the lock, whether a cloud is paused, the unlock.
    assert_eq!(
        sim.events(),
        [
            "dc1-pg1: lock",
            "dc1-pg1: read cluster",
            "dc2-pg1: read cluster",
            "dc3-pg1: read cluster",
            "dc1-pg1: unlock"
        ]
    );
    assert!(sim.design().cloud("dc1").unwrap().is_primary());
}

/// kill -9 at every host call of a flip, before the host gets the command
/// and after it applied it; then the same command again. Each time: one
/// master at every moment, and in the end the flip done, design and state
/// agreeing with the hosts.
#[tokio::test(start_paused = true)]
async fn a_flip_killed_at_any_call_finishes_when_run_again() {
    let calls = {
        let sim = Sim::new(THREE_CLOUDS);
        flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
        let n = sim.world().calls;
        n
    };
    assert!(calls > 20, "a flip makes {calls} calls");
    for at in 0..calls {
        for when in [CrashWhen::Before, CrashWhen::After] {
            let sim = Sim::new(THREE_CLOUDS);
            sim.world().crash = Some((at, when));
            let first = flip(&sim, "dc2", Flip::MakePrimary).await;
            {
                let mut w = sim.world();
                w.crash = None;
                // The killed run's lease expires (LEASE_TTL).
                w.lock = None;
            }
            if first.is_ok() {
                // Killed while releasing the lock: the flip itself was done.
                assert_serving(&sim, "dc2");
                continue;
            }
            let design = sim.design();
            if design.cloud("dc2").unwrap().is_primary() || state::load(&design).unwrap().flip.is_some() {
                flip(&sim, "dc2", Flip::MakePrimary)
                    .await
                    .unwrap_or_else(|e| panic!("resuming after a kill at call {at} ({when:?}): {e:#}"));
            } else {
                // Killed before it recorded anything: nothing changed, and
                // the same command runs the whole flip.
                assert_eq!(sim.world().writable_masters(), ["dc1-pg1"], "call {at} {when:?}");
                flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
            }
            assert_serving(&sim, "dc2");
        }
    }
}

/// Issue 11: with the site lease, a planned flip moves the lease after the
/// old primary is demoted and caught up, and before the promotion (Patroni's
/// pre_promote refuses a cloud without it).
#[tokio::test(start_paused = true)]
async fn with_the_site_lease_a_planned_flip_moves_it_before_promoting() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    let e = sim.events();
    // Standby clouds stream through their own HAProxy, which finds dc2.
    let demote = position(&e, "dc1 follows its HAProxy");
    let lease = position(&e, "dc2 takes the site lease");
    let promote = position(&e, "promote dc2");
    assert!(demote < lease && lease < promote, "{e:#?}");
    // The GLB lists every cloud, the lease decides: its config stays, and
    // no reload comes on the write path.
    assert!(
        e.contains(&"glb1: unchanged /etc/haproxy/haproxy.cfg".to_string()),
        "{e:#?}"
    );
    assert!(!e.iter().any(|x| x.starts_with("glb1: install")), "{e:#?}");
    let w = sim.world();
    assert_eq!(w.site_holder.as_deref(), Some("dc2"));
    assert_eq!(w.writable_masters(), ["dc2-pg1"]);
    assert!(w.most_masters <= 1);
}

/// Issue 23: hosts deployed by a pgha without the site gate. A flip would
/// write HAProxy and GLB configs that check the gate, closing every route:
/// refused before any change, with the way through; after a deploy (the
/// gate there) it runs.
#[tokio::test(start_paused = true)]
async fn a_flip_onto_hosts_without_the_site_gate_is_refused_before_any_change() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    let unit = site::GATE_UNIT.path;
    let kept = sim.world().hosts["dc2-pg2"].files[unit].clone();
    sim.world().hosts.get_mut("dc2-pg2").unwrap().files.remove(unit);
    let e = flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err().to_string();
    assert!(
        e.contains("dc2-pg2 has no site gate") && e.contains("Nothing was changed") && e.contains("pgha deploy"),
        "{e}"
    );
    assert_eq!(sim.world().site_holder.as_deref(), Some("dc1"));
    assert!(!sim.events().iter().any(|x| x.contains("lock")), "{:#?}", sim.events());
    sim.world()
        .hosts
        .get_mut("dc2-pg2")
        .unwrap()
        .files
        .insert(unit.into(), kept);
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_eq!(sim.world().writable_masters(), ["dc2-pg1"]);
}

/// Issue 23: a site agent that fenced dc1 resumes it as soon as it may,
/// racing `make-primary dc2`: between pgha's demotion of dc1 and dc2 taking
/// the lease, dc1 still holds it. The hand-over mark, set before the
/// demotion, makes pre_promote refuse there: never two masters, and dc2
/// serves. (Without the mark, seen failing: dc1 resumed just before dc2
/// took the lease, then both were writable.)
#[tokio::test(start_paused = true)]
async fn a_fenced_cloud_resuming_never_races_a_flip_into_two_masters() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().fenced_agent = Some("dc1".into());
    let flipped = flip(&sim, "dc2", Flip::MakePrimary).await;
    let e = sim.events();
    assert!(
        sim.world().most_masters <= 1,
        "two writable masters at some point: {e:#?}"
    );
    flipped.unwrap();
    let mark = position(&e, "dc1 hands the site lease over");
    let demote = position(&e, "dc1 follows its HAProxy");
    let refused = position(&e, "dc1's pre_promote refuses: the lease is handed over to dc2");
    let lease = position(&e, "dc2 takes the site lease");
    assert!(mark < demote && demote < refused && refused < lease, "{e:#?}");
    assert!(!e.iter().any(|x| x.contains("resumed")), "{e:#?}");
    let w = sim.world();
    assert_eq!(w.site_holder.as_deref(), Some("dc2"));
    assert_eq!(w.writable_masters(), ["dc2-pg1"]);
}

/// A primary cloud pgha cannot reach but that still renews the lease is on
/// the majority side of the sites and serving: promoting elsewhere would
/// make two masters. Refused, after waiting out the ttl, unless --accept-data-loss.
#[tokio::test(start_paused = true)]
async fn a_lease_still_renewed_by_an_unreachable_cloud_stops_the_promotion_unless_forced() {
    let mut sim = Sim::new(&crate::testkit::with_site_lease());
    sim.lose_cloud("dc1");
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("cloud dc1 still renews the site lease"), "{e}");
    assert!(!sim.events().iter().any(|x| x.contains("promote")));
    assert_eq!(sim.world().site_holder.as_deref(), Some("dc1"));
    flip_with(&sim, "dc2", Flip::MakePrimary, &Options { force: true, ..YES })
        .await
        .unwrap();
    assert_eq!(sim.world().site_holder.as_deref(), Some("dc2"));
    assert_eq!(sim.world().writable_masters(), ["dc2-pg1"]);
}

/// Issue 29: while a flip waits for the lost primary cloud's lease to run
/// out, that cloud's agent may still rewrite its replication record
/// (asynchronous since a position the new cloud lacks, then commits alone).
/// The take judges the record it stands on: one rewritten after the check
/// refuses the promotion, and so does one rewritten between the take's read
/// and its transaction (the transaction compares the record's revision;
/// the take tries again and reads it).
#[tokio::test(start_paused = true)]
async fn a_record_rewritten_before_the_take_is_judged_again() {
    let lease = crate::testkit::with_site_lease() + "site: {synchronous: true}\n";
    // Reads of the lease: the flip's first look, the check, the take's.
    for (reads, changed) in [(1, false), (2, true)] {
        let mut sim = Sim::new(&lease);
        sim.lose_cloud("dc1");
        let at = sim.world().hosts["dc2-pg1"].lsn;
        {
            let mut w = sim.world();
            // dc1's lease ran out; its record said dc2 confirmed every commit.
            w.site_holder = None;
            w.site_sync = Some(format!(
                r#"{{"cloud": "dc1", "mode": "sync", "partner": "dc2", "lsn": {at}, "why": "dc2 streams"}}"#
            ));
            w.site_sync_rev = 3;
            w.sync_rewrite = Some((
                reads,
                format!(
                    r#"{{"cloud": "dc1", "mode": "async", "lsn": {}, "why": "dc2 stopped confirming"}}"#,
                    at + 0x1000
                ),
            ));
        }
        let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
        assert!(
            e.contains("would lose acknowledged commits") && e.contains("dc2 stopped confirming"),
            "after {reads} reads: {e}"
        );
        let w = sim.world();
        assert_eq!(
            w.log.iter().any(|c| c.what.contains("the replication record changed")),
            changed,
            "{:#?}",
            w.log
        );
        assert!(w.writable_masters().is_empty(), "{:?}", w.writable_masters());
        assert!(!w.log.iter().any(|c| c.what.contains("promote")), "{:#?}", w.log);
        assert_eq!(w.site_holder, None);
    }
}

/// Issue 22: a host of the demoted cloud whose every call hangs (its
/// storage stopped answering) makes the flip fail within its bound, with no
/// second master, never read as "read-only"; once it answers again, the
/// same command finishes the flip.
#[tokio::test(start_paused = true)]
async fn a_host_that_never_answers_makes_a_flip_fail_within_its_bound() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("dc1-pg2").unwrap().hangs = true;
    let started = tokio::time::Instant::now();
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(15 * 60), "took {took:?}: {e}");
    assert!(
        e.contains("no answer within") || e.contains("did not answer before the deadline"),
        "{e}"
    );
    {
        let w = sim.world();
        assert!(w.most_masters <= 1, "two writable masters at some point");
        assert!(!w.writable_masters().iter().any(|m| m.starts_with("dc2")), "{e}");
    }
    sim.world().hosts.get_mut("dc1-pg2").unwrap().hangs = false;
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
}

/// Issue 24: the site without a majority of its members. A planned flip
/// stops at the hand-over mark, before anything is demoted (dc1 serves on),
/// and finishes once the members are back; a lost primary cloud is not
/// replaced while nobody can hold the lease.
#[tokio::test(start_paused = true)]
async fn without_a_majority_of_site_members_no_cloud_is_promoted() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().site_down = 2;
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("no quorum") && e.contains("again to finish the flip"), "{e}");
    assert_eq!(sim.world().writable_masters(), ["dc1-pg1"], "dc1 serves on");
    assert!(
        !sim.events().iter().any(|x| x.contains("dc1 follows")),
        "{:#?}",
        sim.events()
    );
    sim.world().site_down = 0;
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
    assert_eq!(sim.world().site_holder.as_deref(), Some("dc2"));

    let mut sim = Sim::new(&crate::testkit::with_site_lease());
    sim.lose_cloud("dc1");
    sim.world().site_down = 2;
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("only 1 of 3 site members answer"), "{e}");
    let w = sim.world();
    assert!(w.writable_masters().is_empty(), "{:?}", w.writable_masters());
    assert!(!w.log.iter().any(|c| c.what.contains("promote")), "{:#?}", w.log);
    assert_eq!(w.site_holder.as_deref(), Some("dc1"));
}

/// Issue 24: a take of the site lease that loses the race to another
/// writer is tried again; a lease that keeps changing until the deadline
/// is never taken, and nothing is promoted.
#[tokio::test(start_paused = true)]
async fn a_site_lease_that_keeps_changing_is_never_taken_by_a_flip() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().lease_races = 2;
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    let lost = sim.events().iter().filter(|x| x.contains("loses the race")).count();
    assert_eq!(lost, 2);
    assert_serving(&sim, "dc2");

    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().lease_races = usize::MAX;
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(
        e.contains("kept changing while dc2 took it; nothing was promoted"),
        "{e}"
    );
    let w = sim.world();
    assert!(w.writable_masters().is_empty(), "{:?}", w.writable_masters());
    assert!(w.most_masters <= 1);
    assert!(!w.log.iter().any(|c| c.what.contains("promote")), "{:#?}", w.log);
}

/// Issue 24: a planned flip promotes only once the new cloud replayed all
/// the old master wrote. Replay stalled: the flip stops with dc1 fenced and
/// nothing promoted (no write lost, none possible); once dc2 replays, the
/// same command finishes.
#[tokio::test(start_paused = true)]
async fn a_new_cloud_that_does_not_catch_up_is_not_promoted() {
    let sim = Sim::new(THREE_CLOUDS);
    {
        let mut w = sim.world();
        w.replay_stalled = Some("dc2".into());
        w.hosts.get_mut("dc1-pg1").unwrap().lsn += 0x1000;
    }
    let e = format!("{:#}", flip(&sim, "dc2", Flip::MakePrimary).await.unwrap_err());
    assert!(e.contains("dc2 replayed up to") && e.contains("not promoting"), "{e}");
    {
        let w = sim.world();
        assert!(w.writable_masters().is_empty(), "{:?}", w.writable_masters());
        assert!(w.most_masters <= 1);
        assert!(!w.log.iter().any(|c| c.what.contains("promote")), "{:#?}", w.log);
    }
    sim.world().replay_stalled = None;
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
}

/// Debian's Patroni demotes a master to a standby cluster with an
/// immediate stop: WAL it flushed but had not sent is then on that host
/// alone, and the new cloud's route (HAProxy) has no master behind it. The
/// new cloud streams the rest from the demoted master directly, and only
/// then is promoted (the wait compares positions).
#[tokio::test(start_paused = true)]
async fn a_new_cloud_short_of_the_demoted_masters_last_wal_streams_it_directly() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().route_lost = Some("dc2".into());
    flip(&sim, "dc2", Flip::MakePrimary).await.unwrap();
    assert_serving(&sim, "dc2");
    let w = sim.world();
    assert!(
        w.log.iter().any(|c| c.what == "dc2 streams from 10.0.1.1 directly"),
        "{:#?}",
        w.log
    );
    assert!(w.most_masters <= 1);
}
