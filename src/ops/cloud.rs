//! `pgha cloud make-primary|make-secondary NAME`: flip which cloud serves
//! traffic and may elect the master.
//!
//! The plan is plain data, printed and confirmed before anything runs. The
//! order is what keeps data and prevents split brain: traffic is drained and
//! the old primary fenced (demoted to a standby cluster) *before* the new one
//! is promoted, and a planned flip promotes only once the new cloud has
//! replayed everything the old one wrote.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::wal::{self, WalPos};
use crate::components::systemd::{self, Verb};
use crate::components::{glb as glb_component, haproxy, patroni, site};
use crate::design::{edit, Cloud, CloudStatus, Design};
use crate::engine;
use crate::engine::report::Recorder;
use crate::error::Usage;
use crate::fleet::{format_lsn, Fleet, Reach};
use crate::render::{pick, Renderer};
use crate::secrets::Secrets;
use crate::state;
use crate::ui;
use crate::wait::{poll, poll_for, poll_seen};

/// How long a flip's new cloud may take to replay the old one's WAL through
/// its usual route (it streams while the flip drains and demotes: normally
/// there within a second) before it streams from the old cloud's leader
/// directly.
const ROUTE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum FlipAction {
    /// Refuse unless no other host holds WAL (commits) the new primary lacks.
    CheckNoDataLoss { new: String },
    /// The lost primary cloud `old`'s record of its replication, at the
    /// site: what `new` may lack of its acknowledged commits.
    CheckSynchronous { new: String, old: String },
    /// The GLB forwards to no cloud.
    GlbDrain,
    /// The site lease `from` holds is marked as handed over to `to`: no
    /// member of `from` may be promoted until `to` takes it.
    HandOver { from: String, to: String },
    /// The cloud becomes a standby cluster following `follow` (its master demotes).
    Demote { cloud: String, follow: Vec<String> },
    /// Wait until `new`'s standby leader has replayed all of `old`'s WAL.
    WaitCaughtUp { new: String, old: String },
    /// The cloud takes the site lease (`demoted`: pgha just demoted its
    /// holder; otherwise a lease another cloud holds is waited out).
    TakeLease { cloud: String, demoted: bool },
    /// Remove `standby_cluster`: the standby leader becomes the master.
    Promote { cloud: String },
    /// A secondary cloud follows the new primary cloud's HAProxy ports.
    Follow { cloud: String, follow: Vec<String> },
    /// Rewrite HAProxy everywhere for the new primary cloud.
    Haproxy,
    /// The GLB forwards to the new primary cloud.
    GlbPoint,
    /// Record the new statuses in the design file.
    SaveDesign,
    /// Wait for a healthy leader and the GLB routing to it.
    Verify { cloud: String },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlipStep {
    pub number: usize,
    pub description: String,
    #[serde(flatten)]
    pub action: FlipAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flip {
    MakePrimary,
    MakeSecondary,
}

/// The design after the flip.
fn flipped(design: &Design, name: &str, flip: Flip) -> Design {
    let mut d = design.clone();
    for c in &mut d.clouds {
        if c.name == name {
            c.status = if flip == Flip::MakePrimary {
                CloudStatus::Primary
            } else {
                CloudStatus::Secondary
            };
        } else if flip == Flip::MakePrimary {
            c.status = CloudStatus::Secondary;
        }
    }
    d
}

fn addresses(cloud: &Cloud) -> Vec<String> {
    cloud.hosts.iter().map(|h| h.address.clone()).collect()
}

/// HAProxy everywhere and the GLB point at `name`'s master.
fn route_to(name: &str) -> [(String, FlipAction); 2] {
    [
        (
            format!("haproxy on every host: route to {name}'s master"),
            FlipAction::Haproxy,
        ),
        (
            format!("GLB: forward to {name}'s HAProxy instances"),
            FlipAction::GlbPoint,
        ),
    ]
}

fn verify_step(name: &str) -> (String, FlipAction) {
    (
        format!("verify: one master in {name}, the GLB routing to it"),
        FlipAction::Verify { cloud: name.into() },
    )
}

/// How every make-primary ends once `target` has its master: `followers`
/// become its standby clusters, traffic routes to it, the design records it.
fn settle_new_primary(steps: &mut Vec<(String, FlipAction)>, design: &Design, target: &Cloud, followers: &[&Cloud]) {
    let name = &target.name;
    for c in followers {
        steps.push((
            format!("governor: {} follows {name} (standby cluster)", c.name),
            FlipAction::Follow {
                cloud: c.name.clone(),
                follow: addresses(target),
            },
        ));
    }
    steps.extend(route_to(name));
    steps.push((
        format!("record {name} as primary in {}", design.path.display()),
        FlipAction::SaveDesign,
    ));
    steps.push(verify_step(name));
}

/// `make-secondary`: drain, demote, route to no master, record.
fn make_secondary_steps(steps: &mut Vec<(String, FlipAction)>, design: &Design, target: &Cloud) -> anyhow::Result<()> {
    let name = target.name.as_str();
    let file = design.path.display();
    if !target.is_primary() {
        bail!(Usage(format!("cloud {name} is already secondary")));
    }
    let others: Vec<String> = design
        .clouds
        .iter()
        .filter(|c| c.name != name)
        .flat_map(addresses)
        .collect();
    steps.push((
        "GLB: forward to no cloud until one is made primary".into(),
        FlipAction::GlbDrain,
    ));
    steps.push((
        format!("governor: {name} becomes a standby cluster (its master, if any, demotes) and will follow the next primary cloud"),
        FlipAction::Demote { cloud: name.into(), follow: others },
    ));
    steps.push((
        "haproxy on every host: route to no master until a cloud is primary".into(),
        FlipAction::Haproxy,
    ));
    steps.push((format!("record {name} as secondary in {file}"), FlipAction::SaveDesign));
    Ok(())
}

/// `make-primary`: fence the old primary cloud (as far as it answers),
/// make sure nothing is lost, take the site lease, promote, settle.
fn make_primary_steps(
    steps: &mut Vec<(String, FlipAction)>,
    design: &Design,
    target: &Cloud,
    reachable: &dyn Fn(&Cloud) -> bool,
) -> anyhow::Result<()> {
    let name = target.name.as_str();
    if target.is_primary() {
        bail!(Usage(format!("cloud {name} is already primary")));
    }
    let new_hosts = addresses(target);
    match design.primary_clouds().next() {
        Some(old) if !reachable(old) => {
            // The old primary cloud is lost: fence it as far as we can
            // (GLB, design, pending change) and promote from what we have.
            steps.push(("GLB: forward to no cloud (drain)".into(), FlipAction::GlbDrain));
            steps.push((
                format!("governor: {} (unreachable) is recorded to become a standby cluster following {name} when it returns", old.name),
                FlipAction::Demote { cloud: old.name.clone(), follow: new_hosts.clone() },
            ));
            steps.push((
                format!("check that no reachable host outside {name} holds commits {name} has not replayed"),
                FlipAction::CheckNoDataLoss { new: name.into() },
            ));
            if design.site.is_some() {
                steps.push((
                    format!(
                        "site: read {}'s record of its replication: {name} must hold every commit it proves acknowledged",
                        old.name
                    ),
                    FlipAction::CheckSynchronous {
                        new: name.into(),
                        old: old.name.clone(),
                    },
                ));
            }
        }
        Some(old) => {
            // A planned switchover between two healthy clouds.
            steps.push(("GLB: forward to no cloud (drain)".into(), FlipAction::GlbDrain));
            if design.site.is_some() {
                steps.push((
                    format!(
                        "site: mark {}'s lease as handed over to {name} (for {} s): from now no member of {} \
                         is promoted, not even by its agent resuming after a fence",
                        old.name,
                        site::HANDOVER_SECS,
                        old.name
                    ),
                    FlipAction::HandOver {
                        from: old.name.clone(),
                        to: name.into(),
                    },
                ));
            }
            steps.push((
                format!("governor: {} becomes a standby cluster following {name}; its master demotes (no writes anywhere now)", old.name),
                FlipAction::Demote { cloud: old.name.clone(), follow: new_hosts.clone() },
            ));
            steps.push((
                format!(
                    "wait until {name}'s standby leader has replayed all of {}'s WAL (zero data loss)",
                    old.name
                ),
                FlipAction::WaitCaughtUp {
                    new: name.into(),
                    old: old.name.clone(),
                },
            ));
        }
        None => steps.push((
            format!("check that no host outside {name} holds commits {name} has not replayed"),
            FlipAction::CheckNoDataLoss { new: name.into() },
        )),
    }
    if let Some(site) = &design.site {
        let old = design.primary_clouds().next();
        let demoted = old.is_some_and(reachable);
        let how = match old {
            Some(o) if demoted => format!(" from {} (demoted above)", o.name),
            Some(o) => format!(
                "; while {} renews it, wait up to its ttl ({} s): cut off from most sites it cannot, and fenced itself",
                o.name, site.ttl
            ),
            None => String::new(),
        };
        steps.push((
            format!("site: {name} takes the site lease{how}"),
            FlipAction::TakeLease {
                cloud: name.into(),
                demoted,
            },
        ));
    }
    steps.push((
        format!("governor: promote {name}'s standby leader to master"),
        FlipAction::Promote { cloud: name.into() },
    ));
    let old_primary = design.primary_clouds().next().map(|c| c.name.clone());
    let others: Vec<&Cloud> = design
        .clouds
        .iter()
        .filter(|c| c.name != name && Some(&c.name) != old_primary.as_ref())
        .collect();
    settle_new_primary(steps, design, target, &others);
    Ok(())
}

/// The numbered plan. Pure: the design, the target and which clouds answer.
pub(crate) fn plan(
    design: &Design,
    name: &str,
    flip: Flip,
    reachable: &dyn Fn(&Cloud) -> bool,
    resuming: bool,
    taken_over: bool,
) -> anyhow::Result<Vec<FlipStep>> {
    let target = design.cloud(name).ok_or_else(|| {
        let names: Vec<&str> = design.clouds.iter().map(|c| c.name.as_str()).collect();
        Usage(format!("no cloud named `{name}` (clouds: {})", names.join(", ")))
    })?;
    let mut steps: Vec<(String, FlipAction)> = Vec::new();
    match flip {
        // An interrupted flip that already recorded itself in the design:
        // what is left is to route traffic and verify.
        Flip::MakeSecondary if resuming && !target.is_primary() => {
            steps.push((
                "haproxy on every host: route to no master until a cloud is primary".into(),
                FlipAction::Haproxy,
            ));
        }
        Flip::MakePrimary if resuming && target.is_primary() => {
            steps.extend(route_to(name));
            steps.push(verify_step(name));
        }
        // An automatic failover already gave the cloud the site lease and a
        // master (the old primary fenced itself): what is left is to record it.
        Flip::MakePrimary if taken_over && !target.is_primary() => {
            let others: Vec<&Cloud> = design.clouds.iter().filter(|c| c.name != name).collect();
            settle_new_primary(&mut steps, design, target, &others);
        }
        Flip::MakeSecondary => make_secondary_steps(&mut steps, design, target)?,
        Flip::MakePrimary => make_primary_steps(&mut steps, design, target, reachable)?,
    }
    Ok(steps
        .into_iter()
        .enumerate()
        .map(|(i, (description, action))| FlipStep {
            number: i + 1,
            description,
            action,
        })
        .collect())
}

pub(crate) struct Options {
    pub yes: bool,
    pub force: bool,
    pub dry_run: bool,
}

impl Flip {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Flip::MakePrimary => "make-primary",
            Flip::MakeSecondary => "make-secondary",
        }
    }

    /// The command as the user typed it, after `pgha`: how locks and
    /// reports name it.
    fn command(self, cloud: &str) -> String {
        format!("cloud {} {cloud}", self.verb())
    }
}

