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

/// `dc1 (primary)`, or `GLB` for the load balancer's steps.
pub fn cloud_label(step: &crate::plan::Step) -> String {
    match (&step.cloud, step.cloud_status) {
        (Some(c), Some(st)) => format!("{c} ({})", st.as_str()),
        _ if step.component == crate::components::Component::Site => "all sites".to_string(),
        _ => "GLB".to_string(),
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

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes a line of data to stdout; a closed pipe is an error the caller
/// treats as success, never a panic.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
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
    if !std::io::stdin().is_terminal() {
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
