//! Executes step work on hosts and waits, with deadlines, for each step's
//! outcome to be real. Never prints: it sends events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::facts;
use super::work::{HostWork, StepWork, Work};
use crate::components::systemd::{self, Verb};
use crate::components::{backup, etcd, haproxy, patroni};
use crate::design::{Cloud, Design};
use crate::fleet::Fleet;
use crate::plan::Action;
use crate::remote::Remote;
use crate::render::{EtcdBootstrap, Renderer};
use crate::secrets::Secrets;
use crate::ui::progress::{emit, Event, Events, Outcome};
use crate::wait::{poll, poll_seen};

pub(super) struct Ctx<'a> {
    /// The connected hosts and the design for them as they run.
    pub fleet: &'a Fleet,
    pub renderer: &'a Renderer,
    pub secrets: &'a Secrets,
    pub events: Events,
    /// The deploy changes nothing: the facts it read under the cluster
    /// lock, which its verify steps decide from when they say all is well
    /// (else they check live), and by which they may read state where it
    /// says the same as a test that acts (see `verify_backup`).
    pub unchanged: Option<&'a BTreeMap<String, facts::HostFacts>>,
}

impl<'a> Ctx<'a> {
    fn design(&self) -> &'a Design {
        &self.fleet.design
    }

    fn remotes(&self) -> &'a BTreeMap<String, Remote> {
        &self.fleet.remotes
    }

    /// A line of a step's progress.
    fn say(&self, number: usize, message: impl Into<String>) {
        emit(
            &self.events,
            Event::StepMessage {
                number,
                message: message.into(),
            },
        );
    }

    fn remote(&self, host: &str) -> anyhow::Result<&Remote> {
        self.remotes().get(host).ok_or_else(|| anyhow!("{host}: not connected"))
    }
}

/// The result of one host in one step.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HostResult {
    pub step: usize,
    pub host: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
}

