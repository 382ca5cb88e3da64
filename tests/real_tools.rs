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

#[test]
fn haproxy_accepts_every_rendered_config() {
    require("haproxy");
    for name in ["two-clouds.yaml", "single-cloud.yaml"] {
        let (_dir, files) = rendered(name);
        let cfgs: Vec<_> = files
            .iter()
            .filter(|f| f.ends_with("etc/haproxy/haproxy.cfg"))
            .collect();
        assert!(!cfgs.is_empty());
        for cfg in cfgs {
            let out = Command::new("haproxy").arg("-c").arg("-f").arg(cfg).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                cfg.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn patroni_accepts_every_rendered_config() {
    require("patroni");
    for name in ["two-clouds.yaml", "single-cloud.yaml"] {
        let (_dir, files) = rendered(name);
        let cfgs: Vec<_> = files.iter().filter(|f| f.ends_with("etc/patroni/config.yml")).collect();
        assert!(!cfgs.is_empty());
        for cfg in cfgs {
            let out = Command::new("patroni")
                .arg("--validate-config")
                .arg(cfg)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "{}: {stderr}",
                cfg.display()
            );
        }
    }
}
