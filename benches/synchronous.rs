//! `cargo bench --bench synchronous`: what `site.synchronous` costs a
//! commit (issue 29), in the same run on the default lab (two clouds of
//! three, GLB, witness, backups): pgbench's simple-update transactions
//! (`-N`) through the GLB's read-write port, `PGHA_BENCH_CLIENTS` clients
//! (4 unless told) for `PGHA_BENCH_SECONDS` each (20), first with
//! asynchronous replication between clouds, then with every commit waiting
//! for the other cloud (the lab's clouds share this machine: the figure is
//! the protocol's cost, not a WAN's round trip, which adds to each commit).
//! Prints figures only. Needs pgbench (postgresql-client).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::partition::Sites;
use common::TestLab;

const SITES: Sites = Sites {
    name: "pgha-syncb",
    prefix: "10.70.0",
};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn deploy(lab: &TestLab) {
    let out = lab.pgha(&["deploy", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn main() {
    let clients = env("PGHA_BENCH_CLIENTS", 4).to_string();
    let seconds = env("PGHA_BENCH_SECONDS", 20).to_string();
    let lab = TestLab::up(SITES.name, &format!("{}.0/24", SITES.prefix), &[]);
    let design = std::fs::read_to_string(lab.design()).unwrap();
    std::fs::write(
        lab.design(),
        format!("{design}\nroles:\n  - {{name: bench}}\ndatabases:\n  - {{name: bench, owner: bench}}\n"),
    )
    .unwrap();
    deploy(&lab);
    let password = lab.role_password("bench");
    let glb = SITES.glb();
    common::pgbench(&lab, &glb, 5000, "bench", &password, &["-i", "-q", "-s", "5"]);
    println!("pgbench -N, {clients} clients x {seconds} s, through the GLB :5000, TLS verify-full:");
    println!(
        "{:<52} {:>8} {:>20}",
        "replication between clouds", "tps", "latency average (ms)"
    );
    for synchronous in [false, true] {
        if synchronous {
            common::partition::set_synchronous(&lab);
            common::wait_for("the site to record synchronous", Duration::from_secs(120), || {
                common::partition::status_json(&lab)["site"]["replication"]["mode"] == "sync"
            });
        }
        let args = ["-n", "-N", "-c", &clients, "-j", "2", "-T", &seconds];
        let out = common::pgbench(&lab, &glb, 5000, "bench", &password, &args);
        let tps = common::figure(&out, "tps = ").unwrap_or(f64::NAN);
        let latency = common::figure(&out, "latency average = ").unwrap_or(f64::NAN);
        let what = if synchronous {
            "synchronous (every commit waits for dc2)"
        } else {
            "asynchronous"
        };
        println!("{what:<52} {tps:>8.0} {latency:>20.2}");
    }
}
