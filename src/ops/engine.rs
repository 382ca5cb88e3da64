//! The one runner of the changing commands. A command says which clouds it
//! locks, plans from what it reads under the lock, and runs one step; the
//! engine owns the rest, in this order: the session (the local lock, the
//! digest of the design and state, and the half-done flip it may finish),
//! the cluster lock, the plan (numbered text, or the JSON document),
//! `--dry-run`, the question, the design unchanged since, the steps drawn by
//! the one renderer (each only while the cluster lock is surely held), the
//! journal and the report.

use super::report::{numbered, Recorder};
use crate::design::Cloud;
use crate::fleet::Fleet;
use crate::state::FlipIntent;
use crate::ui::{self, confirm};

/// What every changing command takes from its command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flags {
    pub yes: bool,
    pub dry_run: bool,
    pub output: ui::Output,
}

impl Flags {
    pub(crate) fn new(yes: bool, dry_run: bool, output: ui::Output) -> Flags {
        Flags { yes, dry_run, output }
    }
}

/// A changing command, as the engine runs it.
pub(crate) trait Command {
    /// One step of its plan.
    type Step;

    /// As the user typed it after `pgha`: the journal's and the JSON's name.
    fn name(&self) -> String;

    /// A flip names itself (verb, cloud): a half-done run of that same flip
    /// is finished, not refused.
    fn flip(&self) -> Option<(&'static str, &str)> {
        None
    }

    /// The half-done run of this flip that this run finishes, read under
    /// the local lock before anything is planned.
    fn resume(&mut self, _intent: Option<FlipIntent>) {}

    /// The clouds whose etcd may hold the cluster lock, tried in order.
    fn lock_clouds(&self) -> Vec<&Cloud>;

    /// Reads the cluster under the lock and plans. No step: nothing to do
    /// (the plan is shown, nothing is asked). An error refuses the command
    /// before any change.
    async fn plan(&mut self) -> anyhow::Result<Vec<Self::Step>>;

    /// The step as the plan shows it.
    fn describe(&self, step: &Self::Step) -> String;

    /// The plan's heading in text.
    fn title(&self) -> String {
        format!("Plan for `{}`", self.name())
    }

    /// The plan in the JSON document: the steps' descriptions, unless the
    /// command has data scripts read.
    fn plan_json(&self, _plan: &[Self::Step], described: &[String]) -> serde_json::Value {
        serde_json::json!(described)
    }

    /// A refusal that needs the plan shown first (what it would lose, say),
    /// before a dry run ends or anything is asked.
    fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// What the confirmation asks.
    fn question(&self) -> String;

    /// After the answer, before the first step: what must be true or on
    /// record before any host changes (a flip's intent, say).
    async fn prepare(&mut self, _plan: &[Self::Step]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Runs one step; `rec` takes what it has to say.
    async fn run(&mut self, step: &Self::Step, rec: &Recorder) -> anyhow::Result<()>;

    /// Step `number` is done: what a later run must know of it.
    fn done(&mut self, _number: usize) -> anyhow::Result<()> {
        Ok(())
    }

    /// Every step is done.
    fn finished(&mut self, _rec: &Recorder) -> anyhow::Result<()> {
        Ok(())
    }

    /// What running the command again does after a step failed ("finish
    /// the flip"), for commands whose failed run is finished that way.
    fn again(&self) -> Option<&'static str> {
        None
    }
}

const FAILED: &str = "failed";

/// Runs `cmd` on a connected fleet; see the module comment.
pub(crate) async fn run<C: Command>(fleet: &Fleet, cmd: &mut C, flags: Flags) -> anyhow::Result<()> {
    let design = &fleet.design;
    let name = cmd.name();
    let session = crate::lock::Session::begin(design, &name, cmd.flip())?;
    cmd.resume(session.resuming.clone());
    let lock = session.cluster(design, &cmd.lock_clouds(), &fleet.remotes).await?;
    let (events, monitor) = ui::progress::monitor();
    let mut rec = Recorder::watched(events);
    let result = async {
        let plan = cmd.plan().await?;
        let steps: Vec<String> = plan.iter().map(|s| cmd.describe(s)).collect();
        if flags.output == ui::Output::Text {
            ui::print(&numbered(&cmd.title(), &steps))?;
        }
        cmd.check()?;
        let json = cmd.plan_json(&plan, &steps);
        if flags.dry_run || steps.is_empty() {
            return rec.print(flags.output, &name, flags.dry_run, &json);
        }
        confirm(&cmd.question(), flags.yes)?;
        session.ensure_unchanged(design)?;
        cmd.prepare(&plan).await?;
        let goal = cmd.again();
        let again = |e: anyhow::Error, number: usize, what: &str| match goal {
            Some(goal) => e.context(format!(
                "step {number} ({}) {what}; run `pgha {name}` again to {goal}",
                steps[number - 1]
            )),
            // The step's own error says what failed.
            None if what == FAILED => e,
            None => e.context(format!("step {number} ({}) {what}", steps[number - 1])),
        };
        let mut result = Ok(());
        for (i, step) in plan.iter().enumerate() {
            let number = i + 1;
            // A lock whose renewals failed may lapse: another pgha could
            // take it, so no step starts.
            if let Err(e) = lock.ensure_held() {
                result = Err(again(e, number, "was not started"));
                break;
            }
            rec.start(number, &steps[i]);
            let ran = cmd.run(step, &rec).await;
            result = rec.finish(ran).and_then(|()| cmd.done(number));
            if let Err(e) = result {
                result = Err(again(e, number, FAILED));
                break;
            }
        }
        if result.is_ok() {
            result = cmd.finished(&rec);
        }
        crate::journal::record(design, &fleet.remotes, &session.holder, &steps, &result).await;
        rec.print(flags.output, &name, false, &json)?;
        result
    }
    .await;
    drop(rec);
    let _ = monitor.await;
    lock.release().await;
    result
}
