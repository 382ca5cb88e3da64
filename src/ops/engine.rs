//! The one runner of the day-two changing commands. A command says which
//! clouds it locks, plans from what it reads under the lock, and runs one
//! step; the engine owns the rest, in this order: the session (the local
//! lock and the digest of the design and state), the cluster lock, the plan
//! (numbered text, or the JSON document), `--dry-run`, the question, the
//! design unchanged since, the steps drawn by the one renderer, the journal
//! and the report.

use super::report::{numbered, Recorder};
use crate::design::Cloud;
use crate::fleet::Fleet;
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

    /// The clouds whose etcd may hold the cluster lock, tried in order.
    fn lock_clouds(&self) -> Vec<&Cloud>;

    /// Reads the cluster under the lock and plans. No step: nothing to do
    /// (the plan is shown, nothing is asked). An error refuses the command
    /// before any change.
    async fn plan(&mut self) -> anyhow::Result<Vec<Self::Step>>;

    /// The step as the plan shows it.
    fn describe(&self, step: &Self::Step) -> String;

    /// A refusal that needs the plan shown first (what it would lose, say),
    /// before a dry run ends or anything is asked.
    fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// What the confirmation asks.
    fn question(&self) -> String;

    /// Runs one step; `rec` takes what it has to say.
    async fn run(&mut self, step: &Self::Step, rec: &Recorder) -> anyhow::Result<()>;
}

/// Runs `cmd` on a connected fleet; see the module comment.
pub(crate) async fn run<C: Command>(fleet: &Fleet, cmd: &mut C, flags: Flags) -> anyhow::Result<()> {
    let design = &fleet.design;
    let name = cmd.name();
    let session = crate::lock::Session::begin(design, &name, None)?;
    let lock = session.cluster(design, &cmd.lock_clouds(), &fleet.remotes).await?;
    let result = async {
        let plan = cmd.plan().await?;
        let steps: Vec<String> = plan.iter().map(|s| cmd.describe(s)).collect();
        if flags.output == ui::Output::Text {
            ui::print(&numbered(&format!("Plan for `{name}`"), &steps))?;
        }
        cmd.check()?;
        let mut rec = Recorder::default();
        if flags.dry_run || steps.is_empty() {
            return rec.print(flags.output, &name, flags.dry_run, &steps);
        }
        confirm(&cmd.question(), flags.yes)?;
        session.ensure_unchanged(design)?;
        let mut result = Ok(());
        for (i, step) in plan.iter().enumerate() {
            rec.start(i + 1, &steps[i]);
            let ran = cmd.run(step, &rec).await;
            result = rec.finish(ran);
            if result.is_err() {
                break;
            }
        }
        crate::journal::record(design, &fleet.remotes, &session.holder, &steps, &result).await;
        rec.print(flags.output, &name, false, &steps)?;
        result
    }
    .await;
    lock.release().await;
    result
}
