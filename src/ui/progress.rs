//! The one place that draws a run's progress. Runners send events; this
//! draws spinners on a terminal and plain timestamped lines otherwise
//! (indicatif draws nothing when stderr is not a terminal).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "outcome", content = "detail", rename_all = "lowercase")]
pub enum Outcome {
    Changed(String),
    Unchanged,
    Verified,
    Failed(String),
}

impl Outcome {
    /// What changed, or why it failed.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Outcome::Changed(d) | Outcome::Failed(d) => Some(d),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Changed(_) => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::Verified => "ok",
            Outcome::Failed(_) => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    StepStarted {
        number: usize,
        title: String,
    },
    HostStarted {
        number: usize,
        host: String,
        what: String,
    },
    HostMessage {
        number: usize,
        host: String,
        message: String,
    },
    HostDone {
        number: usize,
        host: String,
        outcome: Outcome,
        elapsed: Duration,
    },
    StepMessage {
        number: usize,
        message: String,
    },
    StepDone {
        number: usize,
        ok: bool,
        elapsed: Duration,
    },
    /// A line outside any step.
    Note {
        message: String,
    },
}

pub type Events = mpsc::UnboundedSender<Event>;

/// Sends an event; a closed monitor only means nobody is watching.
pub fn emit(tx: &Events, e: Event) {
    observe(&e);
    let _ = tx.send(e);
}

/// Draws one event now, as a plain line: for runners that draw as they go
/// (the day-two commands), in the same words as [`monitor`]'s.
pub(crate) fn draw(e: Event) {
    observe(&e);
    eprintln!("[{} UTC] {}", clock(), line(&e));
}

/// The monitor drawing now, if any: weak, so that it still ends when its
/// runner drops the last sender.
static ACTIVE: std::sync::Mutex<Option<mpsc::WeakUnboundedSender<Event>>> = std::sync::Mutex::new(None);

/// A line of the running command outside its steps' own events (what it
/// found, what it falls back to): through the monitor drawing now, under
/// the running step's number when one runs.
pub(crate) fn note(message: impl Into<String>) {
    let message = message.into();
    let e = match super::journal::running() {
        Some(number) => Event::StepMessage { number, message },
        None => Event::Note { message },
    };
    let active = ACTIVE.lock().ok().and_then(|a| a.as_ref().and_then(|w| w.upgrade()));
    match active {
        Some(tx) => emit(&tx, e),
        None => draw(e),
    }
}

/// What an interrupted run tells its user: the steps begun and ended.
fn observe(e: &Event) {
    match e {
        Event::StepStarted { number, title } => super::journal::started(*number, title),
        Event::StepDone { number, ok, .. } => super::journal::finished(*number, *ok),
        _ => {}
    }
}

fn line(e: &Event) -> String {
    match e {
        Event::StepStarted { number, title } => format!("step {number}: {title}"),
        Event::HostStarted { number, host, what } => format!("step {number} {host}: {what}"),
        Event::HostMessage { number, host, message } => format!("step {number} {host}: {message}"),
        Event::StepMessage { number, message } => format!("step {number}: {message}"),
        Event::Note { message } => message.clone(),
        Event::HostDone {
            number,
            host,
            outcome,
            elapsed,
        } => {
            let detail = outcome.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!(
                "step {number} {host}: {}{detail} in {:.1} s",
                outcome.label(),
                elapsed.as_secs_f64()
            )
        }
        Event::StepDone { number, ok, elapsed } => format!(
            "step {number}: {} in {:.1} s",
            if *ok { "done" } else { "failed" },
            elapsed.as_secs_f64()
        ),
    }
}

/// Starts the monitor; dropping every sender ends it.
pub fn monitor() -> (Events, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Ok(mut active) = ACTIVE.lock() {
        *active = Some(tx.downgrade());
    }
    let fancy = std::io::stderr().is_terminal() && std::env::var_os("PGHA_PLAIN").is_none();
    let handle = tokio::spawn(async move {
        if fancy {
            bars(rx).await
        } else {
            plain(rx).await
        }
    });
    (tx, handle)
}

fn clock() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

async fn plain(mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(e) = rx.recv().await {
        eprintln!("[{} UTC] {}", clock(), line(&e));
    }
}

async fn bars(mut rx: mpsc::UnboundedReceiver<Event>) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg}").expect("valid template");
    let mut live: HashMap<(usize, String), ProgressBar> = HashMap::new();
    while let Some(e) = rx.recv().await {
        match e {
            Event::StepStarted { number, title } => {
                let _ = multi.println(format!("step {number}: {title}"));
                // The step's own spinner: a long wait shows it is alive.
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("step {number}"));
                bar.set_message(title);
                bar.enable_steady_tick(Duration::from_millis(120));
                live.insert((number, String::new()), bar);
            }
            e @ Event::StepDone { number, .. } => {
                if let Some(bar) = live.remove(&(number, String::new())) {
                    bar.finish_and_clear();
                }
                let _ = multi.println(line(&e));
            }
            e @ (Event::StepMessage { .. } | Event::Note { .. }) => {
                let _ = multi.println(line(&e));
            }
            Event::HostStarted { number, host, what } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(host.clone());
                bar.set_message(what);
                bar.enable_steady_tick(Duration::from_millis(120));
                live.insert((number, host), bar);
            }
            Event::HostMessage { number, host, message } => {
                if let Some(bar) = live.get(&(number, host)) {
                    bar.set_message(message);
                }
            }
            Event::HostDone {
                number,
                host,
                outcome,
                elapsed,
            } => {
                if let Some(bar) = live.remove(&(number, host.clone())) {
                    let mark = if matches!(outcome, Outcome::Failed(_)) {
                        "✗"
                    } else {
                        "✓"
                    };
                    let detail = outcome.detail().map(|d| format!(": {d}")).unwrap_or_default();
                    bar.finish_and_clear();
                    let _ = multi.println(format!(
                        "  {mark} {host} {}{detail} ({:.1} s)",
                        outcome.label(),
                        elapsed.as_secs_f64()
                    ));
                }
            }
        }
    }
}
