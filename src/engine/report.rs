//! What every day-two changing command reports: its numbered plan, then the
//! outcome of each step, drawn by the progress renderer while it runs and
//! printed once as data (`--output json`) at the end.

use std::time::Instant;

use serde::Serialize;

use crate::ui;
use crate::ui::progress::{self, Event};

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepResult {
    pub number: usize,
    /// `ok` or `failed`.
    pub outcome: &'static str,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The JSON document of a changing command: `{command, dry_run, plan, results, ok}`.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a, P: Serialize> {
    pub command: &'a str,
    pub dry_run: bool,
    pub plan: &'a P,
    pub results: Vec<StepResult>,
    pub ok: bool,
}

/// Records step outcomes and draws progress: through the one monitor when
/// watched, as plain lines otherwise.
#[derive(Default)]
pub(crate) struct Recorder {
    step: Option<(usize, Instant)>,
    pub results: Vec<StepResult>,
    events: Option<progress::Events>,
}

impl Recorder {
    /// Draws through `events` (spinners on a terminal, plain lines otherwise).
    pub(crate) fn watched(events: progress::Events) -> Recorder {
        Recorder {
            events: Some(events),
            ..Recorder::default()
        }
    }

    /// Where a command that draws its own steps sends their events (a
    /// Recorder without a monitor gives one nobody reads).
    pub(crate) fn events(&self) -> progress::Events {
        self.events
            .clone()
            .unwrap_or_else(|| tokio::sync::mpsc::unbounded_channel().0)
    }

    fn draw(&self, e: Event) {
        match &self.events {
            Some(tx) => progress::emit(tx, e),
            None => progress::draw(e),
        }
    }

    pub(crate) fn start(&mut self, number: usize, description: &str) {
        self.draw(Event::StepStarted {
            number,
            title: description.to_string(),
        });
        self.step = Some((number, Instant::now()));
    }

    /// Records the current step's outcome and passes the result on.
    pub(crate) fn finish<T>(&mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Some((number, at)) = self.step.take() {
            self.draw(Event::StepDone {
                number,
                ok: result.is_ok(),
                elapsed: at.elapsed(),
            });
            self.results.push(StepResult {
                number,
                outcome: if result.is_ok() { "ok" } else { "failed" },
                seconds: (at.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                detail: result.as_ref().err().map(|e| format!("{e:#}")),
            });
        }
        result
    }

    /// A message of the step running (after the last, of the last).
    pub(crate) fn note(&self, text: &str) {
        let number = self
            .step
            .map(|(n, _)| n)
            .or(self.results.last().map(|r| r.number))
            .unwrap_or(0);
        self.draw(Event::StepMessage {
            number,
            message: text.to_string(),
        });
    }

    /// Prints the report as JSON when asked; text output was drawn already.
    pub(crate) fn print<P: Serialize>(
        &mut self,
        output: ui::Output,
        command: &str,
        dry_run: bool,
        plan: &P,
    ) -> anyhow::Result<()> {
        if output == ui::Output::Json {
            let ok = self.results.iter().all(|r| r.outcome == "ok");
            ui::print_json(&Report {
                command,
                dry_run,
                plan,
                results: std::mem::take(&mut self.results),
                ok,
            })?;
        }
        Ok(())
    }
}

/// Numbered lines: the text form of a plan.
pub(crate) fn numbered(title: &str, steps: &[String]) -> String {
    let lines: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    format!("{title} ({} steps):\n{}", steps.len(), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_recorded_per_step() {
        let mut r = Recorder::default();
        r.start(1, "first");
        r.finish(Ok::<_, anyhow::Error>(())).unwrap();
        r.start(2, "second");
        assert!(r.finish::<()>(Err(anyhow::anyhow!("boom"))).is_err());
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.results[1].outcome, "failed");
        assert_eq!(r.results[1].detail.as_deref(), Some("boom"));
        let v = serde_json::to_value(Report {
            command: "x",
            dry_run: false,
            plan: &vec!["a"],
            results: r.results,
            ok: false,
        })
        .unwrap();
        assert_eq!(v["results"][0]["outcome"], "ok");
        assert_eq!(v["plan"][0], "a");
    }
}
