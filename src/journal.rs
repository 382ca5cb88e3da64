//! pgha's journal of changing commands: who ran which command from where,
//! its plan and its outcome, one JSON line per command under a prefix of
//! the primary cloud's etcd (next to the cluster lock), so every
//! operator's pgha reads the same one (`pgha history`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::components::{etcd, patroni};
use crate::design::{Cloud, Design};
use crate::lock::Holder;
use crate::remote::Remote;

/// Entries kept in each cloud's etcd; older ones are dropped as new ones come.
const KEEP: usize = 1000;

pub(crate) fn prefix(d: &Design) -> String {
    format!("{}{}/pgha-journal/", patroni::NAMESPACE, d.platform.name)
}

/// One changing command, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Unix seconds: when the command started and when it ended.
    pub started: u64,
    pub ended: u64,
    pub user: String,
    /// The machine pgha ran on, and its process.
    pub from: String,
    pub pid: u32,
    pub command: String,
    pub plan: Vec<String>,
    /// `ok`, or `failed: ` and the error.
    pub outcome: String,
}

impl Entry {
    pub(crate) fn new(holder: &Holder, plan: &[String], result: &anyhow::Result<()>, now: u64) -> Entry {
        Entry {
            started: holder.since,
            ended: now,
            user: holder.user.clone(),
            from: holder.host.clone(),
            pid: holder.pid,
            command: holder.command.clone(),
            plan: plan.to_vec(),
            outcome: match result {
                Ok(()) => "ok".into(),
                Err(e) => format!("failed: {e:#}"),
            },
        }
    }
}

/// The most of a command's outcome the journal keeps, in bytes.
const MAX_OUTCOME: usize = 4096;

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [cut]", &text[..end])
}

/// Records a command that changed (or tried to change) the cluster, in
/// the primary cloud's etcd (another cloud's when none answers). Best
/// effort: a journal that cannot be written never fails the command.
pub(crate) async fn record(
    d: &Design,
    remotes: &BTreeMap<String, Remote>,
    holder: &Holder,
    plan: &[String],
    result: &anyhow::Result<()>,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    let mut entry = Entry::new(holder, plan, result, now);
    // An error may quote a host's stderr: no secret goes into etcd, and no
    // entry grows past a bound.
    if let Ok(Some(secrets)) = crate::secrets::Secrets::load(&d.secrets_file) {
        entry.outcome = secrets.scrub(&entry.outcome);
    }
    entry.outcome = bounded(&entry.outcome, MAX_OUTCOME);
    let Ok(value) = serde_json::to_string(&entry) else {
        return;
    };
    let key = format!("{}{:020}-{}", prefix(d), now, holder.pid);
    let script = etcd::journal_put_script(d.etcd.client_port, &prefix(d), &key, KEEP);
    let mut clouds: Vec<&Cloud> = d.primary_clouds().collect();
    clouds.extend(d.clouds.iter().filter(|c| !c.is_primary()));
    for c in clouds {
        for h in &c.hosts {
            let Some(r) = remotes.get(&h.name) else { continue };
            if r.run_with_input(&script, Some(value.as_bytes()))
                .await
                .is_ok_and(|o| o.success())
            {
                return;
            }
        }
    }
    crate::ui::progress::note(
        "warning: pgha's journal could not be written (no etcd answered); the command's outcome stands".to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn outcomes_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("abc", 10), "abc");
        let b = bounded(&"é".repeat(3000), 4095);
        assert!(b.ends_with(" [cut]") && b.len() <= 4095 + 6, "{}", b.len());
    }
}
