//! What pgha itself remembers between runs, in `<design name>.state.yaml`
//! next to the design: facts no host can tell it.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::design::Design;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// The primary cloud the external GLB command was last run for.
    #[serde(default)]
    pub glb_primary_cloud: Option<String>,
    /// Per cloud, changes a cloud flip could not make because the cloud was
    /// unreachable; the next deploy of that cloud applies them.
    #[serde(default)]
    pub pending: std::collections::BTreeMap<String, Vec<String>>,
    /// A cloud flip that started and has not finished: recorded before it
    /// touches a host, cleared when it is done. Running the same command
    /// again finishes it; every other changing command refuses until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip: Option<FlipIntent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FlipIntent {
    /// `make-primary` or `make-secondary`.
    pub verb: String,
    pub cloud: String,
    /// Unix seconds.
    pub since: u64,
    /// The last step that completed.
    #[serde(default)]
    pub done_step: usize,
}

impl FlipIntent {
    pub(crate) fn command(&self) -> String {
        format!("pgha cloud {} {}", self.verb, self.cloud)
    }
}

/// Refuses a changing command while a flip is half-done, unless it is that
/// flip (`verb`, `cloud`) being run again: then the flip's record, to resume.
pub(crate) fn refuse_unfinished_flip(d: &Design, except: Option<(&str, &str)>) -> anyhow::Result<Option<FlipIntent>> {
    if let Some(f) = load(d)?.flip {
        if except != Some((f.verb.as_str(), f.cloud.as_str())) {
            anyhow::bail!(
                "`{}` started and did not finish (step {} was the last done): run it again to finish it before \
                 anything else changes the cluster",
                f.command(),
                f.done_step
            );
        }
        return Ok(Some(f));
    }
    Ok(None)
}

pub(crate) fn record_flip(d: &Design, flip: Option<FlipIntent>) -> anyhow::Result<()> {
    let mut s = load(d)?;
    s.flip = flip;
    save(d, &s)
}

pub(crate) fn path(d: &Design) -> PathBuf {
    let stem = d.path.file_stem().and_then(|s| s.to_str()).unwrap_or("pgha");
    d.base_dir().join(format!("{stem}.state.yaml"))
}

pub(crate) fn load(d: &Design) -> anyhow::Result<State> {
    match std::fs::read_to_string(path(d)) {
        Ok(text) => crate::design::yaml::from_str(&text, false).map_err(|e| {
            anyhow::anyhow!(
                "{} (line {}: {}) is damaged: pgha writes it atomically, so something else changed it; fix or remove it",
                path(d).display(),
                e.line,
                e.message
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path(d).display())),
    }
}

pub(crate) fn save(d: &Design, state: &State) -> anyhow::Result<()> {
    let text = format!(
        "# Written by pgha; do not edit.\n{}",
        crate::design::yaml::to_string(state)?
    );
    crate::fsutil::write_atomic(&path(d), text.as_bytes(), 0o644)
}

pub(crate) fn record_glb(d: &Design, primary: Option<&str>) -> anyhow::Result<()> {
    let mut s = load(d)?;
    s.glb_primary_cloud = primary.map(str::to_string);
    save(d, &s)
}

/// Remembers a change a cloud's unreachable hosts still need.
pub(crate) fn record_pending(d: &Design, cloud: &str, what: &str) -> anyhow::Result<()> {
    let mut s = load(d)?;
    let list = s.pending.entry(cloud.to_string()).or_default();
    if !list.iter().any(|w| w == what) {
        list.push(what.to_string());
    }
    save(d, &s)
}

/// Forgets what a deploy has now applied to these clouds.
pub(crate) fn clear_pending(d: &Design, clouds: &[String]) -> anyhow::Result<()> {
    let mut s = load(d)?;
    let before = s.pending.len();
    s.pending.retain(|c, _| !clouds.contains(c));
    if s.pending.len() != before {
        save(d, &s)?;
    }
    Ok(())
}
