//! What pgha itself remembers between runs, in `<design name>.state.yaml`
//! next to the design: facts no host can tell it.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::design::Design;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The primary cloud the external GLB command was last run for.
    #[serde(default)]
    pub glb_primary_cloud: Option<String>,
}

pub fn path(d: &Design) -> PathBuf {
    let stem = d.path.file_stem().and_then(|s| s.to_str()).unwrap_or("pgha");
    d.base_dir().join(format!("{stem}.state.yaml"))
}

pub fn load(d: &Design) -> anyhow::Result<State> {
    match std::fs::read_to_string(path(d)) {
        Ok(text) => serde_yaml::from_str(&text).with_context(|| format!("{} is damaged", path(d).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path(d).display())),
    }
}

pub fn save(d: &Design, state: &State) -> anyhow::Result<()> {
    let text = format!("# Written by pgha; do not edit.\n{}", serde_yaml::to_string(state)?);
    std::fs::write(path(d), text).with_context(|| format!("cannot write {}", path(d).display()))
}

pub fn record_glb(d: &Design, primary: Option<&str>) -> anyhow::Result<()> {
    let mut s = load(d)?;
    s.glb_primary_cloud = primary.map(str::to_string);
    save(d, &s)
}
