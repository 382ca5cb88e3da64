//! `cargo bench --bench plan`: wall time and peak memory of the real `pgha plan`
//! on generated designs, to show the growth is linear (goal: 100 clouds x 50
//! hosts under 100 ms). Prints figures; asserts nothing about speed.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn design(clouds: usize, hosts: usize) -> String {
    let mut s = String::from("platform:\n  name: bench\nclouds:\n");
    for c in 0..clouds {
        let status = if c == 0 { "primary" } else { "secondary" };
        let _ = write!(
            s,
            "  - name: c{c}\n    status: {status}\n    scaling: {hosts}\n    hosts:\n"
        );
        for h in 0..hosts {
            let n = c * hosts + h;
            let _ = writeln!(
                s,
                "      - {{name: c{c}-h{h}, address: 10.{}.{}.{}}}",
                n >> 16,
                (n >> 8) & 255,
                n & 255
            );
        }
    }
    s.push_str("glb:\n  fqdn: bench.example.com\n  hosts:\n    - {name: glb1, address: 10.255.255.254}\n");
    s
}

/// Runs the binary once; returns wall time and peak resident memory (KiB).
fn run_once(args: &[&str]) -> (Duration, i64) {
    let start = Instant::now();
    // Reaped by wait4 below, which also reports the peak memory.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgha starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, status and usage are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "pgha plan failed"
    );
    (wall, usage.ru_maxrss)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:>7} {:>6} {:>7} {:>12} {:>12} {:>10}",
        "clouds", "hosts", "total", "median ms", "min ms", "peak MiB"
    );
    for (clouds, hosts) in [(1, 50), (10, 50), (50, 50), (100, 50), (200, 50)] {
        let path = dir.path().join(format!("d{clouds}.yaml"));
        std::fs::write(&path, design(clouds, hosts)).unwrap();
        let p = path.to_str().unwrap();
        for fmt in ["text", "json"] {
            let mut walls = Vec::new();
            let mut peak = 0;
            for _ in 0..9 {
                let (w, rss) = run_once(&["plan", "-f", p, "--output", fmt]);
                walls.push(w);
                peak = peak.max(rss);
            }
            walls.sort();
            println!(
                "{clouds:>7} {hosts:>6} {:>7} {:>12.1} {:>12.1} {:>10.1}  ({fmt})",
                clouds * hosts,
                walls[walls.len() / 2].as_secs_f64() * 1e3,
                walls[0].as_secs_f64() * 1e3,
                peak as f64 / 1024.0
            );
        }
    }
}
