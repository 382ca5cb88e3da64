//! The real tools accept what pgha renders: `haproxy -c` and Patroni's own
//! validator (Debian's packages; .ci/run installs them).

mod common;

use std::process::Command;

use common::example;
use pgha::render::{write_tree, Renderer};
use pgha::secrets::Secrets;

fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{tool} is not installed: run .ci/setup (installs Debian's haproxy, patroni and postgresql-15)"
    );
}

fn rendered(name: &str) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let d = pgha::design::load(&example(name)).unwrap().design;
    let all = Renderer::for_design(&d)
        .unwrap()
        .all(&d, &Secrets::generate().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = write_tree(dir.path(), &all).unwrap();
    (dir, files)
}

/// Runs `program ARGS FILE` on every file (of both examples) whose path ends
/// with `suffix`: each must pass, and with `quiet` print nothing on stderr.
fn every_rendered_passes(suffix: &str, program: &str, args: &[&str], quiet: bool) {
    require(program);
    for name in ["two-clouds.yaml", "single-cloud.yaml"] {
        let (_dir, files) = rendered(name);
        let found: Vec<_> = files.iter().filter(|f| f.ends_with(suffix)).collect();
        assert!(!found.is_empty(), "no {suffix} rendered for {name}");
        for file in found {
            let out = Command::new(program).args(args).arg(file).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && (!quiet || stderr.trim().is_empty()),
                "{}: {stderr}",
                file.display()
            );
        }
    }
}

#[test]
fn haproxy_accepts_every_rendered_config() {
    every_rendered_passes("etc/haproxy/haproxy.cfg", "haproxy", &["-c", "-f"], false);
}

#[test]
fn patroni_accepts_every_rendered_config() {
    every_rendered_passes("etc/patroni/config.yml", "patroni", &["--validate-config"], true);
}

#[test]
fn python_compiles_every_rendered_fence() {
    every_rendered_passes(
        "usr/local/lib/pgha/patroni-fence",
        "python3",
        &["-m", "py_compile"],
        true,
    );
}
