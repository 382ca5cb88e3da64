//! `cargo bench --bench failover`: the write path's figures, side by side on
//! Debian 13 and Debian 12 (`PGHA_BENCH_OS` picks one), each the median of
//! `PGHA_BENCH_RUNS` runs (5 unless told) with min and max, on the default
//! lab (two clouds of three, GLB, witness, backups on; Debian 12's without
//! backups, see `lab_args`). A client writes through the GLB every 100 ms
//! throughout; a gap is the longest pause between two acknowledged writes
//! around a fault. Every run ends by
//! checking that no acknowledged write is missing (a power-off or a cut may
//! lose the asynchronous tail: counted, not hidden). It first times no-op
//! deploys of the lab. Prints figures only.
//!
//! `PGHA_BENCH_ONLY` (comma-separated: noop, stop, power-off, cut,
//! switchover, flip) runs only those scenarios.
//!
//! With `PGHA_BENCH_RECOVER=1` it then times recover-node on a database of
//! about 1 GB (fast path, then --reclone).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sql, TestLab};

/// One acknowledged write: when, its id, the address of the master that took it.
#[derive(Clone)]
struct Ack {
    at: Instant,
    id: i64,
    server: String,
}

/// A client writing through the GLB every 100 ms until dropped.
struct Writer {
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(glb: String, pw: String, next: Arc<AtomicI64>) -> Writer {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (acks, stop) = (acks.clone(), stop.clone());
            move || {
                // Bounded: a bench run never writes for more than 10 minutes.
                let end = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let q = format!("INSERT INTO ticks VALUES ({id}) RETURNING host(inet_server_addr())");
                    if let Ok(rows) = common::sql_within(&glb, 5000, &pw, &q, Duration::from_secs(3)) {
                        let server = rows[0][0].clone().unwrap_or_default();
                        acks.lock().unwrap().push(Ack {
                            at: Instant::now(),
                            id,
                            server,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        });
        Writer {
            acks,
            stop,
            thread: Some(thread),
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Waits until a write after `t` was acknowledged by a server `pick` accepts.
    fn first_after(&self, t: Instant, limit: Duration, pick: impl Fn(&str) -> bool) -> Ack {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(a) = self.acks().into_iter().find(|a| a.at > t && pick(&a.server)) {
                return a;
            }
            assert!(Instant::now() < deadline, "no write acknowledged within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The longest pause between acknowledged writes from `t` on, ending at
    /// the first one acknowledged by a server `pick` accepts (the new
    /// master: writes the old one took just after `t` do not end it).
    fn gap(&self, t: Instant, pick: impl Fn(&str) -> bool) -> f64 {
        let end = self.first_after(t, Duration::from_secs(180), pick);
        let acks = self.acks();
        let mut last = acks.iter().rev().find(|a| a.at <= t).map_or(t, |a| a.at);
        let mut gap = Duration::ZERO;
        for a in acks.iter().filter(|a| a.at > t && a.at <= end.at) {
            gap = gap.max(a.at - last);
            last = a.at;
        }
        gap.as_secs_f64()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// A deployed default lab and what the scenarios need of it.
struct Bench {
    lab: TestLab,
    p: String,
    pw: String,
    next: Arc<AtomicI64>,
}

impl Bench {
    fn addr(&self, host: &str) -> String {
        let (cloud, n) = host.split_once("-pg").unwrap();
        format!("{}.{}{n}", self.p, &cloud[2..])
    }

    fn glb(&self) -> String {
        format!("{}.5", self.p)
    }

    fn writer(&self) -> Writer {
        Writer::start(self.glb(), self.pw.clone(), self.next.clone())
    }

    fn q(&self, host: &str, query: &str) -> Option<String> {
        sql(&self.addr(host), 5432, &self.pw, query)
            .ok()?
            .first()?
            .first()?
            .clone()
    }

    /// The master of `cloud` (`dc1`, `dc2`), waited for.
    fn master(&self, cloud: &str) -> String {
        let mut found = String::new();
        common::wait_for(&format!("a master in {cloud}"), Duration::from_secs(120), || {
            for n in 1..=3 {
                let h = format!("{cloud}-pg{n}");
                if self.q(&h, "SELECT NOT pg_is_in_recovery()").as_deref() == Some("t") {
                    found = h;
                    return true;
                }
            }
            false
        });
        found
    }

    fn primary_cloud(&self) -> &'static str {
        let design = std::fs::read_to_string(self.lab.design()).unwrap();
        if design.contains("name: dc2\n    status: primary") {
            "dc2"
        } else {
            "dc1"
        }
    }

    /// Every member of both clouds running or streaming, so the next fault
    /// starts from a healthy cluster.
    fn wait_healthy(&self) {
        common::wait_for("every member healthy", Duration::from_secs(300), || {
            let out = self.lab.pgha(&["status", "--output", "json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|s| {
                s["hosts"].as_array().is_some_and(|h| {
                    h.len() == 6 && h.iter().all(|r| r["state"] == "running" || r["state"] == "streaming")
                })
            })
        });
    }

    /// Acknowledged writes missing from the cluster now.
    fn lost(&self, acks: &[Ack]) -> usize {
        let m = self.master(self.primary_cloud());
        let present: std::collections::HashSet<i64> = sql(&self.addr(&m), 5432, &self.pw, "SELECT id FROM ticks")
            .unwrap()
            .into_iter()
            .filter_map(|r| r[0].as_deref()?.parse().ok())
            .collect();
        acks.iter().filter(|a| !present.contains(&a.id)).count()
    }

    /// Seconds from `t` until `host` streams from a master on a timeline past `timeline`.
    fn follows(&self, host: &str, timeline: &str, t: Instant) -> f64 {
        let q = format!(
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND received_tli > {timeline}"
        );
        common::wait_for(&format!("{host} following"), Duration::from_secs(120), || {
            self.q(host, &q).as_deref() == Some("1")
        });
        t.elapsed().as_secs_f64()
    }
}

/// Each scenario's runs, in seconds, by name.
#[derive(Default)]
struct Figures(Vec<(&'static str, Vec<f64>)>);

impl Figures {
    fn add(&mut self, name: &'static str, value: f64) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(value),
            None => self.0.push((name, vec![value])),
        }
    }

    fn cell(&self, name: &str) -> String {
        let Some((_, v)) = self.0.iter().find(|(n, _)| *n == name) else {
            return "-".into();
        };
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        format!("{:.1} ({:.1}-{:.1})", v[v.len() / 2], v[0], v[v.len() - 1])
    }
}

fn clean_stop(b: &Bench, f: &mut Figures) {
    let cloud = b.primary_cloud();
    let m = b.master(cloud);
    let timeline = b.q(&m, "SELECT timeline_id FROM pg_control_checkpoint()").unwrap();
    let other_cloud = if cloud == "dc1" { "dc2" } else { "dc1" };
    let standby_leader = (1..=3)
        .map(|n| format!("{other_cloud}-pg{n}"))
        .find(|h| {
            b.q(h, "SELECT count(*) FROM pg_stat_wal_receiver WHERE sender_port = 5000")
                .as_deref()
                == Some("1")
        })
        .unwrap_or_else(|| format!("{other_cloud}-pg1"));
    let old = b.addr(&m);
    let w = b.writer();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    b.lab.ssh_ok(&old, "systemctl stop patroni");
    f.add("clean stop of the master's Patroni: write gap", w.gap(t, |s| s != old));
    // The new master's first acknowledged write: nobody can follow it sooner.
    let took = (w.first_after(t, Duration::from_secs(60), |s| s != old).at - t).as_secs_f64();
    let m2 = b.master(cloud);
    let third = (1..=3)
        .map(|n| format!("{cloud}-pg{n}"))
        .find(|h| *h != m && *h != m2)
        .unwrap();
    let replica = b.follows(&third, &timeline, t);
    let standby = b.follows(&standby_leader, &timeline, t);
    f.add("a replica follows the new master (from the stop)", replica);
    f.add(
        "a replica follows, from the new master's first write",
        (replica - took).max(0.0),
    );
    f.add("the standby cloud's leader follows (from the stop)", standby);
    f.add(
        "the standby leader follows, from the new master's first write",
        (standby - took).max(0.0),
    );
    b.lab.ssh_ok(&b.addr(&m), "systemctl start patroni");
    b.wait_healthy();
    f.add("acknowledged writes lost (clean stop)", b.lost(&w.acks()) as f64);
}

fn power_off_or_cut(b: &Bench, f: &mut Figures, cut: bool) {
    let m = b.master(b.primary_cloud());
    let old = b.addr(&m);
    // Whether the master's host also led its cloud's etcd (the site agent
    // hands that on): printed, so a slow run can be told apart.
    let status = b
        .lab
        .ssh(&old, &format!("{} etcdctl endpoint status -w json", common::ETCD_ENV));
    let leads = serde_json::from_slice::<serde_json::Value>(&status.stdout).is_ok_and(|s| {
        let st = &s[0]["Status"];
        st["leader"] == st["header"]["member_id"]
    });
    let w = b.writer();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let (fault, undo) = if cut { ("cut", "heal") } else { ("kill", "start") };
    assert!(b.lab.lab(&[fault, &m]).status.success());
    let gap = w.gap(t, |s| s != old);
    eprintln!(
        "{fault} {m}: gap {gap:.1} s; its host led the cloud's etcd: {}",
        if leads { "yes" } else { "no" }
    );
    assert!(b.lab.lab(&[undo, &m]).status.success());
    b.wait_healthy();
    let lost = b.lost(&w.acks()) as f64;
    if cut {
        f.add("network cut of the master: write gap", gap);
        f.add("acknowledged writes lost (cut)", lost);
    } else {
        f.add("power-off of the master: write gap", gap);
        f.add("acknowledged writes lost (power-off)", lost);
    }
}

fn switchover(b: &Bench, f: &mut Figures) {
    let cloud = b.primary_cloud();
    let old = b.addr(&b.master(cloud));
    let w = b.writer();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let out = b.lab.pgha(&["switchover", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = w.first_after(t, Duration::from_secs(60), |s| s != old);
    f.add("pgha switchover: write gap", w.gap(t, |s| s != old));
    f.add(
        "pgha switchover: start to first write on the new master",
        (first.at - t).as_secs_f64(),
    );
    b.wait_healthy();
    f.add("acknowledged writes lost (switchover)", b.lost(&w.acks()) as f64);
}

fn flip(b: &Bench, f: &mut Figures) {
    let to = if b.primary_cloud() == "dc1" { "dc2" } else { "dc1" };
    let prefix = format!("{}.{}", b.p, &to[2..]);
    let w = b.writer();
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let out = b.lab.pgha(&["cloud", "make-primary", to, "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = t.elapsed().as_secs_f64();
    let first = w.first_after(t, Duration::from_secs(60), |s| s.starts_with(&prefix));
    f.add(
        "planned cloud make-primary: start to first write on the new cloud",
        (first.at - t).as_secs_f64(),
    );
    f.add("planned cloud make-primary: the whole command", took);
    b.wait_healthy();
    f.add("acknowledged writes lost (flip)", b.lost(&w.acks()) as f64);
}

/// `lab up`'s arguments for `os`: the default lab, except that Debian 12's
/// has no backups. Its pgBackRest (2.45) verifies certificates by DNS name
/// only and the lab names hosts by address, so pgha refuses backups there.
fn lab_args(os: &str) -> Vec<&str> {
    let mut args = vec!["--os", os];
    if os == "debian12" {
        args.push("--no-backup");
    }
    args
}

fn measure(os: &str, p: &str, runs: usize) -> (Figures, String) {
    let lab = TestLab::up(&format!("pgha-failover-{os}"), &format!("{p}.0/24"), &lab_args(os));
    let out = lab.pgha(&["deploy", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pw = lab.superuser_password();
    let b = Bench {
        lab,
        p: p.to_string(),
        pw,
        next: Arc::new(AtomicI64::new(1)),
    };
    sql(&b.glb(), 5000, &b.pw, "CREATE TABLE ticks (id bigint PRIMARY KEY)").unwrap();
    let design = std::fs::read_to_string(b.lab.design()).unwrap();
    let timings = ["ttl", "loop_wait", "retry_timeout"]
        .iter()
        .filter_map(|k| {
            let v = design.lines().find(|l| l.trim_start().starts_with(&format!("{k}:")))?;
            Some(v.trim().to_string())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut f = Figures::default();
    let only = std::env::var("PGHA_BENCH_ONLY").unwrap_or_default();
    for s in only.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        assert!(
            ["noop", "stop", "power-off", "cut", "switchover", "flip"].contains(&s),
            "PGHA_BENCH_ONLY: no scenario {s}"
        );
    }
    let runs_scenario = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    // Every host already as designed: the facts-in, work-out diff alone.
    for _ in 0..if runs_scenario("noop") { runs } else { 0 } {
        let t = Instant::now();
        let out = b.lab.pgha(&["deploy", "--yes"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        f.add(
            "no-op pgha deploy of the default lab (10 hosts)",
            t.elapsed().as_secs_f64(),
        );
    }
    for run in 0..runs {
        eprintln!("{os}: run {} of {runs}", run + 1);
        if runs_scenario("stop") {
            clean_stop(&b, &mut f);
        }
        if runs_scenario("power-off") {
            power_off_or_cut(&b, &mut f, false);
        }
        if runs_scenario("cut") {
            power_off_or_cut(&b, &mut f, true);
        }
        if runs_scenario("switchover") {
            switchover(&b, &mut f);
        }
        if runs_scenario("flip") {
            flip(&b, &mut f);
        }
    }
    if std::env::var("PGHA_BENCH_RECOVER").as_deref() == Ok("1") {
        recover_node(&b);
    }
    (f, timings)
}

fn main() {
    let runs: usize = std::env::var("PGHA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let oses: Vec<&str> = match std::env::var("PGHA_BENCH_OS").as_deref() {
        Ok("debian12") => vec!["debian12"],
        Ok("debian13") => vec!["debian13"],
        Err(_) => vec!["debian13", "debian12"],
        Ok(other) => panic!("PGHA_BENCH_OS={other}: use debian13 or debian12"),
    };
    let measured: Vec<(&str, Figures, String)> = oses
        .iter()
        .zip(["10.72.0", "10.73.0"])
        .map(|(os, p)| {
            let (f, t) = measure(os, p, runs);
            (*os, f, t)
        })
        .collect();
    println!(
        "\nmedian (min-max) of {runs} runs, seconds (lost: writes); default lab, witness, backups on \
         (off on Debian 12: its pgBackRest needs hosts named by DNS)"
    );
    for (os, _, t) in &measured {
        println!("{os}: Patroni {t}; HAProxy inter 1s downinter 500ms fall 2 rise 1");
    }
    let names: Vec<&str> = measured[0].1 .0.iter().map(|(n, _)| *n).collect();
    print!("{:<70}", "");
    for (os, _, _) in &measured {
        print!(" {os:>18}");
    }
    println!();
    for name in names {
        print!("{name:<70}");
        for (_, f, _) in &measured {
            print!(" {:>18}", f.cell(name));
        }
        println!();
    }
}

/// recover-node on ~1 GB: the fast path, then --reclone.
fn recover_node(b: &Bench) {
    let glb = b.glb();
    let t = Instant::now();
    sql(&glb, 5000, &b.pw, "CREATE TABLE big (g int, pad text)").unwrap();
    // In slices that each finish well inside the client's timeout.
    for slice in 0..18 {
        let q = format!(
            "INSERT INTO big SELECT g, repeat(md5(g::text), 31) FROM generate_series({}, {}) g",
            slice * 50_000 + 1,
            (slice + 1) * 50_000
        );
        sql(&glb, 5000, &b.pw, &q).unwrap();
    }
    println!("loaded about 1 GB in {:.0} s", t.elapsed().as_secs_f64());
    // Measure recovery, not catch-up: every replica first replays the load.
    let target = sql(&glb, 5000, &b.pw, "SELECT pg_current_wal_lsn()").unwrap()[0][0]
        .clone()
        .unwrap();
    let behind = format!("SELECT pg_is_in_recovery() AND pg_wal_lsn_diff('{target}', pg_last_wal_replay_lsn()) > 0");
    for h in ["dc1-pg1", "dc1-pg2", "dc1-pg3", "dc2-pg1", "dc2-pg2", "dc2-pg3"] {
        common::wait_for(&format!("{h} to replay the load"), Duration::from_secs(600), || {
            b.q(h, &behind).as_deref() == Some("f")
        });
    }
    let cloud = if b.primary_cloud() == "dc1" { "dc2" } else { "dc1" };
    let replica = format!("{cloud}-pg3");
    b.lab.ssh_ok(&b.addr(&replica), "systemctl stop patroni");
    for (label, extra) in [("fast path", None), ("--reclone", Some("--reclone"))] {
        let mut args = vec!["recover-node", replica.as_str(), "--yes"];
        args.extend(extra);
        let t = Instant::now();
        let out = b.lab.pgha(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let verdict = stderr.lines().find(|l| l.contains("verdict:")).unwrap_or("").trim();
        println!(
            "recover-node {label} on ~1 GB: {:.1} s ({verdict})",
            t.elapsed().as_secs_f64()
        );
    }
}
