//! Everything users read: tables, JSON, problems. Commands build data and
//! hand it here.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;

pub(crate) mod journal;
pub mod progress;

use comfy_table::{presets, Cell, ContentArrangement, Table};
use serde::Serialize;

use crate::error::{Problem, Usage};
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A table in pgha's one style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(Cell::new));
    t
}

/// `dc1 (primary)`, or what a step outside the clouds acts on.
pub fn cloud_label(step: &crate::plan::Step) -> String {
    match (&step.cloud, step.cloud_status) {
        (Some(c), Some(st)) => format!("{c} ({})", st.as_str()),
        _ => site_label(step.component).to_string(),
    }
}

/// What a step with no cloud acts on: the sites, the repositories or the GLB.
pub fn site_label(component: crate::components::Component) -> &'static str {
    match component {
        crate::components::Component::Site => "all sites",
        crate::components::Component::Backup => "repositories",
        // The parameter step spans the clouds.
        crate::components::Component::Governor => "all clouds",
        _ => "GLB",
    }
}

pub fn plan_table(plan: &Plan) -> String {
    let mut t = table(&["#", "Cloud", "Component", "Action", "Hosts", "What"]);
    for s in &plan.steps {
        let cloud = cloud_label(s);
        t.add_row(vec![
            s.number.to_string(),
            cloud,
            s.component.as_str().to_string(),
            s.action.as_str().to_string(),
            s.hosts.join(", "),
            s.description.clone(),
        ]);
    }
    t.to_string()
}

/// Bytes for people: B, kB, MB or GB (powers of 1024).
pub fn bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b} B"),
        1024..=1_048_575 => format!("{:.1} kB", b as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MB", b as f64 / 1_048_576.0),
        _ => format!("{:.2} GB", b as f64 / 1_073_741_824.0),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    print(&serde_json::to_string_pretty(value)?)
}

/// Writes a line of data to stdout; a closed pipe is an error the caller
/// treats as success, never a panic.
#[cfg(not(test))]
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// In unit tests, through the harness's captured output: a runner test's
/// plan and report show only when it fails.
#[cfg(test)]
pub fn print(text: &str) -> anyhow::Result<()> {
    println!("{text}");
    Ok(())
}

/// Warnings go to stderr so that stdout stays data.
pub fn print_warnings(warnings: &[Problem]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

/// Asks before changing hosts: `--yes` answers; no terminal and no `--yes` refuses.
pub fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    // Unit tests never ask, even when run from a terminal.
    if cfg!(test) || !std::io::stdin().is_terminal() {
        bail!(Usage(
            "refusing to change hosts without confirmation: no terminal to ask on; pass --yes".into()
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!(Usage("not confirmed: nothing was changed".into()))
    }
}