pub(crate) async fn run(
    design: &Design,
    name: &str,
    flip: Flip,
    opts: &Options,
    output: ui::Output,
) -> anyhow::Result<()> {
    // No repository host: a flip never asks one.
    let reach = Reach {
        glb: true,
        repositories: false,
        sites: true,
    };
    let fleet = Fleet::connect(design, reach).await?;
    let result = run_on(&fleet, name, flip, opts, output).await;
    fleet.close().await;
    result
}

/// The flip on a connected fleet, run by the engine.
pub(crate) async fn run_on(
    fleet: &Fleet,
    name: &str,
    flip: Flip,
    opts: &Options,
    output: ui::Output,
) -> anyhow::Result<()> {
    super::site::refuse_without_gates(fleet).await?;
    let after = flipped(&fleet.design, name, flip);
    let mut cmd = FlipRun {
        fleet,
        name,
        flip,
        force: opts.force,
        after: &after,
        intent: None,
        runner: None,
    };
    engine::run(fleet, &mut cmd, engine::Flags::new(opts.yes, opts.dry_run, output)).await
}

/// A flip as the engine runs it; a run of the same flip that stopped
/// half-way (`intent`) is finished.
struct FlipRun<'a> {
    fleet: &'a Fleet,
    name: &'a str,
    flip: Flip,
    force: bool,
    after: &'a Design,
    /// What is on record of this flip: the half-done run it finishes, then
    /// this run's progress.
    intent: Option<state::FlipIntent>,
    /// Made once the flip is confirmed.
    runner: Option<Runner<'a>>,
}

