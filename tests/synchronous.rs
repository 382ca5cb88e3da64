//! Issue 29 end to end: synchronous replication between clouds, guarded by
//! the site lease. One lab of three sites (dc1, dc2 and a witness) deployed
//! with `site.synchronous: true`, a client writing through the GLB every
//! 100 ms, a writer inside the primary cloud's master and a monitor asking
//! every database host from inside whether it takes writes:
//!
//! 1. the primary's master records "synchronous with dc2" at the site and
//!    waits for dc2 on every commit;
//! 2. dc2 cut off alone: writes stall at most the documented bound, the
//!    site records "asynchronous since", the writes go on; healed, dc2
//!    catches up and the record says synchronous again;
//! 3. dc2 cut off again, then dc1 powered off whole before dc2 returns,
//!    auto failover on: dc2's standby leader, behind the position since
//!    which the record says dc1 went on alone, never takes the lease; dc1
//!    powered on takes it back and dc2 catches up;
//! 4. the primary cloud cut off, `cloud make-primary` of the other by hand:
//!    no acknowledged write lost from either writer (the inside one's
//!    commits stall until the fence), never two writable hosts;
//! 5. the same with auto failover: the synchronous partner takes the lease
//!    by itself, whatever the lag of the last published position.
//!
//! PGHA_SYNC_RUNS repeats 4 and 5 (default once each).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::partition::{
    cut_primary, epoch_secs, secs, set_auto_failover, set_synchronous, status_json, Monitor, Sites, DC2,
};
use common::{stderr, wait_for, writer, TestLab};

const SITES: Sites = Sites {
    name: "pgha-sync",
    prefix: "10.79.0",
};

/// The design's `site.synchronous_timeout` (the default).
const TIMEOUT: u64 = 10;

/// The site's record of the primary cloud's replication, as `pgha status` reads it.
fn record(lab: &TestLab) -> serde_json::Value {
    status_json(lab)["site"]["replication"].clone()
}

/// Waits until the record says `cloud` waits for `partner` on every commit.
fn wait_synchronous(lab: &TestLab, cloud: &str, partner: &str) {
    wait_synchronous_within(lab, cloud, partner, Duration::from_secs(120));
}

fn wait_synchronous_within(lab: &TestLab, cloud: &str, partner: &str, limit: Duration) {
    let mut seen = serde_json::Value::Null;
    wait_for(
        &format!("{cloud} synchronous with {partner} at the site"),
        limit,
        || {
            seen = record(lab);
            seen["cloud"] == cloud && seen["mode"] == "sync" && seen["partner"] == partner
        },
    );
    eprintln!("record: {seen}");
}

