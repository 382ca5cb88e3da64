//! `pgha history`: what happened to the cluster, oldest first. Patroni's
//! own history of each cloud (every promotion: failover, switchover, flip,
//! restore) and pgha's journal of its changing commands (who ran which
//! command from where, its plan and its outcome). The journal lives in the
//! etcd of the cloud that was primary when the command ran, next to the
//! cluster lock, so every operator's pgha reads the same one.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::components::{etcd, patroni};
use crate::design::Design;
use crate::fleet::{format_lsn, Fleet, Reach};
use crate::journal::{self, Entry};
use crate::ui;

/// A promotion in one cloud, from Patroni's `/history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Promotion {
    pub cloud: String,
    /// The timeline it started.
    pub timeline: u64,
    /// Where the previous timeline ended (bytes).
    pub lsn: u64,
    pub reason: String,
    pub new_leader: Option<String>,
}

/// Patroni's `/history` document, as far as it is well formed.
fn parse_history(cloud: &str, text: &str) -> Vec<(i64, Promotion)> {
    let Ok(serde_json::Value::Array(rows)) = serde_json::from_str(text.trim()) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| {
            let r = row.as_array()?;
            let at = time::OffsetDateTime::parse(r.get(3)?.as_str()?, &Rfc3339).ok()?;
            Some((
                at.unix_timestamp(),
                Promotion {
                    cloud: cloud.to_string(),
                    // The row names the timeline that ended; the promotion started the next.
                    timeline: r.first()?.as_u64()? + 1,
                    lsn: r.get(1)?.as_u64()?,
                    reason: r.get(2)?.as_str()?.to_string(),
                    new_leader: r.get(4).and_then(|v| v.as_str()).map(str::to_string),
                },
            ))
        })
        .collect()
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Event {
    Promotion {
        time: String,
        #[serde(flatten)]
        promotion: Promotion,
    },
    Command {
        time: String,
        #[serde(flatten)]
        entry: Entry,
    },
    /// The primary cloud's replication to the others, as its master's site
    /// agent recorded it (issue 29).
    Replication {
        time: String,
        #[serde(flatten)]
        record: crate::components::site::SyncRecord,
    },
}

/// Both sources, oldest first; a journal entry read from two clouds' etcd
/// (written before and after a flip) counts once.
pub(crate) fn merge(
    promotions: Vec<(i64, Promotion)>,
    entries: Vec<Entry>,
    replication: Option<crate::components::site::SyncRecord>,
) -> Vec<Event> {
    let time = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default()
    };
    let mut all: Vec<(i64, Event)> = promotions
        .into_iter()
        .map(|(at, promotion)| {
            (
                at,
                Event::Promotion {
                    time: time(at),
                    promotion,
                },
            )
        })
        .collect();
    let mut seen = Vec::new();
    for e in entries {
        if seen.contains(&e) {
            continue;
        }
        seen.push(e.clone());
        let at = i64::try_from(e.started).unwrap_or(i64::MAX);
        all.push((
            at,
            Event::Command {
                time: time(at),
                entry: e,
            },
        ));
    }
    if let Some(mut r) = replication {
        let earlier = std::mem::take(&mut r.history);
        for record in earlier.into_iter().chain([r]) {
            // Whole seconds, as the other sources (the agent writes fractions).
            let at = record.at as i64;
            all.push((at, Event::Replication { time: time(at), record }));
        }
    }
    // Both sources count whole seconds: within one, a command comes before
    // a promotion, which a command started in that second (a resume, a
    // flip) is what causes (seen: a resume and the failover it allowed).
    all.sort_by_key(|(at, e)| (*at, matches!(e, Event::Promotion { .. })));
    all.into_iter().map(|(_, e)| e).collect()
}

pub(crate) async fn run(design: &Design, output: ui::Output) -> anyhow::Result<()> {
    let fleet = Fleet::connect(design, Reach::NO_GLB).await?;
    let events = gather(&fleet).await;
    fleet.close().await;
    match output {
        ui::Output::Json => ui::print_json(&serde_json::json!({ "events": events })),
        ui::Output::Text => {
            let mut t = ui::table(&["Time", "What", "Detail"]);
            for e in &events {
                match e {
                    Event::Promotion { time, promotion: p } => t.add_row(vec![
                        time.clone(),
                        format!(
                            "{}: timeline {}{}",
                            p.cloud,
                            p.timeline,
                            p.new_leader.as_ref().map_or(String::new(), |l| format!(", {l} master"))
                        ),
                        p.reason.clone(),
                    ]),
                    Event::Command { time, entry: c } => t.add_row(vec![
                        time.clone(),
                        format!("pgha {} ({}@{})", c.command, c.user, c.from),
                        format!("{} ({} steps)", c.outcome, c.plan.len()),
                    ]),
                    Event::Replication { time, record: r } => t.add_row(vec![
                        time.clone(),
                        match (&r.mode, &r.partner) {
                            (crate::components::site::SyncMode::Sync, Some(p)) => {
                                format!("{}: synchronous with {p} from {}", r.cloud, format_lsn(r.lsn))
                            }
                            _ => format!("{}: asynchronous from {}", r.cloud, format_lsn(r.lsn)),
                        },
                        r.why.clone(),
                    ]),
                };
            }
            ui::print(&t.to_string())
        }
    }
}