impl FlipRun<'_> {
    /// With a site lease, a cloud that holds it and has a master got there
    /// by an automatic failover: the flip only records it.
    async fn taken_over(&self) -> bool {
        let fleet = self.fleet;
        match (&fleet.design.site, fleet.design.cloud(self.name)) {
            (Some(_), Some(c)) if self.flip == Flip::MakePrimary && !c.is_primary() && fleet.cloud_reachable(c) => {
                let holder = super::site::read(fleet, Some(self.name))
                    .await
                    .ok()
                    .and_then(|s| s.holder);
                holder.as_deref() == Some(self.name) && fleet.master(c).await.ok().flatten().is_some()
            }
            _ => false,
        }
    }
}

impl<'a> engine::Command for FlipRun<'a> {
    type Step = FlipStep;

    fn name(&self) -> String {
        self.flip.command(self.name)
    }

    fn flip(&self) -> Option<(&'static str, &str)> {
        Some((self.flip.verb(), self.name))
    }

    fn resume(&mut self, intent: Option<state::FlipIntent>) {
        self.intent = intent;
    }

    /// The primary cloud's etcd, or, when that cloud is unreachable (a lost
    /// data center), the etcd of the cloud this flip promotes.
    fn lock_clouds(&self) -> Vec<&Cloud> {
        let design = &self.fleet.design;
        let mut clouds: Vec<&Cloud> = design
            .primary_clouds()
            .filter(|c| self.fleet.cloud_reachable(c))
            .collect();
        clouds.extend(design.cloud(self.name).filter(|c| !c.is_primary()));
        clouds
    }

    async fn plan(&mut self) -> anyhow::Result<Vec<FlipStep>> {
        let fleet = self.fleet;
        let reachable: Vec<&Cloud> = fleet
            .design
            .clouds
            .iter()
            .filter(|c| fleet.cloud_reachable(c))
            .collect();
        // Both reads are on the way to the first step: at once.
        let ((), taken_over) = tokio::join!(fleet.warn_if_paused(&reachable), self.taken_over());
        let steps = plan(
            &fleet.design,
            self.name,
            self.flip,
            &|c: &Cloud| fleet.cloud_reachable(c),
            self.intent.is_some(),
            taken_over,
        )?;
        for u in &fleet.unreachable {
            ui::progress::note(format!(
                "warning: {} ({}) is unreachable: what it must change is recorded and applied by the next deploy",
                u.host, u.address
            ));
        }
        Ok(steps)
    }

    fn describe(&self, step: &FlipStep) -> String {
        step.description.clone()
    }

    fn title(&self) -> String {
        let resume = match &self.intent {
            Some(f) => format!(" (finishing the run that stopped after step {})", f.done_step),
            None => String::new(),
        };
        format!("Plan for `{}`{resume}", self.flip.command(self.name))
    }

    fn plan_json(&self, plan: &[FlipStep], _described: &[String]) -> serde_json::Value {
        serde_json::to_value(plan).unwrap_or_default()
    }

    fn question(&self) -> String {
        "Run these steps?".to_string()
    }

    /// The intent goes on record before any host changes: an interrupted
    /// flip is finished by running the same command, and nothing else runs
    /// meanwhile.
    async fn prepare(&mut self, plan: &[FlipStep]) -> anyhow::Result<()> {
        let design = &self.fleet.design;
        let secrets = Secrets::load(&design.secrets_file)?
            .ok_or_else(|| anyhow!("no secrets file {}: deploy first", design.secrets_file.display()))?;
        let resuming = self.intent.is_some();
        let runner = Runner {
            fleet: self.fleet,
            before: design,
            after: self.after,
            // A flip installs only HAProxy and GLB configs, never TLS files:
            // it must not depend on the PKI (a CA near its expiry must not stop it).
            renderer: Renderer::for_design(design)?,
            secrets,
            force: self.force,
            resuming,
            demoted: std::sync::Mutex::new(None),
            caught_up: std::sync::Mutex::new(None),
            lease_taken: std::sync::Mutex::new(None),
            sync_judged: std::sync::Mutex::new(None),
        };
        if !resuming {
            for s in plan {
                if let FlipAction::WaitCaughtUp { new, .. } = &s.action {
                    runner.ensure_streaming(new).await?;
                }
            }
        }
        self.runner = Some(runner);
        let record = self.intent.get_or_insert_with(|| state::FlipIntent {
            verb: self.flip.verb().to_string(),
            cloud: self.name.to_string(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            done_step: 0,
        });
        state::record_flip(self.after, Some(record.clone()))
    }

    async fn run(&mut self, step: &FlipStep, _rec: &Recorder) -> anyhow::Result<()> {
        match &self.runner {
            Some(runner) => runner.step(&step.action).await,
            None => bail!("the flip was not prepared"),
        }
    }

    fn done(&mut self, number: usize) -> anyhow::Result<()> {
        let Some(record) = &mut self.intent else { return Ok(()) };
        record.done_step = number;
        state::record_flip(self.after, Some(record.clone()))
    }

    fn finished(&mut self, rec: &Recorder) -> anyhow::Result<()> {
        state::record_flip(self.after, None)?;
        rec.note("done");
        Ok(())
    }

    fn again(&self) -> Option<&'static str> {
        Some("finish the flip")
    }
}