/// Writes stall while dc2 is cut off, for at most the bound, then go on:
/// the master records "asynchronous since" first.
fn secondary_cut_off(lab: &TestLab, pw: &str) {
    let monitor = Monitor::start(SITES);
    let (stop, handle) = writer(&SITES.glb(), pw);
    std::thread::sleep(Duration::from_secs(2));
    let cut = Instant::now();
    let out = lab.lab(&["partition", "dc2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = wait_asynchronous(lab);
    let degraded = cut.elapsed();
    assert_eq!(seen["cloud"], "dc1", "{seen}");
    // Writes go on without dc2 for a while.
    std::thread::sleep(Duration::from_secs(5));
    let out = lab.lab(&["unpartition", "dc2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let healed = Instant::now();
    wait_synchronous(lab, "dc1", "dc2");
    let back = healed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    for s in &samples {
        assert!(
            s.writable.iter().all(|h| h.starts_with("dc1")),
            "writable outside dc1: {:?}",
            s.writable
        );
    }
    // The bound (README): the timeout, the agent's loop (ttl/10 = 2 s) once
    // to see it and once to act, Patroni applying the change, the writer's
    // own retry.
    let bound = Duration::from_secs(TIMEOUT + 2 * 2 + 4);
    eprintln!(
        "figure: dc2 cut off alone: recorded asynchronous after {}, longest write gap through the GLB {} (bound {}), \
         {} writes; healed, synchronous again after {}",
        secs(degraded),
        secs(w.gap),
        secs(bound),
        w.acked.len(),
        secs(back)
    );
    assert!(w.gap <= bound, "a write gap of {:?}", w.gap);
    assert!(
        w.gap >= Duration::from_secs(TIMEOUT - 2),
        "writes did not wait for dc2: gap {:?}",
        w.gap
    );
    SITES.same_rows_everywhere(pw);
}

/// Waits until the record says asynchronous; returns it.
fn wait_asynchronous(lab: &TestLab) -> serde_json::Value {
    let mut seen = serde_json::Value::Null;
    wait_for("the record to say asynchronous", Duration::from_secs(60), || {
        seen = record(lab);
        seen["mode"] == "async"
    });
    eprintln!("record: {seen}");
    seen
}

/// With auto failover on, a cloud behind the position since which the
/// primary went on alone never takes the lease: dc2 cut off (dc1 records
/// asynchronous and writes on), dc1 powered off whole before dc2 returns.
/// dc1 powered on takes its lease back; dc2 catches up.
fn behind_never_takes_over(lab: &TestLab, pw: &str) {
    set_auto_failover(lab, true);
    let (stop, handle) = writer(&SITES.glb(), pw);
    let out = lab.lab(&["partition", "dc2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen = wait_asynchronous(lab);
    assert_eq!(seen["cloud"], "dc1", "{seen}");
    // Writes past that position, acknowledged by dc1 alone.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let out = lab.lab(&["kill", "dc1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let monitor = Monitor::start(SITES);
    let healed = std::time::SystemTime::now();
    let out = lab.lab(&["unpartition", "dc2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The lease lapses (ttl), stays free past the hold-down, and dc2's
    // agent says why it does not take it.
    let mut said = String::new();
    wait_for("dc2's agent to refuse the lease", Duration::from_secs(120), || {
        said = DC2
            .iter()
            .map(|h| {
                lab.ssh_ok(
                    &SITES.address(h),
                    &format!(
                        "journalctl -u pgha-site-agent --no-pager -o cat --since=@{}",
                        epoch_secs(healed)
                    ),
                )
            })
            .collect();
        said.contains("may lack commits")
    });
    let refusal = said
        .lines()
        .find(|l| l.contains("may lack commits"))
        .unwrap_or_default()
        .to_string();
    let samples = monitor.finish();
    for s in &samples {
        assert!(s.writable.is_empty(), "writable with dc1 off: {:?}", s.writable);
    }
    assert!(status_json(lab)["site"]["holder"].is_null());
    let out = lab.lab(&["start", "dc1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let started = Instant::now();
    wait_synchronous_within(lab, "dc1", "dc2", Duration::from_secs(240));
    eprintln!(
        "figure: dc2 cut off, then dc1 powered off: dc2's agent refused the lease (\"{refusal}\"), nobody writable \
         over {} samples; dc1 powered on, synchronous with dc2 again after {} ({} writes before)",
        samples.len(),
        secs(started.elapsed()),
        w.acked.len()
    );
    assert_eq!(SITES.lost(pw, &w.acked), 0, "writes dc1 acknowledged were lost");
    SITES.same_rows_everywhere(pw);
}

#[test]
fn synchronous_replication_between_clouds_loses_no_acknowledged_write() {
    if !common::e2e() {
        return;
    }
    let phases = common::Phases::start("synchronous");
    let lab = TestLab::up(SITES.name, &format!("{}.0/24", SITES.prefix), &[]);
    set_synchronous(&lab);
    phases.done("lab up and deploy");
    let pw = lab.superuser_password();

    wait_synchronous(&lab, "dc1", "dc2");
    let master = SITES.writable_now().pop().expect("a master");
    let names = SITES.psql_inside(&master, "SHOW synchronous_standby_names").unwrap();
    assert_eq!(names, r#"ANY 1 ("dc2-pg1", "dc2-pg2", "dc2-pg3")"#);
    let said = common::stdout(&lab.pgha_ok(&["status"]));
    assert!(said.contains("dc1 waits for dc2 on every commit"), "{said}");
    phases.done("synchronous");

    secondary_cut_off(&lab, &pw);
    // `pgha history` lists when it degraded, why, and when it came back.
    let history: serde_json::Value =
        serde_json::from_str(&common::stdout(&lab.pgha_ok(&["history", "--output", "json"]))).unwrap();
    let states: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "replication")
        .filter_map(|e| Some((e["mode"].as_str()?, e["why"].as_str()?)))
        .collect();
    assert!(
        states.iter().any(|(m, w)| *m == "async" && w.contains("cloud dc2"))
            && states.last().is_some_and(|(m, _)| *m == "sync"),
        "{states:?}"
    );
    phases.done("dc2 cut off alone");
    behind_never_takes_over(&lab, &pw);
    phases.done("behind, never takes over");

    let runs: usize = std::env::var("PGHA_SYNC_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    for auto in [false, true] {
        set_auto_failover(&lab, auto);
        for run in 0..runs {
            let c = cut_primary(SITES, &lab, &pw, auto, None);
            let mode = if auto { "auto failover" } else { "make-primary" };
            eprintln!(
                "figure: synchronous, {}",
                c.describe(&format!("{mode} run {}", run + 1))
            );
            assert!(c.lost.is_empty(), "acknowledged writes lost: {}", c.describe(mode));
            assert_eq!(
                c.inside_after_cut,
                0,
                "writes acknowledged inside the cut-off cloud: {}",
                c.describe(mode)
            );
            wait_synchronous(&lab, c.new, c.old);
            phases.done(mode);
        }
    }
}