/// Reads every cloud's Patroni history and journal (clouds that do not
/// answer are skipped: the history shows what can be read).
pub(crate) async fn gather(fleet: &Fleet) -> Vec<Event> {
    let d = &fleet.design;
    let history = patroni::history_script(d.governor.rest_port);
    let journal = etcd::get_prefix_script(d.etcd.client_port, &journal::prefix(d));
    let mut promotions = Vec::new();
    let mut entries = Vec::new();
    for c in d.clouds_in_order() {
        let mut read_history = false;
        let mut read_journal = false;
        for h in &c.hosts {
            let Ok(r) = fleet.remote(&h.name) else { continue };
            if !read_history {
                if let Ok(text) = r.check("reading Patroni's history", &history).await {
                    promotions.extend(parse_history(&c.name, &text));
                    read_history = true;
                }
            }
            if !read_journal {
                if let Ok(text) = r.check("reading pgha's journal", &journal).await {
                    entries.extend(text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()));
                    read_journal = true;
                }
            }
            if read_history && read_journal {
                break;
            }
        }
    }
    // The site's record of replication between clouds, with the states before it.
    let replication = match &d.site {
        Some(_) => super::site::read(fleet, None).await.ok().and_then(|s| s.sync),
        None => None,
    };
    merge(promotions, entries, replication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str, started: u64) -> Entry {
        Entry {
            started,
            ended: started + 5,
            user: "alice".into(),
            from: "ops1".into(),
            pid: 7,
            command: command.into(),
            plan: vec!["one".into()],
            outcome: "ok".into(),
        }
    }

    #[test]
    fn promotions_and_commands_merge_oldest_first_and_once() {
        let history = r#"[[1, 50331808, "no recovery target specified", "2026-11-29T10:00:10.5+00:00", "dc1-pg2"],
            [2, 67109024, "no recovery target specified", "2026-11-29T10:05:00+00:00"], ["bad"]]"#;
        let promotions = parse_history("dc1", history);
        assert_eq!(promotions.len(), 2);
        assert_eq!(promotions[0].1.timeline, 2);
        assert_eq!(promotions[0].1.new_leader.as_deref(), Some("dc1-pg2"));
        assert_eq!(promotions[1].1.new_leader, None);
        let t0 = promotions[0].0 as u64;
        let flip = entry("cloud make-primary dc2", t0 + 60);
        let events = merge(promotions, vec![flip.clone(), entry("deploy", t0 - 60), flip], None);
        let kinds: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Promotion { promotion, .. } => format!("timeline {}", promotion.timeline),
                Event::Command { entry, .. } => entry.command.clone(),
                Event::Replication { record, .. } => record.why.clone(),
            })
            .collect();
        assert_eq!(kinds, ["deploy", "timeline 2", "cloud make-primary dc2", "timeline 3"]);
        // In the same second as a promotion, the command is listed first.
        let same = merge(parse_history("dc1", history), vec![entry("resume", t0)], None);
        assert!(
            matches!(&same[0], Event::Command { entry, .. } if entry.command == "resume"),
            "{same:?}"
        );
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["kind"], "command");
        assert_eq!(json["user"], "alice");
        assert_eq!(json["time"], "2026-11-29T09:59:10Z");
        assert!(parse_history("dc1", "not json").is_empty());
    }

    #[test]
    fn a_failed_command_keeps_its_error() {
        let holder = crate::lock::Holder::me("switchover");
        let e = Entry::new(&holder, &[], &Err(anyhow::anyhow!("no replica")), 9);
        assert_eq!(e.outcome, "failed: no replica");
        assert_eq!(e.command, "switchover");
    }

    #[test]
    fn the_journal_script_reads_the_value_from_stdin_and_keeps_a_bound() {
        let s = etcd::journal_put_script(2379, "/pgha/c/pgha-journal/", "/pgha/c/pgha-journal/1-2", 1000);
        assert!(s.contains("e put /pgha/c/pgha-journal/1-2 < \"$PGHA_INPUT\""), "{s}");
        assert!(s.contains("head -n -1000"), "{s}");
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", &s])
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn the_replication_record_and_the_states_before_it_are_events() {
        let record: crate::components::site::SyncRecord = serde_json::from_str(
            r#"{"cloud": "dc1", "mode": "sync", "partner": "dc2", "lsn": 100, "why": "dc2 confirms", "at": 300.5,
                "history": [{"cloud": "dc1", "mode": "async", "partner": null, "lsn": 50, "why": "a commit waited", "at": 100.0}]}"#,
        )
        .unwrap();
        let events = merge(Vec::new(), vec![entry("deploy", 200)], Some(record));
        let kinds: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .map(|v| format!("{} {}", v["kind"], v["why"]))
            .collect();
        assert_eq!(
            kinds,
            [
                "\"replication\" \"a commit waited\"",
                "\"command\" null",
                "\"replication\" \"dc2 confirms\""
            ]
        );
    }
}