/// Runs a step: host work (in parallel, or one host at a time where a
/// running cluster must keep quorum), then the step's wait.
pub(super) async fn run_step(ctx: &Ctx<'_>, sw: &StepWork) -> (Vec<HostResult>, anyhow::Result<()>) {
    let step = &sw.step;
    emit(
        &ctx.events,
        Event::StepStarted {
            number: step.number,
            title: title(sw),
        },
    );
    let cloud = step.cloud.as_deref().and_then(|c| ctx.design().cloud(c));
    let mut results = Vec::new();
    let mut failure = None;
    let held = match cloud {
        Some(c) if sw.serial && sw.step.action == Action::ConfigureEtcd && restarts_etcd(sw) => {
            match ctx.fleet.cluster_state(c).await {
                Ok(view) => hold_patroni(ctx, c, &view, step.number, "its etcd members restart").await,
                Err(_) => None,
            }
        }
        _ => None,
    };
    if sw.serial {
        for (i, hw) in sw.hosts.iter().enumerate() {
            let r = run_host(ctx, sw, cloud, hw).await;
            let failed = matches!(r.outcome, Outcome::Failed(_));
            results.push(r);
            if failed {
                break;
            }
            if hw.changes() && sw.step.action == Action::ConfigureSite {
                if let Err(e) = wait_site(ctx, &step.hosts, step.number, None).await {
                    failure = Some(e);
                    break;
                }
            } else if hw.changes() {
                if let Some(c) = cloud {
                    // A host that joins later in this step still runs the
                    // package's own etcd (or none): it is no member yet.
                    let joining: Vec<&str> = sw.hosts[i + 1..]
                        .iter()
                        .filter(|h| h.items.iter().any(|w| matches!(w, Work::EtcdJoin)))
                        .map(|h| h.host.as_str())
                        .collect();
                    if let Err(e) = wait_etcd(ctx, c, step.number, &joining).await {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
    } else {
        results = futures::future::join_all(sw.hosts.iter().map(|hw| run_host(ctx, sw, cloud, hw))).await;
    }
    if let Some(c) = held {
        if let Err(e) = release_patroni(ctx, c, step.number).await {
            failure.get_or_insert(e);
        }
    }
    if let Some(r) = results.iter().find(|r| matches!(r.outcome, Outcome::Failed(_))) {
        let Outcome::Failed(why) = &r.outcome else {
            unreachable!()
        };
        let e = anyhow!("step {} ({}) failed on {}: {why}", step.number, title(sw), r.host);
        return (results, Err(e));
    }
    if let Some(e) = failure {
        return (results, Err(e.context(format!("step {} ({})", step.number, title(sw)))));
    }
    // An unchanged step needs no wait: the cloud's verify step checks it all.
    let waited = match (step.action, cloud) {
        (Action::ConfigureEtcd | Action::BootstrapLeader | Action::JoinReplicas, _) if !sw.changes() => Ok(()),
        (Action::ConfigureEtcd, Some(c)) => wait_etcd(ctx, c, step.number, &[]).await,
        (Action::BootstrapLeader, Some(c)) => {
            wait_members(ctx, c, &step.hosts, true, step.number, Duration::from_secs(300)).await
        }
        (Action::JoinReplicas, Some(c)) => {
            wait_members(ctx, c, &step.hosts, false, step.number, Duration::from_secs(600)).await
        }
        (Action::VerifyCloud, Some(c)) => verify_cloud(ctx, c, step.number).await,
        (Action::VerifyGlb, _) => verify_glb(ctx, &step.hosts, step.number).await,
        (Action::ConfigureSite, _) if sw.changes() => wait_site(ctx, &step.hosts, step.number, None).await,
        (Action::VerifyBackup, _) => verify_backup(ctx, &step.hosts, step.number).await,
        (Action::ConfigureExporter, Some(c)) if sw.changes() => wait_exporters(ctx, c, step.number).await,
        (Action::ConfigurePgbouncer, _) if sw.changes() => wait_pgbouncers(ctx, &step.hosts, step.number).await,
        (Action::ConfigureBackupMetrics, _) if sw.changes() => wait_backup_metrics(ctx, &step.hosts, step.number).await,
        (Action::VerifySite, _) if ctx.unchanged.is_some_and(|f| site_by_facts(ctx.design(), f)) => {
            let primary = ctx.design().primary_clouds().next().map_or("", |c| c.name.as_str());
            ctx.say(
                step.number,
                format!(
                    "most site members answer, {primary} holds the lease and every site agent is armed, {BY_FACTS}"
                ),
            );
            Ok(())
        }
        (Action::VerifySite, _) => {
            let primary = ctx.design().primary_clouds().next().map(|c| c.name.as_str());
            match wait_site(ctx, &step.hosts, step.number, Some(primary)).await {
                Ok(()) => wait_armed(ctx, step.number).await,
                e => e,
            }
        }
        _ => Ok(()),
    };
    let waited = waited.map_err(|e| e.context(format!("step {} ({})", step.number, title(sw))));
    (results, waited)
}

pub(super) fn title(sw: &StepWork) -> String {
    let s = &sw.step;
    let cloud = match &s.cloud {
        Some(c) => c.as_str(),
        None => crate::ui::site_label(s.component),
    };
    format!("{cloud} {}/{}", s.component.as_str(), s.action.as_str())
}

async fn run_host(ctx: &Ctx<'_>, sw: &StepWork, cloud: Option<&Cloud>, hw: &HostWork) -> HostResult {
    let number = sw.step.number;
    let start = Instant::now();
    let what = match sw.step.action {
        Action::VerifyCloud | Action::VerifyGlb | Action::VerifySite | Action::VerifyBackup => "verifying".to_string(),
        _ => hw.describe(),
    };
    emit(
        &ctx.events,
        Event::HostStarted {
            number,
            host: hw.host.clone(),
            what,
        },
    );
    let mut result = Ok(());
    for item in &hw.items {
        emit(
            &ctx.events,
            Event::HostMessage {
                number,
                host: hw.host.clone(),
                message: item.describe(),
            },
        );
        if let Err(e) = run_work(ctx, cloud, &hw.host, item, number).await {
            result = Err(e);
            break;
        }
    }
    let outcome = match result {
        Err(e) => Outcome::Failed(format!("{e:#}")),
        Ok(()) if hw.changes() => Outcome::Changed(hw.describe()),
        Ok(())
            if matches!(
                sw.step.action,
                Action::VerifyCloud | Action::VerifyGlb | Action::VerifySite | Action::VerifyBackup
            ) =>
        {
            Outcome::Verified
        }
        Ok(()) => Outcome::Unchanged,
    };
    let elapsed = start.elapsed();
    emit(
        &ctx.events,
        Event::HostDone {
            number,
            host: hw.host.clone(),
            outcome: outcome.clone(),
            elapsed,
        },
    );
    HostResult {
        step: number,
        host: hw.host.clone(),
        outcome,
        seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
    }
}

async fn run_work(ctx: &Ctx<'_>, cloud: Option<&Cloud>, host: &str, item: &Work, number: usize) -> anyhow::Result<()> {
    match item {
        Work::ApplyParameters(p) => apply_parameters(ctx, p, number).await,
        Work::RemoveHost(r) => remove_host(ctx, cloud.expect("removals belong to a cloud"), r, number).await,
        Work::MonitorRole => monitor_role(ctx, cloud.expect("the role is made in a cloud's step")).await,
        Work::ApplyObjects(planned) => {
            let cloud = cloud.expect("objects are made in a cloud's step");
            apply_objects(ctx, cloud, number, planned.is_some()).await
        }
        Work::SecureEtcd { access, site } => secure_etcd(ctx, host, access, *site, number).await,
        Work::SecureVip => secure_vip(ctx, host, cloud.expect("the VIP's steps belong to a cloud"), number).await,
        Work::RunGlbCommand(command) => crate::components::glb::run_external(ctx.design(), command, ctx.secrets).await,
        Work::PatchDynamicConfig(sets) => ctx
            .remote(host)?
            .check(
                "updating Patroni's dynamic configuration",
                &patroni::edit_config_script(sets),
            )
            .await
            .map(|_| ()),
        _ => host_item(ctx, cloud, host, item).await,
    }
}

/// Work on one host itself: packages, files, services.
async fn host_item(ctx: &Ctx<'_>, cloud: Option<&Cloud>, host: &str, item: &Work) -> anyhow::Result<()> {
    let d = ctx.design();
    let r = ctx.remote(host)?;
    match item {
        Work::InstallPackages(pkgs) => {
            r.check_within(
                "installing packages",
                &crate::components::packages::install_script(pkgs),
                crate::remote::LONG_DEADLINE,
            )
            .await?;
        }
        Work::DisableDistroCluster(unit) => {
            let script = systemd::disable_distro_cluster_script(unit, d.platform.postgres_version);
            r.check(&format!("stopping {unit}"), &script).await?;
        }
        Work::RequirePortsFree(ports) => {
            let live = facts::parse(&r.check("listing listeners", facts::LISTENERS_SCRIPT).await?);
            for (port, what) in ports {
                if let Some(proc) = live.listeners.get(port) {
                    bail!("port {port} ({what}) is already in use by `{proc}`: free it, then run deploy again");
                }
            }
        }
        Work::WriteFile(f) => r.install_file(f).await?,
        Work::FixFileMode(spec) => {
            r.check(
                &format!("setting owner and mode of {}", spec.path),
                &crate::remote::file_mode_script(spec),
            )
            .await?;
        }
        Work::EtcdJoin => etcd_join(ctx, cloud.expect("etcd work has a cloud"), host).await?,
        Work::Enable(s) => {
            r.check(&format!("enabling {s}"), &systemd::unit_script(Verb::Enable, s))
                .await?;
        }
        Work::Disable(s) => {
            r.check(&format!("disabling {s}"), &systemd::unit_script(Verb::Disable, s))
                .await?;
        }
        Work::Start(s) => {
            r.check(&format!("starting {s}"), &systemd::unit_script(Verb::Start, s))
                .await?;
        }
        Work::Restart(s) => {
            r.check(&format!("restarting {s}"), &systemd::unit_script(Verb::Restart, s))
                .await?;
        }
        Work::Reload(s) => {
            r.check(&format!("reloading {s}"), &systemd::unit_script(Verb::Reload, s))
                .await?;
        }
        Work::DaemonReload => {
            r.check("reloading systemd units", systemd::DAEMON_RELOAD).await?;
        }
        Work::Remove(spec) => {
            r.check(
                &format!("removing {}", spec.path),
                &systemd::remove_unit_script(spec.service, spec.path),
            )
            .await?;
        }
        Work::CreateStanza | Work::FirstBackup => repository_item(d, r, host, item).await?,
        Work::RunGlbCommand(_)
        | Work::PatchDynamicConfig(_)
        | Work::ApplyParameters(_)
        | Work::MonitorRole
        | Work::ApplyObjects(_)
        | Work::SecureEtcd { .. }
        | Work::SecureVip
        | Work::RemoveHost(_) => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

/// A repository host's stanza and first backup.
async fn repository_item(d: &Design, r: &Remote, host: &str, item: &Work) -> anyhow::Result<()> {
    let repo = d.repository_on(host).expect("backup work runs on a repository host");
    match item {
        Work::CreateStanza => {
            // A database host's archive-push may hold its archive lock a moment.
            let script = backup::stanza_create_script(d, repo);
            poll(Duration::from_secs(120), || async {
                r.check("creating the stanza", &script).await.map(|_| true)
            })
            .await?;
        }
        Work::FirstBackup => {
            // The master's archive_command fails for a repository until its
            // stanza exists, and PostgreSQL's archiver, after three failures,
            // waits for a wake or 60 s: pgBackRest's own archive-timeout. Seen
            // once in CI: the first backup into the second repository timed
            // out (082) waiting for its stop segment. A second run finds the
            // archive caught up.
            r.check_within_again_on(
                "taking a full backup",
                &backup::backup_script(d, repo, backup::Kind::Full, backup::Source::Standby),
                crate::remote::LONG_DEADLINE,
                backup::ARCHIVE_TIMEOUT_EXIT,
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// etcd's users and roles, then authentication on, from `host`'s member of
/// the cloud's etcd or (`site`) the site etcd. The password goes in a
/// private file; what etcdctl says back is scrubbed of it.
async fn secure_etcd(
    ctx: &Ctx<'_>,
    host: &str,
    access: &etcd::Access,
    site: bool,
    number: usize,
) -> anyhow::Result<()> {
    let d = ctx.design();
    let port = match (site, &d.site) {
        (true, Some(s)) => s.client_port,
        _ => d.etcd.client_port,
    };
    let password = ctx.secrets.etcd_password(site);
    let script = access.script(&format!("https://127.0.0.1:{port}"), &access.digest(password));
    let said = set_users(
        ctx,
        host,
        &script,
        Some(format!("{password}\n").as_bytes()),
        "etcd's users",
    )
    .await?;
    for user in said.lines().filter_map(|l| l.strip_prefix("removed ")) {
        ctx.say(
            number,
            format!("{host}: removed etcd user {user} (no longer in the design)"),
        );
    }
    Ok(())
}

/// Runs a script that sets etcd users on `host`; what it printed. A failure
/// says the end of its stderr, scrubbed of every secret.
async fn set_users(
    ctx: &Ctx<'_>,
    host: &str,
    script: &str,
    input: Option<&[u8]>,
    what: &str,
) -> anyhow::Result<String> {
    let out = ctx.remote(host)?.run_with_input(script, input).await?;
    if !out.success() {
        bail!(
            "setting {what} failed (exit {:?}): {}",
            out.status,
            ctx.secrets.scrub(&crate::shell::last_lines(&out.stderr, 8))
        );
    }
    Ok(out.stdout)
}

/// etcd's v2 access for the cloud's virtual IP, from `host`'s member (see
/// [`crate::components::vip::access_digest`]).
async fn secure_vip(ctx: &Ctx<'_>, host: &str, cloud: &Cloud, number: usize) -> anyhow::Result<()> {
    use crate::components::vip;
    let script = vip::access_script(cloud, ctx.design().etcd.client_port, &vip::access_digest(cloud));
    let said = set_users(ctx, host, &script, None, "etcd's v2 users").await?;
    for line in said.lines() {
        if let Some(user) = line.strip_prefix("added ") {
            ctx.say(
                number,
                format!("{host}: etcd v2 user {user} added (root by certificate)"),
            );
        } else if let Some(user) = line.strip_prefix("removed ") {
            ctx.say(
                number,
                format!("{host}: etcd v2 user {user} removed (no longer in the design)"),
            );
        }
    }
    Ok(())
}

/// The exporter's role, with the secrets file's password, on the cloud's master.
async fn monitor_role(ctx: &Ctx<'_>, cloud: &Cloud) -> anyhow::Result<()> {
    let d = ctx.design();
    let members = cluster_view(ctx, cloud).await?;
    let leader = members
        .iter()
        .find(|m| m.is_leader())
        .ok_or_else(|| anyhow!("{} has no master to create the exporter's role on", cloud.name))?;
    let sql = crate::components::exporter::role_sql(crate::secrets::MONITOR_USER, &ctx.secrets.monitor_password);
    // The SQL holds the password: it goes in a private file, and
    // what psql says back is scrubbed of it.
    let out = ctx
        .remote(&leader.name)?
        .run_with_input(
            &crate::components::exporter::role_script(d.platform.postgres_port),
            Some(sql.as_bytes()),
        )
        .await?;
    if !out.success() {
        bail!(
            "{}: creating the exporter's role failed (exit {:?}): {}",
            leader.name,
            out.status,
            ctx.secrets.scrub(&crate::shell::last_lines(&out.stderr, 8))
        );
    }
    Ok(())
}

/// The design's roles, databases and extensions on the cloud's master:
/// read there now (the plan's facts may be old), changed, read again.
async fn apply_objects(ctx: &Ctx<'_>, cloud: &Cloud, number: usize, planned: bool) -> anyhow::Result<()> {
    use crate::components::objects;
    let d = ctx.design();
    let members = cluster_view(ctx, cloud).await?;
    let leader = members.iter().find(|m| m.is_leader()).ok_or_else(|| {
        anyhow!(
            "{} has no master to create the design's roles and databases on",
            cloud.name
        )
    })?;
    let r = ctx.remote(&leader.name)?;
    let read = || async {
        let out = r
            .check("reading roles and databases", &objects::state_script(d))
            .await?;
        facts::parse(&out).objects.ok_or_else(|| {
            anyhow!(
                "{}: could not read its roles and databases (is it still the master?)",
                leader.name
            )
        })
    };
    let managed = d.managed_objects();
    let passwords = objects::passwords(&managed, ctx.secrets).map_err(|e| anyhow!(e))?;
    let diff = objects::diff(&managed, &read().await?, &passwords);
    if !diff.refused.is_empty() {
        bail!(
            "the master cannot hold what the design declares: {}",
            diff.refused.join("; ")
        );
    }
    // Said when planning if the plan read the master; else here.
    if !planned {
        for drift in &diff.drift {
            ctx.say(number, format!("drift: {drift}"));
        }
    }
    if diff.changes.is_empty() {
        return Ok(());
    }
    for c in &diff.changes {
        ctx.say(number, format!("{}: {}", leader.name, c.describe()));
    }
    let port = d.platform.postgres_port;
    let sql = objects::apply_sql(&managed, &diff.changes, &passwords)?;
    let mut runs = vec![(objects::apply_script(port), sql)];
    // After the roles: the function is granted to the pooler's.
    if diff.changes.contains(&objects::Change::PoolerLookup) {
        use crate::components::pgbouncer;
        runs.push((pgbouncer::lookup_apply_script(port), pgbouncer::lookup_sql()));
    }
    for (script, input) in runs {
        let out = r.run_with_input(&script, Some(input.as_bytes())).await?;
        if !out.success() {
            // psql may quote the statement: never a verifier in an error.
            let said: Vec<&str> = out.stderr.lines().filter(|l| !l.contains("SCRAM-SHA-256")).collect();
            bail!(
                "{}: changing roles and databases failed (exit {:?}): {}",
                leader.name,
                out.status,
                ctx.secrets.scrub(&crate::shell::last_lines(&said.join("\n"), 8))
            );
        }
    }
    let left = objects::diff(&managed, &read().await?, &passwords).changes;
    if !left.is_empty() {
        let left: Vec<String> = left.iter().map(objects::Change::describe).collect();
        bail!(
            "{}: after the changes these still differ: {} (a grant made by another role is revoked by that role)",
            leader.name,
            left.join(", ")
        );
    }
    Ok(())
}

/// Every exporter of the cloud runs and its connection logs in (the role
/// reaches a standby cloud by replication).
async fn wait_exporters(ctx: &Ctx<'_>, cloud: &Cloud, number: usize) -> anyhow::Result<()> {
    use crate::components::exporter;
    ctx.say(
        number,
        format!(
            "waiting for {}'s exporters to log in and its node exporters to answer",
            cloud.name
        ),
    );
    let hosts: Vec<String> = cloud.hosts.iter().map(|h| h.name.clone()).collect();
    let port = ctx.design().exporter.as_ref().map_or(0, |e| e.node_port);
    let script = format!("{}{}", exporter::running_login_script(), exporter::node_up_script(port));
    wait_hosts_ready(ctx, &hosts, &script, Duration::from_secs(60), |out| {
        out.contains("exporter_login") && out.contains("node_up")
    })
    .await
    .map_err(|behind| {
        anyhow!(
            "the metrics exporter on {behind} does not run or cannot log in, or its node exporter does not \
             answer (see `journalctl -u {} -u {}` there)",
            exporter::SERVICE,
            exporter::NODE_SERVICE
        )
    })
}

/// Every host's backup metrics were written once: their timer's first run
/// (5 s after its start) read each repository or gave up on it.
async fn wait_backup_metrics(ctx: &Ctx<'_>, hosts: &[String], number: usize) -> anyhow::Result<()> {
    use crate::components::backup;
    ctx.say(number, "waiting for each host's first backup metrics".to_string());
    let d = ctx.design();
    let b = d.backup.as_ref().expect("backup metrics come with backups");
    let limit = Duration::from_secs(30 + b.repositories.len() as u64 * (u64::from(b.io_timeout) + 60));
    wait_hosts_ready(ctx, hosts, &backup::metrics_written_script(), limit, |out| {
        out.contains("backup_metrics")
    })
    .await
    .map_err(|behind| {
        anyhow!(
            "the backup metrics on {behind} were not written (see `journalctl -u {}` there)",
            backup::METRICS_SERVICE
        )
    })
}

/// PgBouncer listens on every host of the step.
async fn wait_pgbouncers(ctx: &Ctx<'_>, hosts: &[String], number: usize) -> anyhow::Result<()> {
    use crate::components::pgbouncer;
    let port = ctx.design().pgbouncer.as_ref().map_or(0, |p| p.port);
    ctx.say(number, "waiting for PgBouncer to listen".to_string());
    wait_hosts_ready(
        ctx,
        hosts,
        &pgbouncer::listening_script(port),
        Duration::from_secs(60),
        |out| out.contains("pgbouncer_listening"),
    )
    .await
    .map_err(|behind| {
        anyhow!(
            "PgBouncer on {behind} does not listen on port {port} (see `journalctl -u {}` there)",
            pgbouncer::SERVICE
        )
    })
}

/// Polls until `script` prints what `ready` wants on every one of `hosts`
/// (a host that cannot run it is not ready); else the hosts still behind.
async fn wait_hosts_ready(
    ctx: &Ctx<'_>,
    hosts: &[String],
    script: &str,
    limit: Duration,
    ready: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let seen = poll_seen(
        limit,
        || async {
            let mut late = Vec::new();
            for h in hosts {
                let out = ctx.remote(h)?.run(script).await;
                if !out.is_ok_and(|o| o.success() && ready(&o.stdout)) {
                    late.push(h.clone());
                }
            }
            Ok(late)
        },
        Vec::is_empty,
    )
    .await;
    seen.outcome.map_err(|_| seen.last.unwrap_or_default().join(", "))
}

/// The step restarts etcd on a running member.
fn restarts_etcd(sw: &StepWork) -> bool {
    sw.hosts
        .iter()
        .flat_map(|hw| &hw.items)
        .any(|w| matches!(w, Work::Restart(s) if *s == etcd::CONFIG.service))
}

/// Pauses the cloud's Patroni while `what` (its etcd members restart, or
/// one is removed and shuts down), when it runs and is not paused already:
/// Patroni 4.0 can take an error from an etcd member that shuts down
/// mid-request for a lost leader lock and restart its master at once (seen
/// on the lab during `certs rotate`; Patroni issues #3118, #3407); paused,
/// it keeps its PostgreSQL as it is. `view` is the cloud as the caller
/// read it. Returns the cloud to resume: every cloud that may be paused
/// now (a pause whose command failed may have been applied, and a cloud
/// left paused never fails over). A cloud that reads as not paused after
/// a failed pause goes on as before.
async fn hold_patroni<'c>(
    ctx: &Ctx<'_>,
    cloud: &'c Cloud,
    view: &patroni::ClusterView,
    number: usize,
    what: &str,
) -> Option<&'c Cloud> {
    if view.paused || !view.members.iter().any(|m| m.is_leader() || m.is_standby_leader()) {
        return None;
    }
    let say = |message: String| ctx.say(number, message);
    say(format!("pausing {}'s Patroni while {what}", cloud.name));
    let Err(e) = ctx.fleet.set_paused(cloud, true).await else {
        return Some(cloud);
    };
    match ctx.fleet.cluster_state(cloud).await {
        Ok(view) if !view.paused => {
            say(format!("{} could not be paused ({e:#}); going on", cloud.name));
            None
        }
        Ok(_) => Some(cloud),
        Err(read) => {
            say(format!(
                "{} may be paused ({e:#}; its state does not read: {read:#}); resumed after the step",
                cloud.name
            ));
            Some(cloud)
        }
    }
}

/// Resumes what [`hold_patroni`] paused, until the cloud reads as resumed.
async fn release_patroni(ctx: &Ctx<'_>, cloud: &Cloud, number: usize) -> anyhow::Result<()> {
    ctx.say(number, format!("resuming {}'s Patroni", cloud.name));
    ctx.fleet.set_paused(cloud, false).await.with_context(|| {
        format!(
            "{} stays paused: `pgha resume --cloud {}` ends it",
            cloud.name, cloud.name
        )
    })
}

/// Takes a host the design dropped out of its cloud: the etcd member is
/// removed while a quorum of the remaining members is healthy, then the
/// host's services are stopped and disabled (when it still answers).
async fn remove_host(ctx: &Ctx<'_>, cloud: &Cloud, r: &super::work::Removal, number: usize) -> anyhow::Result<()> {
    let d = ctx.design();
    let port = d.etcd.client_port;
    let say = |message: String| ctx.say(number, message);
    // Patroni's view now (the facts may be minutes old): never the leader,
    // and never a host whose role cannot be told.
    let view = ctx.fleet.cluster_state(cloud).await.with_context(|| {
        format!(
            "cannot tell whether {} leads {} now: it was not removed; deploy again once Patroni answers",
            r.name, cloud.name
        )
    })?;
    if let Some(m) = view
        .members
        .iter()
        .find(|m| m.name == r.name && (m.is_leader() || m.is_standby_leader()))
    {
        bail!(
            "{} became the {} of {} since the plan was made: it stays; switch over, then deploy again",
            r.name,
            m.role,
            cloud.name
        );
    }
    let mut healthy = Vec::new();
    for h in &cloud.hosts {
        if let Some(remote) = ctx.remotes().get(&h.name) {
            if remote.check("etcd health", &etcd::health_script(port)).await.is_ok() {
                healthy.push(remote);
            }
        }
    }
    let members = cloud.hosts.len();
    if healthy.len() < members / 2 + 1 {
        bail!(
            "only {} of {}'s {members} remaining etcd members are healthy: removing {} now could leave it without \
             a quorum; repair them first (`pgha recover-node`)",
            healthy.len(),
            cloud.name,
            r.name
        );
    }
    // The removed member shuts itself down, maybe in the middle of a
    // request from the master's Patroni; its services stop only after the
    // resume (paused, stopping Patroni would leave its PostgreSQL running).
    let held = hold_patroni(
        ctx,
        cloud,
        &view,
        number,
        &format!("{}'s etcd member is removed", r.name),
    )
    .await;
    say(format!("removing {}'s etcd member", r.name));
    let removed = healthy[0]
        .check("removing the etcd member", &etcd::member_remove_script(port, &r.id))
        .await;
    if let Some(c) = held {
        release_patroni(ctx, c, number).await?;
    }
    removed?;
    retire(ctx, cloud, r, number).await
}

/// The removed host's services stopped and disabled (its data deleted only
/// when asked); a host that does not answer is left as it is, said so.
async fn retire(ctx: &Ctx<'_>, cloud: &Cloud, r: &super::work::Removal, number: usize) -> anyhow::Result<()> {
    let d = ctx.design();
    let say = |message: String| ctx.say(number, message);
    let Some(address) = &r.address else {
        say(format!(
            "{}: no address in its peer URL; its services were not stopped",
            r.name
        ));
        return Ok(());
    };
    let host = crate::design::Host {
        name: r.name.clone(),
        address: address.clone(),
        ssh: cloud.hosts[0].ssh.clone(),
    };
    // The GLB first stops sending it new sessions: stopped under a session
    // the GLB was just connecting, its HAProxy left that client waiting
    // with no timer (seen in CI: a 10 s write gap; HAProxy shuts a
    // session down as the check marks the server down).
    let drained = drain_from_glb(ctx, &r.name, "drain", number).await;
    match Remote::connect(&host, Duration::from_secs(10)).await {
        Ok(remote) => {
            say(format!("stopping {}'s services", r.name));
            let units = [
                patroni::CONFIG.service,
                crate::components::site::AGENT_SERVICE,
                crate::components::site::FENCE_SERVICE,
                crate::components::site::ETCD_SERVICE,
                etcd::CONFIG.service,
                haproxy::CONFIG.service,
                crate::components::exporter::SERVICE,
                crate::components::exporter::NODE_SERVICE,
                crate::components::exporter::CERT_METRICS_TIMER_UNIT,
                backup::METRICS_TIMER_UNIT,
                crate::components::pgbouncer::SERVICE,
                // Its stop takes the cloud's virtual IP off the host.
                crate::components::vip::MANAGER_SERVICE,
                crate::components::vip::LEADER_SERVICE,
            ];
            let done = remote
                .check(
                    "stopping its services",
                    &etcd::retire_script(
                        &d.platform.name,
                        &units,
                        r.delete_data.then_some(d.platform.data_dir.as_str()),
                    ),
                )
                .await;
            remote.close().await;
            if done.is_err() && drained {
                // It may serve again: the GLB sends it sessions again.
                drain_from_glb(ctx, &r.name, "ready", number).await;
            }
            done.map(|_| ())
        }
        Err(e) => {
            say(format!(
                "{} does not answer ({e}): its etcd member is removed; stop its services when it is back",
                r.name
            ));
            Ok(())
        }
    }
}

/// Sets `host`'s server on every GLB host pgha runs to `state` (`drain`
/// or `ready`); true when some GLB set it. A GLB that cannot be asked is
/// said and passed: the removal goes on as it would without one. The GLB's
/// reload later in the deploy drops the server; its verification sets any
/// server left drained ready again.
async fn drain_from_glb(ctx: &Ctx<'_>, host: &str, state: &str, number: usize) -> bool {
    let d = ctx.design();
    let Some(crate::design::Glb {
        kind: crate::design::GlbKind::Haproxy { hosts },
        ..
    }) = &d.glb
    else {
        return false;
    };
    // The read-only proxy too: both route to the host's HAProxy.
    let proxies = haproxy::glb_proxies(d);
    let mut set = false;
    for g in hosts {
        // A deploy of one cloud has not connected the GLB: it is asked all the same.
        let connected = ctx.remote(&g.name).ok();
        let own = match connected {
            Some(_) => None,
            None => Remote::connect(g, Duration::from_secs(10)).await.ok(),
        };
        let said = match connected.or(own.as_ref()) {
            Some(remote) => remote
                .check(
                    "setting a GLB server's state",
                    &haproxy::server_state_script(&proxies, host, state),
                )
                .await
                .map_err(|e| format!("{e:#}")),
            None => Err("it does not answer over SSH".to_string()),
        };
        if let Some(r) = own {
            r.close().await;
        }
        let said = said.and_then(|out| {
            let first = out.lines().next().unwrap_or_default().to_string();
            let left = out
                .lines()
                .find_map(|l| l.strip_prefix("sessions "))
                .map(str::to_string);
            match first.as_str() {
                "done" => Ok(Some(left)),
                f if f.starts_with("No such server") => Ok(None),
                f => Err(format!("HAProxy answered {f:?}")),
            }
        });
        match said {
            // Not listed there: nothing routes to it.
            Ok(None) => {}
            Ok(Some(left)) => {
                set = true;
                ctx.say(
                    number,
                    match (state, left.as_deref()) {
                        ("drain", Some(n)) if n != "0" => {
                            format!("{}: no new sessions to {host}; {n} still open end with it", g.name)
                        }
                        ("drain", _) => format!("{}: no new sessions to {host}", g.name),
                        _ => format!("{}: sessions to {host} again", g.name),
                    },
                );
            }
            Err(e) => ctx.say(number, format!("{}: could not set {host} to {state}: {e}", g.name)),
        }
    }
    set
}

/// One cloud's parameter change: into the dynamic configuration, seen
/// written and loaded by every running member, then the restarts in the
/// order the work says, each waited for.
async fn apply_parameters(ctx: &Ctx<'_>, p: &super::work::ParamWork, number: usize) -> anyhow::Result<()> {
    let d = ctx.design();
    let cloud = d
        .cloud(&p.cloud)
        .ok_or_else(|| anyhow!("no cloud {} in the design", p.cloud))?;
    let say = |message: String| ctx.say(number, message);
    crate::fleet::on_first_answering(
        ctx.remotes(),
        cloud,
        "updating Patroni's dynamic configuration",
        &patroni::edit_config_script(&patroni::parameter_sets(&p.sets)),
    )
    .await?;
    let running: Vec<String> = cluster_view(ctx, cloud)
        .await?
        .into_iter()
        .filter(patroni::Member::is_healthy)
        .map(|m| m.name)
        .collect();
    say(format!("waiting for {} to load the new settings", running.join(", ")));
    let check = crate::fleet::psql_script(d.platform.postgres_port, &patroni::parameters_applied_sql(&p.sets));
    // Patroni applies the dynamic configuration on its next loop.
    let limit = Duration::from_secs(u64::from(d.governor.loop_wait) * 3 + 60);
    wait_hosts_ready(ctx, &running, &check, limit, |out| out.trim() == "t")
        .await
        .map_err(|behind| {
            anyhow!(
                "{behind} did not load the new settings: PostgreSQL there refused a value, or Patroni dropped it (see \
                 `journalctl -u patroni` there)"
            )
        })?;
    if !p.restart {
        return Ok(());
    }
    let members = cluster_view(ctx, cloud).await?;
    let is_lead = |m: &patroni::Member| m.is_leader() || m.is_standby_leader();
    let leader = members.iter().find(|m| is_lead(m)).map(|m| m.name.clone());
    let replicas: Vec<String> = members
        .iter()
        .filter(|m| !is_lead(m) && m.is_healthy())
        .map(|m| m.name.clone())
        .collect();
    let restart = |name: String| async move {
        say(format!("restarting PostgreSQL on {name}"));
        ctx.remote(&name)?
            .check(
                "restarting PostgreSQL",
                &patroni::restart_script(&d.platform.name, &name),
            )
            .await?;
        wait_members(
            ctx,
            cloud,
            std::slice::from_ref(&name),
            false,
            number,
            Duration::from_secs(120),
        )
        .await
    };
    if p.leader_first {
        if let Some(l) = &leader {
            restart(l.clone()).await?;
        }
    }
    for r in &replicas {
        restart(r.clone()).await?;
    }
    if p.leader_first {
        return Ok(());
    }
    let Some(leader) = leader else { return Ok(()) };
    match replicas.first().filter(|_| p.switchover) {
        Some(candidate) => {
            say(format!("switching over from {leader} to {candidate}"));
            crate::fleet::on_first_answering(
                ctx.remotes(),
                cloud,
                "switching over",
                &patroni::switchover_script(d.governor.rest_port, &leader, candidate),
            )
            .await?;
            // The old master comes back as a replica, restarted with the new settings.
            poll(Duration::from_secs(120), || async {
                let members = cluster_view(ctx, cloud).await?;
                Ok(members.iter().any(|m| &m.name == candidate && m.is_leader())
                    && members
                        .iter()
                        .any(|m| m.name == leader && !m.is_leader() && m.is_healthy()))
            })
            .await
            .with_context(|| format!("the switchover from {leader} to {candidate} did not complete"))
        }
        None => restart(leader).await,
    }
}

/// Grows a running etcd cluster by one member: `member add` on a member
/// that is in it, start the new one with state `existing`, wait until it is
/// healthy, then store the canonical config (no restart: etcd ignores the
/// initial-cluster settings once it has data).
async fn etcd_join(ctx: &Ctx<'_>, cloud: &Cloud, host: &str) -> anyhow::Result<()> {
    let d = ctx.design();
    let port = d.etcd.client_port;
    let me = cloud.hosts.iter().find(|h| h.name == host).expect("host of this cloud");
    let peer = etcd::peer_url(&me.address, d.etcd.peer_port);
    let mut member = None;
    for h in cloud.hosts.iter().filter(|h| h.name != host) {
        if let Some(r) = ctx.remotes().get(&h.name) {
            if let Ok(out) = r.check("listing etcd members", &etcd::member_list_script(port)).await {
                member = Some((r, out));
                break;
            }
        }
    }
    let (existing, list) = member.ok_or_else(|| anyhow!("no running etcd member in {} to join", cloud.name))?;
    if !etcd::parse_members(&list).iter().any(|(_, p)| *p == peer) {
        // etcd refuses while a member restarted in the last seconds ("unhealthy cluster").
        let add = etcd::member_add_script(port, host, &peer);
        poll(Duration::from_secs(60), || async {
            existing.check("adding the etcd member", &add).await.map(|_| true)
        })
        .await?;
    }
    let list = existing
        .check("listing etcd members", &etcd::member_list_script(port))
        .await?;
    let members: Vec<crate::design::Host> = etcd::parse_members(&list)
        .into_iter()
        .filter_map(|(_, p)| {
            let h = cloud
                .hosts
                .iter()
                .find(|h| etcd::peer_url(&h.address, d.etcd.peer_port) == p)?;
            Some(h.clone())
        })
        .collect();
    let boot = EtcdBootstrap {
        members,
        state: "existing",
    };
    let files = ctx.renderer.db_host(d, cloud, me, Some(&boot), ctx.secrets)?;
    let r = ctx.remote(host)?;
    r.install_file(crate::render::pick(&files, &etcd::CONFIG)).await?;
    r.check("starting etcd", &systemd::unit_script(Verb::Restart, "etcd"))
        .await?;
    poll(Duration::from_secs(60), || async {
        r.check("etcd health", &etcd::health_script(port)).await.map(|_| true)
    })
    .await
    .with_context(|| format!("{host}: the new etcd member did not become healthy"))?;
    let canonical = ctx.renderer.db_host(d, cloud, me, None, ctx.secrets)?;
    r.install_file(crate::render::pick(&canonical, &etcd::CONFIG)).await
}

/// Waits until every member of the cloud's etcd but `joining` is healthy.
async fn wait_etcd(ctx: &Ctx<'_>, cloud: &Cloud, number: usize, joining: &[&str]) -> anyhow::Result<()> {
    ctx.say(number, format!("waiting for etcd quorum in {}", cloud.name));
    let script = etcd::health_script(ctx.design().etcd.client_port);
    let waits = cloud
        .hosts
        .iter()
        .filter(|h| !joining.contains(&h.name.as_str()))
        .map(|h| async {
            let r = ctx.remote(&h.name)?;
            poll(Duration::from_secs(90), || async {
                r.check("etcd health", &script).await.map(|_| true)
            })
            .await
            .with_context(|| format!("{}: etcd is not healthy", h.name))
        });
    futures::future::try_join_all(waits).await.map(|_| ())
}

/// Waits until most site members are healthy, as seen from the first of
/// `hosts` that answers, and (`holder`: `Some(cloud)`) that cloud holds the
/// lease (`Some(None)`: the design names no primary cloud, nobody needs to).
async fn wait_site(ctx: &Ctx<'_>, hosts: &[String], number: usize, holder: Option<Option<&str>>) -> anyhow::Result<()> {
    let d = ctx.design();
    ctx.say(
        number,
        match holder {
            Some(Some(c)) => format!("waiting until {c} holds the site lease"),
            _ => "waiting for the site members' quorum".to_string(),
        },
    );
    let script = crate::components::site::read_script(d);
    let members = d.site_members().len();
    poll(Duration::from_secs(90), || async {
        for host in hosts {
            let Ok(r) = ctx.remote(host) else { continue };
            let Ok(out) = r.check("reading the site lease", &script).await else {
                continue;
            };
            let state = crate::components::site::parse_read(&out);
            let healthy = state.members.iter().filter(|(_, ok)| *ok).count();
            let held = match holder {
                Some(Some(c)) => state.holder.as_deref() == Some(c),
                _ => true,
            };
            return Ok(healthy * 2 > members && held);
        }
        Ok(false)
    })
    .await
    .context("the site members have no healthy majority, or the lease is not held as the design says")
}

/// Every database host's site agent has reached the site once, so silence
/// from it now fences that host's master: deploy does not call a site done
/// before (a host that cannot tell counts as not armed).
async fn wait_armed(ctx: &Ctx<'_>, number: usize) -> anyhow::Result<()> {
    ctx.say(number, "waiting until every database host's site fences are armed");
    let hosts: Vec<String> = ctx
        .design()
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .filter(|h| ctx.remotes().contains_key(&h.name))
        .map(|h| h.name.clone())
        .collect();
    wait_hosts_ready(
        ctx,
        &hosts,
        &crate::components::site::armed_script(),
        Duration::from_secs(90),
        |out| out.trim() == "armed",
    )
    .await
    .map_err(|behind| {
        anyhow!("the site agent of {behind} has not reached the site: its fences are not armed (see `pgha status`)")
    })
}

/// The cloud's Patroni cluster as one of its members sees it.
pub(super) async fn cluster_view(ctx: &Ctx<'_>, cloud: &Cloud) -> anyhow::Result<Vec<patroni::Member>> {
    ctx.fleet.cluster_view(cloud).await
}

/// Waits for the cloud's leader (`leader`) or for `hosts` to be healthy members.
async fn wait_members(
    ctx: &Ctx<'_>,
    cloud: &Cloud,
    hosts: &[String],
    leader: bool,
    number: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let want = if cloud.is_primary() {
        "a leader"
    } else {
        "a standby leader"
    };
    let message = if leader {
        format!("waiting for {want} in {}", cloud.name)
    } else {
        format!("waiting for {} to stream", hosts.join(", "))
    };
    ctx.say(number, message);
    let seen = poll_seen(
        limit,
        || cluster_view(ctx, cloud),
        |members| {
            if leader {
                members
                    .iter()
                    .any(|m| (m.is_leader() || m.is_standby_leader()) && m.is_healthy())
            } else {
                hosts
                    .iter()
                    .all(|h| members.iter().any(|m| &m.name == h && m.is_healthy()))
            }
        },
    )
    .await;
    seen.outcome.with_context(|| {
        format!(
            "{} never reached the wanted state; members: {}",
            cloud.name,
            seen.last.as_deref().map(describe_members).unwrap_or_default()
        )
    })
}

pub(super) fn describe_members(members: &[patroni::Member]) -> String {
    let parts: Vec<String> = members
        .iter()
        .map(|m| format!("{} {} {}", m.name, m.role, m.state))
        .collect();
    parts.join(", ")
}

/// What a verify step that decided from the facts says.
const BY_FACTS: &str = "as the facts read under the cluster lock show";

/// The cloud is what the design says: one (standby) leader, everyone else
/// streaming, pending restarts done (replicas first), and HAProxy on every
/// host routing to the one read-write master.
async fn verify_cloud(ctx: &Ctx<'_>, cloud: &Cloud, number: usize) -> anyhow::Result<()> {
    let d = ctx.design();
    if ctx.unchanged.is_some_and(|f| cloud_by_facts(d, cloud, f).is_ok()) {
        ctx.say(number, format!("{} is healthy, {BY_FACTS}", cloud.name));
        return Ok(());
    }
    let members = cluster_view(ctx, cloud).await?;
    let mut pending: Vec<&patroni::Member> = members.iter().filter(|m| m.pending_restart == Some(true)).collect();
    pending.sort_by_key(|m| m.is_leader() || m.is_standby_leader());
    for m in pending {
        ctx.say(
            number,
            format!("restarting PostgreSQL on {} (a parameter needs it)", m.name),
        );
        ctx.remote(&m.name)?
            .check(
                "restarting PostgreSQL",
                &patroni::restart_pending_script(&d.platform.name, &m.name),
            )
            .await?;
    }
    ctx.say(number, format!("verifying {}", cloud.name));
    // A try that finds the cloud not yet healthy says why as its error: the
    // last one is what the failure reports.
    let result = poll(Duration::from_secs(180), || async {
        let members = cluster_view(ctx, cloud).await?;
        let leader = members_health(cloud, &members)?;
        let stats = futures::future::try_join_all(cloud.hosts.iter().map(|h| async {
            let r = ctx.remote(&h.name)?;
            r.check(
                "reading HAProxy stats",
                &haproxy::stats_script(&d.haproxy.stats_address, d.haproxy.stats_port),
            )
            .await
        }))
        .await?;
        let stats: Vec<(&str, &str)> = cloud
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .zip(stats.iter().map(String::as_str))
            .collect();
        routes_health(d, leader.as_deref(), &stats)?;
        Ok(true)
    })
    .await;
    result.with_context(|| format!("{} is not healthy", cloud.name))
}

/// The cloud's members as the design wants them: one leader in a primary
/// cloud (its name returned), one standby leader and no leader in a
/// secondary one, every host a healthy member.
fn members_health(cloud: &Cloud, members: &[patroni::Member]) -> anyhow::Result<Option<String>> {
    let leaders: Vec<&patroni::Member> = members.iter().filter(|m| m.is_leader()).collect();
    let standby_leaders = members.iter().filter(|m| m.is_standby_leader()).count();
    if !cloud.is_primary() && !leaders.is_empty() {
        bail!(
            "secondary cloud {} has a read-write leader: {}",
            cloud.name,
            leaders[0].name
        );
    }
    let led = if cloud.is_primary() {
        leaders.len() == 1
    } else {
        standby_leaders == 1
    };
    let all = cloud
        .hosts
        .iter()
        .all(|h| members.iter().any(|m| m.name == h.name && m.is_healthy()));
    if !(led && all) {
        bail!("members: {}", describe_members(members));
    }
    Ok(cloud.is_primary().then(|| leaders[0].name.clone()))
}

/// HAProxy on each host (`(host, its statistics CSV)`) routes to the
/// primary cloud's master only: `leader` in a primary cloud, one host of
/// a primary cloud in a secondary one.
fn routes_health(d: &Design, leader: Option<&str>, stats: &[(&str, &str)]) -> anyhow::Result<()> {
    let primary_names: Vec<&str> = d
        .primary_clouds()
        .flat_map(|c| c.hosts.iter().map(|h| h.name.as_str()))
        .collect();
    for (h, csv) in stats {
        let up: Vec<String> = haproxy::up_servers(csv, &haproxy::primary_proxy(&d.platform.name));
        let ok = match leader {
            Some(l) => up == [l],
            None => up.len() == 1 && primary_names.contains(&up[0].as_str()),
        };
        if !ok {
            bail!("HAProxy on {h} routes to {up:?}");
        }
    }
    Ok(())
}

/// A cloud verified by the facts of a deploy that changes nothing: the
/// members as one of them listed them and each host's HAProxy statistics,
/// read under the cluster lock moments before. Any doubt (a host silent,
/// a restart pending, a check failing) is an error: the live checks decide.
fn cloud_by_facts(d: &Design, cloud: &Cloud, facts: &BTreeMap<String, facts::HostFacts>) -> anyhow::Result<()> {
    let members = facts::cloud_members(cloud, facts).context("no member listed the cloud")?;
    if members.iter().any(|m| m.pending_restart == Some(true)) {
        bail!("a restart is pending");
    }
    let leader = members_health(cloud, members)?;
    let stats = cloud
        .hosts
        .iter()
        .map(|h| {
            let csv = facts.get(&h.name).and_then(|f| f.stats.as_deref());
            Ok((
                h.name.as_str(),
                csv.with_context(|| format!("{}: no HAProxy statistics", h.name))?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    routes_health(d, leader.as_deref(), &stats)
}

/// The site as a deploy that changes nothing sees it in its facts: most
/// site members answered a (linearizable) read, the one that answered
/// first names the primary cloud as the lease's holder, and every database
/// host's agent is armed.
fn site_by_facts(d: &Design, facts: &BTreeMap<String, facts::HostFacts>) -> bool {
    let Some(primary) = d.primary_clouds().next() else {
        return false;
    };
    let members = d.site_members();
    let answered: Vec<&facts::HostFacts> = members
        .iter()
        .filter_map(|(_, h)| facts.get(&h.name))
        .filter(|f| f.site_access.is_some() && f.site_primary.is_some())
        .collect();
    let holder = answered.first().and_then(|f| {
        let v: serde_json::Value = serde_json::from_str(f.site_primary.as_deref()?).ok()?;
        v["cloud"].as_str().map(str::to_string)
    });
    let armed = d
        .clouds
        .iter()
        .flat_map(|c| &c.hosts)
        .all(|h| facts.get(&h.name).is_some_and(|f| f.site_armed));
    answered.len() * 2 > members.len() && holder.as_deref() == Some(primary.name.as_str()) && armed
}

/// The master's archiver as the facts of a deploy that changes nothing
/// show it: its last archived segment when it works (see `archiving_well`).
fn archiving_by_facts(d: &Design, facts: &BTreeMap<String, facts::HostFacts>) -> Option<String> {
    let members = facts::cloud_members(d.primary_clouds().next()?, facts)?;
    let leader = members.iter().find(|m| m.is_leader() && m.is_healthy())?;
    archived(&leader.name, facts.get(&leader.name)?.archiver.as_deref()?)
}

/// The last segment the master `leader` archived, when its archiver's row
/// (see [`backup::ARCHIVER_SQL`]) shows no failure since.
fn archived(leader: &str, row: &str) -> Option<String> {
    backup::parse_archiver(leader, row)
        .filter(|a| !a.failing)
        .and_then(|a| a.last_archived_wal)
}

/// `pgbackrest check` from every repository: the master's WAL reaches it.
/// A deploy that changes nothing asks the master's archiver first: it has
/// pushed every segment to every repository (pgBackRest fails a segment's
/// push while one repository misses it) when its last success came after
/// its last failure, the same answer without a WAL switch per repository.
/// Failing, never archived, or no answer: the checks run.
async fn verify_backup(ctx: &Ctx<'_>, hosts: &[String], number: usize) -> anyhow::Result<()> {
    if let Some(facts) = ctx.unchanged {
        let wal = match archiving_by_facts(ctx.design(), facts) {
            Some(wal) => Some(wal),
            None => archiving_well(ctx).await,
        };
        if let Some(wal) = wal {
            ctx.say(
                number,
                format!("the master's archiver pushed {wal} with no failure since: the archive is reached"),
            );
            return Ok(());
        }
    }
    ctx.say(number, "checking that the WAL archive reaches every repository");
    // One at a time, like `pgha backup check`: concurrent checks race on
    // the master's WAL switch.
    for h in hosts {
        ctx.remote(h)?
            .check(
                "checking the archive (pgbackrest check)",
                &backup::check_script(ctx.design()),
            )
            .await
            .with_context(|| format!("{h}: the WAL archive does not reach this repository"))?;
    }
    Ok(())
}

/// The last segment the master archived, when archiving works now.
async fn archiving_well(ctx: &Ctx<'_>) -> Option<String> {
    let cloud = ctx.design().primary_clouds().next()?;
    let members = ctx.fleet.cluster_view(cloud).await.ok()?;
    let leader = members.iter().find(|m| m.is_leader() && m.is_healthy())?;
    // One round trip: a leader not (yet) writable prints no row, and no row is no answer.
    let sql = format!("{} WHERE NOT pg_is_in_recovery()", backup::ARCHIVER_SQL);
    let row = ctx.fleet.psql(&leader.name, &sql).await.ok()?;
    archived(&leader.name, &row)
}

async fn verify_glb(ctx: &Ctx<'_>, hosts: &[String], number: usize) -> anyhow::Result<()> {
    let d = ctx.design();
    let Some(glb) = &d.glb else { return Ok(()) };
    let proxies = haproxy::glb_proxies(d);
    let by_facts = ctx.unchanged.is_some_and(|f| {
        hosts.iter().all(|h| {
            f.get(h).and_then(|f| f.stats.as_deref()).is_some_and(|csv| {
                glb_serves(d, csv) && proxies.iter().all(|p| haproxy::drained_servers(csv, p).is_empty())
            })
        })
    });
    if by_facts {
        ctx.say(
            number,
            format!("{}:{} reaches the primary cloud, {BY_FACTS}", glb.fqdn, glb.port),
        );
        return Ok(());
    }
    ctx.say(
        number,
        format!("waiting until {}:{} reaches the primary cloud", glb.fqdn, glb.port),
    );
    for host in hosts {
        let r = ctx.remote(host)?;
        poll(Duration::from_secs(60), || async {
            let csv = r
                .check(
                    "reading GLB stats",
                    &haproxy::stats_script(&glb.stats_address, glb.stats_port),
                )
                .await?;
            let mut drained: Vec<String> = proxies.iter().flat_map(|p| haproxy::drained_servers(&csv, p)).collect();
            drained.sort();
            drained.dedup();
            for server in &drained {
                r.check(
                    "setting a GLB server ready",
                    &haproxy::server_state_script(&proxies, server, "ready"),
                )
                .await?;
                ctx.say(
                    number,
                    format!("{host}: {server} was left drained (a removal that did not finish): sessions to it again"),
                );
            }
            Ok(drained.is_empty() && glb_serves(d, &csv))
        })
        .await
        .with_context(|| {
            if d.site.is_some() {
                format!("{host}: the GLB does not see exactly one host up (the master's)")
            } else {
                format!("{host}: the GLB sees no primary-cloud HAProxy up")
            }
        })?;
    }
    Ok(())
}

/// The GLB's statistics show it serving the primary cloud. With a site
/// lease the GLB lists every host and a new one starts as up: its checks
/// must have left the master's alone (a server going down, `UP 1/2`, still
/// takes sessions), or a client sent to another would have its session
/// shut down.
fn glb_serves(d: &Design, csv: &str) -> bool {
    let proxy = haproxy::glb_proxy(&d.platform.name);
    let up = haproxy::up_servers(csv, &proxy);
    if d.site.is_some() {
        up.len() == 1 && haproxy::serving_servers(csv, &proxy) == up
    } else {
        !up.is_empty()
    }
}