struct Runner<'a> {
    fleet: &'a Fleet,
    before: &'a Design,
    after: &'a Design,
    renderer: Renderer,
    secrets: Secrets,
    force: bool,
    /// Finishing an interrupted run of this flip: steps it completed are
    /// recognised as done.
    resuming: bool,
    /// The master this run demoted (it took the change itself).
    demoted: std::sync::Mutex<Option<String>>,
    /// The new cloud's standby leader this run saw replay all of the old
    /// cloud's WAL: the member to promote.
    caught_up: std::sync::Mutex<Option<String>>,
    /// When this run took the site lease: the promotion's first renewal
    /// waits its turn.
    lease_taken: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// What this run concluded from the old primary cloud's replication
    /// record: the take of the lease holds it to that.
    sync_judged: std::sync::Mutex<Option<SyncJudged>>,
}

#[derive(Clone)]
struct SyncJudged {
    old: String,
    /// The new cloud's standby leader's position when it was judged.
    at: u64,
    verdict: site::SyncVerdict,
}

impl Runner<'_> {
    async fn step(&self, action: &FlipAction) -> anyhow::Result<()> {
        match action {
            FlipAction::SaveDesign => self.save_design(),
            FlipAction::GlbDrain => {
                let mut drained = self.after.clone();
                for c in &mut drained.clouds {
                    c.status = CloudStatus::Secondary;
                }
                self.write_glb(&drained).await
            }
            FlipAction::GlbPoint => self.write_glb(self.after).await,
            FlipAction::Haproxy => self.write_haproxy().await,
            FlipAction::HandOver { from, to } => super::site::hand_over(self.fleet, from, to).await,
            FlipAction::Demote { cloud, follow } => self.demote(cloud, follow).await,
            FlipAction::Follow { cloud, follow } => {
                let c = self.cloud(cloud)?;
                if !self.fleet.cloud_reachable(c) {
                    return self.pending(cloud, &format!("follow the primary cloud ({})", follow.join(",")));
                }
                let value = patroni::standby_cluster(self.after, follow);
                self.set_standby(c, Some(value), None).await.map(|_| ())
            }
            FlipAction::WaitCaughtUp { .. }
            | FlipAction::CheckNoDataLoss { .. }
            | FlipAction::CheckSynchronous { .. }
                if self.already_promoted(action).await =>
            {
                ui::progress::note(
                    "the interrupted run already promoted the new cloud: this check was passed then".to_string(),
                );
                Ok(())
            }
            FlipAction::WaitCaughtUp { new, old } => self.wait_caught_up(new, old).await,
            FlipAction::CheckNoDataLoss { new } => self.check_no_data_loss(new).await,
            FlipAction::CheckSynchronous { new, old } => self.check_synchronous(new, old).await,
            FlipAction::TakeLease { cloud, demoted } => {
                let judged = self.sync_judged.lock().expect("not poisoned").clone();
                let judge = |s: &site::SiteState| match &judged {
                    Some(j) => self.judge_again(cloud, j, s),
                    None => Ok(()),
                };
                let judge = judged.is_some().then_some(&judge as super::site::Judge<'_>);
                if super::site::take(self.fleet, cloud, *demoted, self.force, judge).await? {
                    *self.lease_taken.lock().expect("not poisoned") = Some(tokio::time::Instant::now());
                }
                Ok(())
            }
            FlipAction::Promote { cloud } => self.promote(cloud).await,
            FlipAction::Verify { cloud } => self.verify(cloud).await,
        }
    }

    /// When finishing an interrupted flip: has it promoted the new cloud already?
    async fn already_promoted(&self, action: &FlipAction) -> bool {
        let (FlipAction::WaitCaughtUp { new, .. }
        | FlipAction::CheckNoDataLoss { new }
        | FlipAction::CheckSynchronous { new, .. }) = action
        else {
            return false;
        };
        if !self.resuming {
            return false;
        }
        let Ok(cloud) = self.cloud(new) else { return false };
        self.fleet
            .cluster_view(cloud)
            .await
            .is_ok_and(|m| m.iter().any(|m| m.is_leader() && m.is_healthy()))
    }

    fn cloud(&self, name: &str) -> anyhow::Result<&Cloud> {
        self.after.cloud(name).ok_or_else(|| anyhow!("no cloud {name}"))
    }

    fn save_design(&self) -> anyhow::Result<()> {
        for c in &self.after.clouds {
            if self.before.cloud(&c.name).map(|b| b.status) != Some(c.status) {
                edit::set_cloud_status(&self.after.path, &c.name, c.status)?;
            }
        }
        Ok(())
    }

    fn pending(&self, cloud: &str, what: &str) -> anyhow::Result<()> {
        ui::progress::note(format!(
            "{cloud} is unreachable: recorded; `pgha deploy` applies it when {cloud} is back"
        ));
        state::record_pending(self.after, cloud, what)
    }

    async fn write_glb(&self, design: &Design) -> anyhow::Result<()> {
        for h in design.glb_hosts() {
            let Some(r) = self.fleet.remotes.get(&h.name) else {
                ui::progress::note(format!(
                    "GLB host {} is unreachable: it keeps its old target until the next deploy",
                    h.name
                ));
                continue;
            };
            let files = if design.site.is_some() && lacks_pem(r).await? {
                self.renderer.without_client_pem().glb_host(design, h, &self.secrets)?
            } else {
                self.renderer.glb_host(design, h, &self.secrets)?
            };
            let config = pick(&files, &glb_component::CONFIG);
            let reload = systemd::unit_script(Verb::ReloadOrRestart, "haproxy");
            if self.resuming {
                // The run that stopped may have written the file and failed
                // to reload it: the same content says nothing of what runs.
                r.install_file(config).await?;
                r.check("reloading the GLB", &reload).await?;
            } else {
                // With the site lease the GLB's config names every cloud: a
                // flip leaves it as it was, and a reload would only cost time.
                r.install_if_changed(config, &reload).await?;
            }
        }
        // An external GLB is repointed by its command.
        if let Some(crate::design::Glb {
            kind: crate::design::GlbKind::External { command },
            ..
        }) = &design.glb
        {
            glb_component::run_external(design, command, &self.secrets).await?;
        }
        Ok(())
    }

    async fn write_haproxy(&self) -> anyhow::Result<()> {
        let jobs = self
            .after
            .clouds
            .iter()
            .flat_map(|c| c.hosts.iter().map(move |h| (c, h)))
            .map(|(c, h)| async move {
                let Some(r) = self.fleet.remotes.get(&h.name) else {
                    return Ok(());
                };
                let files = self.renderer.db_host(self.after, c, h, None, &self.secrets)?;
                let config = pick(&files, &haproxy::CONFIG);
                // With the site lease every HAProxy lists every host, so a
                // flip leaves its config as it was: no reload on the write path.
                if let Some(was) = self.before.cloud(&c.name) {
                    let before = self.renderer.db_host(self.before, was, h, None, &self.secrets)?;
                    if pick(&before, &haproxy::CONFIG).content == config.content {
                        return Ok(());
                    }
                }
                // Without haproxy.pem, no metrics gateway either (it serves
                // that certificate).
                let fallback;
                let config = if lacks_pem(r).await? {
                    let mut d = self.after.clone();
                    d.exporter = None;
                    let cloud = d.cloud(&c.name).expect("the same clouds");
                    fallback = self
                        .renderer
                        .without_client_pem()
                        .db_host(&d, cloud, h, None, &self.secrets)?;
                    pick(&fallback, &haproxy::CONFIG)
                } else {
                    config
                };
                r.install_file(config).await?;
                r.check(
                    "reloading HAProxy",
                    &systemd::unit_script(Verb::ReloadOrRestart, "haproxy"),
                )
                .await
                .map(|_| ())
            });
        futures::future::try_join_all(jobs).await.map(|_| ())
    }

    /// Sets (or with `None` removes) the cloud's `standby_cluster` (as
    /// [`patroni::standby_cluster`] renders it); the
    /// member that took the change at once, when one did. `holder`: the
    /// member this run just saw holding the cloud's lock, asked without
    /// reading the cluster again (a member that lost the lock since still
    /// writes the change, which its leader then takes at its next cycle).
    async fn set_standby(
        &self,
        cloud: &Cloud,
        follow: Option<serde_json::Value>,
        holder: Option<String>,
    ) -> anyhow::Result<Option<String>> {
        let value = follow.as_ref().map_or_else(|| "null".into(), |v| v.to_string());
        let mut sets = vec![("standby_cluster".to_string(), value)];
        // The cloud promoted waits for no other cloud until its agent has
        // recorded a partner at the site. A demoted cloud keeps its
        // setting: dropped before Patroni demotes, it would confirm the
        // commits waiting for the partner while the site still says
        // synchronous (a standby ignores it).
        if follow.is_none() && self.after.site.as_ref().is_some_and(|s| s.synchronous) {
            sets.push(("postgresql.parameters.synchronous_standby_names".into(), "null".into()));
        }
        if follow.is_none() {
            let sync = self.after.platform.replication == crate::design::Replication::Synchronous;
            sets.push(("synchronous_mode".into(), sync.to_string()));
        }
        // Through the member holding the cloud's lock, the one that must act
        // (demote, promote, follow elsewhere), so it acts at once; through
        // etcd from any host when that member cannot be asked.
        let holder = match holder {
            Some(h) => Some(h),
            None => self.lock_holder(cloud).await,
        };
        if let Some(holder) = holder {
            let patched = match patroni::patch_config_script(self.after.governor.rest_port, &sets) {
                Ok(script) => {
                    self.fleet
                        .remote(&holder)?
                        .check("changing Patroni's dynamic configuration", &script)
                        .await
                }
                Err(e) => Err(e),
            };
            match patched {
                Ok(_) => return Ok(Some(holder)),
                Err(e) => ui::progress::note(format!(
                    "{holder}'s Patroni did not take the change ({e:#}): writing it to etcd"
                )),
            }
        }
        let script = patroni::edit_config_script(&sets);
        crate::fleet::on_first_answering(
            &self.fleet.remotes,
            cloud,
            "changing Patroni's dynamic configuration",
            &script,
        )
        .await
        .map(|_| None)
        .with_context(|| {
            format!(
                "{}: its etcd must have quorum to change the cluster's configuration",
                cloud.name
            )
        })
    }

    /// The reachable member holding the cloud's leader lock (its master or
    /// standby leader), if the cloud can tell.
    async fn lock_holder(&self, cloud: &Cloud) -> Option<String> {
        let members = self.fleet.cluster_view(cloud).await.ok()?;
        members
            .into_iter()
            .find(|m| (m.is_leader() || m.is_standby_leader()) && self.fleet.reachable(&m.name))
            .map(|m| m.name)
    }

    async fn demote(&self, name: &str, follow: &[String]) -> anyhow::Result<()> {
        let cloud = self.cloud(name)?;
        if !self.fleet.cloud_reachable(cloud) {
            return self.pending(name, "become a standby cluster");
        }
        match self
            .set_standby(cloud, Some(patroni::standby_cluster(self.after, follow)), None)
            .await
        {
            Ok(holder) => *self.demoted.lock().expect("not poisoned") = holder,
            Err(e) => {
                if self.before.cloud(name).is_some_and(|c| c.is_primary())
                    && self.after.primary_clouds().next().is_some()
                {
                    // A planned switchover must not go on with the old master writable.
                    return Err(e);
                }
                ui::progress::note(format!("{e:#}"));
                return self.pending(name, "become a standby cluster");
            }
        }
        // Fenced: no host of the cloud may still be read-write. A host whose
        // PostgreSQL cannot be asked is not taken for read-only: the wait
        // goes on, and ends in an error at its bound (the flip resumes from
        // here when run again). Every host at once: this is the write path.
        let hosts: Vec<&str> = cloud
            .hosts
            .iter()
            .filter(|h| self.fleet.reachable(&h.name))
            .map(|h| h.name.as_str())
            .collect();
        poll(Duration::from_secs(90), || async {
            let roles = futures::future::try_join_all(hosts.iter().map(|h| self.fleet.server_role(h))).await?;
            Ok(!roles.contains(&crate::fleet::ServerRole::Primary))
        })
        .await
        .with_context(|| format!("a host of {name} may still be read-write"))
    }

    /// The cloud's running standby leader.
    async fn standby_leader(&self, cloud: &Cloud) -> anyhow::Result<String> {
        // It may be reconnecting after a flip's first steps: give it a moment.
        // What Patroni last said goes into the error: a cause, not a timeout.
        let leader = |members: &[patroni::Member]| {
            members
                .iter()
                .find(|m| m.is_standby_leader() && m.is_healthy())
                .map(|m| m.name.clone())
        };
        let seen = poll_seen(
            Duration::from_secs(60),
            || self.fleet.cluster_view(cloud),
            |members| leader(members).is_some(),
        )
        .await;
        let members = seen.last.unwrap_or_default();
        seen.outcome
            .and_then(|()| leader(&members).context("no standby leader"))
            .with_context(|| {
                let states: Vec<String> = members
                    .iter()
                    .map(|m| format!("{} {} {}", m.name, m.role, m.state))
                    .collect();
                let states = if states.is_empty() {
                    "no answer from the cloud's Patroni".to_string()
                } else {
                    states.join(", ")
                };
                format!(
                    "{} has no running standby leader to promote (last seen: {states})",
                    cloud.name
                )
            })
    }

    /// The cloud's standby leader and its WAL position.
    async fn standby_leader_position(&self, cloud: &Cloud) -> anyhow::Result<(String, WalPos)> {
        let name = self.standby_leader(cloud).await?;
        let pos = wal::position(self.fleet, &name).await?;
        Ok((name, pos))
    }

    /// Before a planned flip fences anything: the new cloud's standby leader
    /// must stream from the primary cloud, or the WAL the demotion flushes
    /// never reaches it and the flip stops with no master anywhere. A
    /// receiver reconnects every second (`wal_retrieve_retry_interval`);
    /// one that does not is refused, never restarted here: the hung proxy
    /// sessions that once needed that (HAProxy retrying a refused
    /// connection) are gone with `retries 0`.
    async fn ensure_streaming(&self, new: &str) -> anyhow::Result<()> {
        let cloud = self.cloud(new)?;
        let leader = self.standby_leader(cloud).await?;
        let seen = poll_seen(
            Duration::from_secs(30),
            || self.fleet.psql(&leader, wal::RECEIVER_SQL),
            |status| status == "streaming",
        )
        .await;
        let status = seen.last.unwrap_or_else(|| "no answer".into());
        seen.outcome.with_context(|| {
            format!(
                "{leader}, {new}'s standby leader, does not stream from the primary cloud (its WAL receiver: \
                 {status}): nothing was changed (a flip now would wait for WAL it cannot receive); see its \
                 PostgreSQL log"
            )
        })
    }

    async fn wait_caught_up(&self, new: &str, old: &str) -> anyhow::Result<()> {
        // The demoted master keeps the cluster's lock as its standby leader; its
        // WAL is what must arrive. Other hosts of the old cloud may hold WAL of
        // an abandoned timeline (an ex-master not yet rewound): not theirs.
        let old_cloud = self.cloud(old)?;
        let demoted = self.demoted.lock().expect("not poisoned").clone();
        let gone = || format!("{old}'s demoted master does not answer");
        // The master this run demoted, asked itself once it runs in recovery:
        // it lets a session in only after replaying all of its own WAL, and
        // then says where that ends (stopped, pg_waldump gives where its last
        // record starts: short of the end). Patroni's view of it lags a
        // cycle. Taken only while it still holds its cloud's lock: a member
        // that took the lock meanwhile may have written more.
        let direct = match &demoted {
            Some(host) => {
                let end = poll_for(Duration::from_secs(30), || async {
                    let p = wal::position(self.fleet, host).await?;
                    Ok((p.mode == "recovery").then_some(p.lsn))
                })
                .await
                .with_context(gone)?;
                let holds = self.fleet.cluster_view(old_cloud).await.is_ok_and(|members| {
                    members
                        .iter()
                        .any(|m| m.name == *host && (m.is_leader() || m.is_standby_leader()))
                });
                holds.then(|| (host.clone(), end))
            }
            None => None,
        };
        // `source`: the host whose WAL ends at `old_end`.
        let (source, old_end) = match direct {
            Some(found) => found,
            None => poll_for(Duration::from_secs(30), || async {
                let (name, p) = self.standby_leader_position(old_cloud).await?;
                Ok((p.mode == "recovery").then_some((name, p.lsn)))
            })
            .await
            .with_context(gone)?,
        };
        let new_cloud = self.cloud(new)?;
        let caught_up = |(_, p): &(String, WalPos)| p.lsn >= old_end;
        let mut seen = poll_seen(ROUTE_GRACE, || self.standby_leader_position(new_cloud), caught_up).await;
        if seen.outcome.is_err() {
            // The route through HAProxy can end the session as the master's
            // checks fail, before the demotion's last WAL (its shutdown
            // checkpoint) went out, and no master is behind it since: seen
            // twice in twelve flips, 168 bytes short. `source` has that WAL
            // and serves it as a standby; Promote removes this setting.
            let replayed = seen.last.as_ref().map_or(0, |(_, p)| p.lsn);
            let address = self.after.find_host(&source).map(|(_, h)| h.address.clone());
            let address = address.ok_or_else(|| anyhow!("{source} is not in the design"))?;
            ui::progress::note(format!(
                "{new} replayed up to {} of {old}'s {}: streaming the rest from {source} directly",
                format_lsn(replayed),
                format_lsn(old_end)
            ));
            let value = patroni::standby_cluster_direct(self.after, &address);
            self.set_standby(new_cloud, Some(value), None).await?;
            seen = poll_seen(
                Duration::from_secs(60),
                || self.standby_leader_position(new_cloud),
                caught_up,
            )
            .await;
        }
        let (leader, replayed) = seen.last.map_or((None, 0), |(name, p)| (Some(name), p.lsn));
        seen.outcome.with_context(|| {
            format!(
                "{new} replayed up to {} but {old} wrote up to {}: not promoting; {old} stays fenced, the rest \
                 of its WAL on {source}\n  hint: with {source}'s PostgreSQL running, `pgha cloud make-primary \
                 {new}` again goes on from this step (nothing else may change the cluster until it finished)",
                format_lsn(replayed),
                format_lsn(old_end)
            )
        })?;
        *self.caught_up.lock().expect("not poisoned") = leader;
        Ok(())
    }

    async fn check_no_data_loss(&self, new: &str) -> anyhow::Result<()> {
        let new_cloud = self.cloud(new)?;
        let (leader, pos) = self.standby_leader_position(new_cloud).await?;
        let mut problems = Vec::new();
        // A read-write master elsewhere is never forced past: that would be
        // two masters, not a loss the DBA accepts.
        let mut masters = false;
        for c in self.after.clouds.iter().filter(|c| c.name != new) {
            for h in c.hosts.iter().filter(|h| self.fleet.reachable(&h.name)) {
                // A reachable host whose position cannot be read may hold
                // anything: that is a finding, never "nothing to lose".
                let p = match wal::position_if_any(self.fleet, &h.name).await {
                    Ok(Some(p)) => p,
                    Ok(None) => continue,
                    Err(e) => {
                        problems.push(format!(
                            "{}: its WAL position cannot be read, so commits past {leader}'s {} cannot be ruled out ({e:#})",
                            h.name,
                            format_lsn(pos.lsn)
                        ));
                        continue;
                    }
                };
                if p.mode == "primary" {
                    masters = true;
                    problems.push(format!(
                        "{} is a read-write master: make {} secondary first",
                        h.name, c.name
                    ));
                } else if ahead_of(&p, pos.lsn) {
                    match wal::commits_after(self.fleet, &h.name, p.timeline, pos.lsn).await {
                        Ok(c) if c.count() == 0 => {}
                        found => problems.push(format!(
                            "{} has WAL up to {} with {} past {leader}'s {}",
                            h.name,
                            format_lsn(p.lsn),
                            found.map_or("commits that cannot be read".to_string(), |c| c.to_string()),
                            format_lsn(pos.lsn)
                        )),
                    }
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        if self.force && !masters {
            ui::progress::note(format!(
                "--accept-data-loss: promoting anyway; these commits will be lost:\n  {}",
                problems.join("\n  ")
            ));
            return Ok(());
        }
        bail!("promoting {new} now would lose data:\n  {}\n  hint: start Patroni on those hosts so {new} can catch up, or pass --accept-data-loss to accept the loss", problems.join("\n  "))
    }

    /// With the site lease and the old primary cloud unreachable: the
    /// record its master's agent kept says whether `new` confirmed every
    /// commit (synchronous), or since which position it may lack some.
    /// The take of the lease judges the record again (it may have changed
    /// while the old lease ran out): see [`Self::judge_again`].
    async fn check_synchronous(&self, new: &str, old: &str) -> anyhow::Result<()> {
        let state = super::site::read(self.fleet, Some(new)).await?;
        let (_, pos) = self.standby_leader_position(self.cloud(new)?).await?;
        let verdict = site::sync_verdict(&state, old, new, pos.lsn);
        self.accept(new, old, &verdict)?;
        *self.sync_judged.lock().expect("not poisoned") = Some(SyncJudged {
            old: old.to_string(),
            at: pos.lsn,
            verdict,
        });
        Ok(())
    }

    /// The record as the take of the lease reads it, against the new
    /// cloud's position read before (it only grows): quiet when the
    /// verdict stands, judged afresh when the old primary cloud's agent
    /// rewrote it meanwhile.
    fn judge_again(&self, new: &str, judged: &SyncJudged, state: &site::SiteState) -> anyhow::Result<()> {
        let verdict = site::sync_verdict(state, &judged.old, new, judged.at);
        if verdict == judged.verdict {
            return Ok(());
        }
        ui::progress::note(format!(
            "{}'s record of its replication changed while {new} waited for the site lease",
            judged.old
        ));
        self.accept(new, &judged.old, &verdict)
    }

    fn accept(&self, new: &str, old: &str, verdict: &site::SyncVerdict) -> anyhow::Result<()> {
        use site::SyncVerdict;
        match verdict {
            SyncVerdict::NothingLost(why) | SyncVerdict::Tail(why) => {
                ui::progress::note(why.clone());
                Ok(())
            }
            SyncVerdict::Lost(why) if self.force => {
                ui::progress::note(format!("--accept-data-loss: promoting anyway: {why}"));
                Ok(())
            }
            SyncVerdict::Lost(why) => bail!(
                "promoting {new} now would lose acknowledged commits: {why}\n  hint: bring {old} back so {new} can catch up, \
                 or pass --accept-data-loss to accept the loss"
            ),
        }
    }

    async fn promote(&self, name: &str) -> anyhow::Result<()> {
        let cloud = self.cloud(name)?;
        // The site lease taken for this promotion is renewed from now until
        // it has a master: it must not lapse before the new master's agent
        // renews it. A lease that names another cloud stops the promotion.
        let every = Duration::from_secs(self.after.site.as_ref().map_or(10, |s| u64::from(s.ttl) / 3));
        // A lease this run took a moment ago is not renewed again before
        // its turn: that round trip would come before the promotion.
        let first = match *self.lease_taken.lock().expect("not poisoned") {
            Some(at) => at + every,
            None => tokio::time::Instant::now(),
        };
        let next = std::sync::Mutex::new(first);
        let renew = || async {
            let now = tokio::time::Instant::now();
            if now < *next.lock().expect("not poisoned") {
                return Ok(());
            }
            match super::site::renew(self.fleet, name).await {
                Ok(true) => *next.lock().expect("not poisoned") = now + every,
                Ok(false) => bail!(crate::wait::Stop(format!(
                    "the site lease no longer names {name}: not promoting it"
                ))),
                Err(e) => {
                    ui::progress::note(format!(
                        "could not renew the site lease during the promotion (trying again): {e:#}"
                    ));
                    *next.lock().expect("not poisoned") = now + Duration::from_secs(1);
                }
            }
            Ok(())
        };
        renew().await?;
        let leader = self.caught_up.lock().expect("not poisoned").clone();
        self.set_standby(cloud, None, leader).await?;
        poll(Duration::from_secs(90), || async {
            if self.fleet.master(cloud).await?.is_some() {
                return Ok(true);
            }
            renew().await?;
            Ok(false)
        })
        .await
        .with_context(|| format!("{name} did not get a master"))
    }

    async fn verify(&self, name: &str) -> anyhow::Result<()> {
        self.fleet.wait_serving(self.after, self.cloud(name)?).await
    }
}

/// Whether a host at `p` may hold WAL past `end` (where a running server's
/// replay ends). A stopped host's position is where its last record starts
/// (pg_waldump): equal to `end`, it may hold one record more.
fn ahead_of(p: &WalPos, end: u64) -> bool {
    p.lsn > end || (p.mode == "stopped" && p.lsn == end)
}

/// A host an older pgha deployed has no haproxy.pem yet (the next deploy
/// writes it; a flip writes no TLS file), and HAProxy refuses a config that
/// names a missing file: such a host's config goes without it (see
/// [`Renderer::without_client_pem`]).
async fn lacks_pem(r: &crate::remote::Remote) -> anyhow::Result<bool> {
    Ok(!r
        .check("reading HAProxy's certificate", &haproxy::has_pem_script())
        .await?
        .contains("haproxy_pem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> Design {
        crate::design::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-clouds.yaml"))
            .unwrap()
            .design
    }

    fn descriptions(steps: &[FlipStep]) -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{}. {}", s.number, s.description))
            .collect()
    }

    #[test]
    fn make_secondary_is_the_seeds_four_steps() {
        let steps = plan(&design(), "dc1", Flip::MakeSecondary, &|_| true, false, false).unwrap();
        assert_eq!(steps.len(), 4, "{:#?}", descriptions(&steps));
        assert!(matches!(steps[0].action, FlipAction::GlbDrain));
    }

    #[test]
    fn make_primary_after_make_secondary_is_the_seeds_seven_steps() {
        let mut d = design();
        d.clouds[0].status = CloudStatus::Secondary;
        let steps = plan(&d, "dc2", Flip::MakePrimary, &|_| true, false, false).unwrap();
        assert_eq!(steps.len(), 7, "{:#?}", descriptions(&steps));
        assert!(matches!(steps[0].action, FlipAction::CheckNoDataLoss { .. }));
        assert!(matches!(steps[1].action, FlipAction::Promote { .. }));
    }

    #[test]
    fn planned_switchover_fences_before_promoting() {
        let steps = plan(&design(), "dc2", Flip::MakePrimary, &|_| true, false, false).unwrap();
        let pos = |f: fn(&FlipAction) -> bool| steps.iter().position(|s| f(&s.action)).unwrap();
        let demote = pos(|a| matches!(a, FlipAction::Demote { .. }));
        let caught_up = pos(|a| matches!(a, FlipAction::WaitCaughtUp { .. }));
        let promote = pos(|a| matches!(a, FlipAction::Promote { .. }));
        assert!(pos(|a| matches!(a, FlipAction::GlbDrain)) < demote && demote < caught_up && caught_up < promote);
    }

    #[test]
    fn make_primary_with_the_old_primary_lost_fences_it_then_promotes() {
        let steps = plan(&design(), "dc2", Flip::MakePrimary, &|c| c.name != "dc1", false, false).unwrap();
        assert!(matches!(steps[0].action, FlipAction::GlbDrain));
        assert!(matches!(&steps[1].action, FlipAction::Demote { cloud, .. } if cloud == "dc1"));
        assert!(matches!(steps[2].action, FlipAction::CheckNoDataLoss { .. }));
        assert!(matches!(steps[3].action, FlipAction::Promote { .. }));
        assert!(!steps
            .iter()
            .any(|s| matches!(s.action, FlipAction::WaitCaughtUp { .. })));
    }

    #[test]
    fn flips_of_the_wrong_cloud_are_usage_errors() {
        assert!(plan(&design(), "dc2", Flip::MakeSecondary, &|_| true, false, false).is_err());
        assert!(plan(&design(), "dc1", Flip::MakePrimary, &|_| true, false, false).is_err());
        assert!(plan(&design(), "dc9", Flip::MakePrimary, &|_| true, false, false).is_err());
    }

    #[test]
    fn a_flip_interrupted_after_saving_the_design_finishes_with_routing_and_verify() {
        let mut d = design();
        d.clouds[0].status = CloudStatus::Secondary;
        d.clouds[1].status = CloudStatus::Primary;
        let steps = plan(&d, "dc2", Flip::MakePrimary, &|_| true, true, false).unwrap();
        let actions: Vec<&FlipAction> = steps.iter().map(|s| &s.action).collect();
        assert!(matches!(
            actions.as_slice(),
            [FlipAction::Haproxy, FlipAction::GlbPoint, FlipAction::Verify { .. }]
        ));
        let steps = plan(&d, "dc1", Flip::MakeSecondary, &|_| true, true, false).unwrap();
        assert!(matches!(steps[0].action, FlipAction::Haproxy));
        // Not resuming: the same request is a usage error, as before.
        assert!(plan(&d, "dc2", Flip::MakePrimary, &|_| true, false, false).is_err());
    }
}

#[cfg(test)]
#[path = "cloud_tests.rs"]
mod runner_tests;
