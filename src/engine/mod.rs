//! The one runner of the changing commands. A command says which clouds it
//! locks, plans from what it reads under the lock, and runs one step; the
//! engine owns the rest, in this order: the session (the local lock, the
//! digest of the design and state, and the half-done flip it may finish),
//! the cluster lock, the plan (numbered text, or the JSON document),
//! `--dry-run`, the question, the design unchanged since, the steps drawn by
//! the one renderer (each only while the cluster lock is surely held), the
//! journal and the report.

pub(crate) mod report;

use crate::design::Cloud;
use crate::fleet::Fleet;
use crate::state::FlipIntent;
use crate::ui::{self, confirm};
use report::{numbered, Recorder};

/// What every changing command takes from its command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flags {
    pub yes: bool,
    pub dry_run: bool,
    pub output: ui::Output,
    /// Prints the JSON document (`--output json`); a command run as a step
    /// of another prints none (the other reports it).
    pub report: bool,
}

impl Flags {
    pub(crate) fn new(yes: bool, dry_run: bool, output: ui::Output) -> Flags {
        Flags {
            yes,
            dry_run,
            output,
            report: true,
        }
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

    /// The plan as text.
    fn plan_text(&self, _plan: &[Self::Step], described: &[String]) -> String {
        numbered(&self.title(), described)
    }

    /// How many steps change hosts: none, and nothing is asked.
    fn changing(&self, plan: &[Self::Step]) -> usize {
        plan.len()
    }

    /// Runs its steps when none changes anything (deploy verifies); others
    /// end after the plan.
    fn runs_unchanged(&self) -> bool {
        false
    }

    /// What the journal records of a run: every step, unless the command
    /// says which change hosts (none: not journaled).
    fn journaled(&self, _plan: &[Self::Step], described: &[String]) -> Vec<String> {
        described.to_vec()
    }

    /// The engine draws each step's start and end, unless the command draws
    /// its own (deploy: its steps run in groups, host by host).
    fn draws_steps(&self) -> bool {
        true
    }

    /// After the journal, before the report: what the command adds to how
    /// the run ended (deploy: its summary, and how to go on).
    fn ended(&mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        result
    }

    /// Prints the JSON document when the command has one of its own
    /// (deploy: results per host, and `changed`).
    fn print_report(&mut self, _dry_run: bool, _ok: bool) -> Option<anyhow::Result<()>> {
        None
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
    let session = crate::lock::Session::begin(design, &cmd.name(), cmd.flip())?;
    cmd.resume(session.resuming.clone());
    let lock = session.cluster(design, &cmd.lock_clouds(), &fleet.remotes).await?;
    let (events, monitor) = ui::progress::monitor();
    let result = drive(fleet, Some(&session), Some(&lock), cmd, flags, events).await;
    let _ = monitor.await;
    lock.release().await;
    result
}

/// The rest, once the command holds its session and the cluster lock (a
/// first deploy may have none yet): plan, dry run, question, design
/// unchanged, steps, journal, report. No session: a step of another
/// command, which asked, checked and journals for it. `events` go to the
/// monitor drawing the run.
pub(crate) async fn drive<C: Command>(
    fleet: &Fleet,
    session: Option<&crate::lock::Session>,
    lock: Option<&crate::lock::ClusterLock>,
    cmd: &mut C,
    flags: Flags,
    events: ui::progress::Events,
) -> anyhow::Result<()> {
    let design = &fleet.design;
    let name = cmd.name();
    let mut rec = Recorder::watched(events);
    let plan = cmd.plan().await?;
    let steps: Vec<String> = plan.iter().map(|s| cmd.describe(s)).collect();
    if flags.output == ui::Output::Text {
        ui::print(&cmd.plan_text(&plan, &steps))?;
    }
    cmd.check()?;
    let json = cmd.plan_json(&plan, &steps);
    let report = |cmd: &mut C, rec: &mut Recorder, dry_run: bool, ok: bool| -> anyhow::Result<()> {
        if !flags.report || flags.output != ui::Output::Json {
            return Ok(());
        }
        match cmd.print_report(dry_run, ok) {
            Some(printed) => printed,
            None => rec.print(flags.output, &name, dry_run, &json),
        }
    };
    let changing = cmd.changing(&plan);
    if flags.dry_run || (changing == 0 && !cmd.runs_unchanged()) {
        return report(cmd, &mut rec, flags.dry_run, true);
    }
    if let (Some(session), true) = (session, changing > 0) {
        confirm(&cmd.question(), flags.yes)?;
        session.ensure_unchanged(design)?;
    }
    cmd.prepare(&plan).await?;
    let mut result = steps_of(cmd, &plan, &steps, lock, &mut rec).await;
    if result.is_ok() {
        result = cmd.finished(&rec);
    }
    let journaled = cmd.journaled(&plan, &steps);
    if let (Some(session), false) = (session, journaled.is_empty()) {
        crate::journal::record(design, &fleet.remotes, &session.holder, &journaled, &result).await;
    }
    let result = cmd.ended(result);
    report(cmd, &mut rec, false, result.is_ok())?;
    result
}

/// Each step in order, each only while the lock is surely held, until one fails.
async fn steps_of<C: Command>(
    cmd: &mut C,
    plan: &[C::Step],
    steps: &[String],
    lock: Option<&crate::lock::ClusterLock>,
    rec: &mut Recorder,
) -> anyhow::Result<()> {
    let name = cmd.name();
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
    let draws = cmd.draws_steps();
    for (i, step) in plan.iter().enumerate() {
        let number = i + 1;
        // A lock whose renewals failed may lapse: another pgha could take
        // it, so no step starts.
        if let Some(Err(e)) = lock.map(crate::lock::ClusterLock::ensure_held) {
            return Err(again(e, number, "was not started"));
        }
        if draws {
            rec.start(number, &steps[i]);
        }
        let ran = cmd.run(step, rec).await;
        let ran = if draws { rec.finish(ran) } else { ran };
        if let Err(e) = ran.and_then(|()| cmd.done(number)) {
            return Err(again(e, number, FAILED));
        }
    }
    Ok(())
}
