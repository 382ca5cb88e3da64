//! `cargo bench --bench pooler`: connection set-up time and transactions per
//! second through PgBouncer against the direct read-write endpoint, in the
//! same run, on the default lab (two clouds of three, GLB, witness, backups)
//! with `components.pgbouncer` on. pgbench runs on this machine against the
//! GLB: port 5000 (HAProxy to the master) and the pooled port 6432 (HAProxy
//! to the primary cloud's PgBouncer, then each host's HAProxy to the
//! master), TLS verified against the cluster CA, as the application role
//! `bench` (SCRAM). Select-only transactions, `PGHA_BENCH_CLIENTS` clients
//! (8 unless told) for `PGHA_BENCH_SECONDS` each (15), with a connection
//! kept per client, then a new connection per transaction (`-C`). Prints
//! figures only. Needs pgbench (postgresql-client).

#[path = "../tests/common/mod.rs"]
mod common;

use common::TestLab;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pgbench(lab: &TestLab, port: u16, password: &str, args: &[&str]) -> String {
    let glb = common::partition::Sites {
        name: "pgha-pooler",
        prefix: "10.69.0",
    }
    .glb();
    common::pgbench(lab, &glb, port, "bench", password, args)
}

fn main() {
    let clients = env("PGHA_BENCH_CLIENTS", 8).to_string();
    let seconds = env("PGHA_BENCH_SECONDS", 15).to_string();
    let lab = TestLab::up("pgha-pooler", "10.69.0.0/24", &[]);
    let design = std::fs::read_to_string(lab.design()).unwrap();
    let pooled = design.replacen("\ncomponents:\n", "\ncomponents:\n  pgbouncer:\n    enabled: true\n", 1);
    assert_ne!(design, pooled, "the lab's design has a components section");
    std::fs::write(
        lab.design(),
        format!("{pooled}\nroles:\n  - {{name: bench}}\ndatabases:\n  - {{name: bench, owner: bench}}\n"),
    )
    .unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let password = lab.role_password("bench");
    pgbench(&lab, 5000, &password, &["-i", "-q", "-s", "10"]);
    println!("pgbench -S, {clients} clients x {seconds} s, through the GLB, TLS verify-full, SCRAM:");
    // With kept connections pgbench reports its initial connections' time;
    // with -C, the average time to open one.
    println!("{:<58} {:>8} {:>22}", "endpoint", "tps", "connection set-up (ms)");
    for (name, port) in [("direct (HAProxy :5000)", 5000), ("pooled (PgBouncer :6432)", 6432)] {
        for (mode, extra) in [("kept connections", None), ("a connection per transaction", Some("-C"))] {
            let mut args = vec!["-n", "-S", "-c", &clients, "-j", "2", "-T", &seconds];
            args.extend(extra);
            let out = pgbench(&lab, port, &password, &args);
            let tps = common::figure(&out, "tps = ").unwrap_or(f64::NAN);
            let connect = common::figure(&out, "average connection time = ")
                .or_else(|| common::figure(&out, "initial connection time = "))
                .unwrap_or(f64::NAN);
            println!("{:<58} {tps:>8.0} {connect:>22.2}", format!("{name}, {mode}"));
        }
    }
}
