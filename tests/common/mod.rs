//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name)
}

/// Runs the real binary with `args`, without a terminal.
pub fn pgha<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .output()
        .expect("pgha runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// End-to-end tests need root and Docker (`.ci/setup`). They run unless
/// PGHA_SKIP_E2E=1 says otherwise, so a missing engine fails loudly in CI.
pub fn e2e() -> bool {
    if std::env::var("PGHA_SKIP_E2E").as_deref() == Ok("1") {
        eprintln!("skipped: PGHA_SKIP_E2E=1");
        return false;
    }
    true
}
