//! Runs one parsed command line and turns its outcome into an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use crate::cli::{BackupCommand, CertsCommand, Cli, CloudCommand, Command, LabCommand, UpgradeCommand};
use crate::design::{self, Design};
use crate::error;
use crate::ops::connect;
use crate::plan::Plan;
use crate::render::{self, Renderer};
use crate::secrets::Secrets;
use crate::ui::{self, Output};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    crate::remote::end_leftover_masters();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if err.downcast_ref::<error::Invalid>().is_some() {
                eprintln!("{err}");
            } else if err
                .downcast_ref::<error::Attention>()
                .is_some_and(|a| a.message.is_empty())
            {
                // Said on stdout already (`status --nagios`).
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(error::exit_code(&err))
        }
    }
}

/// `pgha plan | head` closing the pipe early is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || e.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == Some(BrokenPipe)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Init(args) => init(&cli, args),
        Command::Validate => validate(&cli),
        Command::Plan => {
            let design = load(&cli)?;
            let plan = Plan::deployment(&design);
            match cli.output {
                Output::Json => ui::print_json(&plan),
                Output::Text => ui::print(&format!(
                    "Deployment plan for {} ({} steps):\n{}",
                    plan.cluster,
                    plan.steps.len(),
                    ui::plan_table(&plan)
                )),
            }
        }
        Command::Render(args) => {
            let design = load(&cli)?;
            let renderer = Renderer::for_design(&design)?;
            let files = renderer.all(&design, &Secrets::redacted())?;
            let written = render::write_tree(&args.out, &files)?;
            match cli.output {
                Output::Json => ui::print_json(&written),
                Output::Text => ui::print(&format!(
                    "wrote {} files under {} (passwords redacted)",
                    written.len(),
                    args.out.display()
                )),
            }
        }
        Command::Monitoring(args) => monitoring(&cli, args),
        Command::Deploy(args) => deploy(&cli, args),
        Command::Status(args) if args.nagios => {
            let design = match load_mode(&cli, design::Mode::AllowNoPrimary) {
                Ok(d) => d,
                Err(e) => {
                    // A plugin that cannot tell says UNKNOWN, on stdout; the
                    // whole error goes to stderr.
                    let why = format!("{e:#}");
                    println!(
                        "{}",
                        crate::ops::status::nagios_unknown(why.lines().next().unwrap_or_default())
                    );
                    return Err(error::Attention {
                        code: crate::ops::status::NAGIOS_UNKNOWN,
                        message: why,
                    }
                    .into());
                }
            };
            runtime()?.block_on(crate::ops::status::run_nagios(&design))
        }
        Command::Status(args) => {
            let design = load_mode(&cli, design::Mode::AllowNoPrimary)?;
            runtime()?.block_on(crate::ops::status::run(&design, cli.output, args.watch))
        }
        Command::Cloud(cmd) => cloud(&cli, cmd),
        Command::RecoverNode(args) => recover_node(&cli, args),
        Command::Switchover(args) => switchover(&cli, args),
        Command::Failover(args) => failover(&cli, args),
        Command::Dsn(args) => dsn(&cli, args),
        Command::Psql(args) => psql(&cli, args),
        Command::History => {
            let design = load_mode(&cli, design::Mode::AllowNoPrimary)?;
            runtime()?.block_on(crate::ops::history::run(&design, cli.output))
        }
        Command::Pause(args) | Command::Resume(args) => {
            let design = load(&cli)?;
            let opts = crate::ops::pause::Options {
                cloud: args.cloud.clone(),
                yes: args.confirm.yes,
                dry_run: args.confirm.dry_run,
            };
            let pause = matches!(cli.command, Command::Pause(_));
            interruptible(crate::ops::pause::run(&design, &opts, pause, cli.output))
        }
        Command::Backup(args) => backup(&cli, args),
        Command::Restore(args) => restore(&cli, args),
        Command::Certs(CertsCommand::Rotate(args)) => {
            let design = load(&cli)?;
            let opts = crate::ops::certs::Options {
                yes: args.confirm.yes,
                dry_run: args.confirm.dry_run,
            };
            interruptible(crate::ops::certs::rotate(&design, &opts, cli.output))
        }
        Command::Upgrade(UpgradeCommand::Release(args)) => {
            let design = load(&cli)?;
            let opts = crate::ops::upgrade::Options {
                yes: args.confirm.yes,
                dry_run: args.confirm.dry_run,
            };
            interruptible(crate::ops::upgrade::release(&design, &opts, cli.output))
        }
        Command::Upgrade(UpgradeCommand::Postgres(args)) => {
            let design = load(&cli)?;
            let opts = crate::ops::major::Options {
                version: args.version,
                yes: args.confirm.yes,
                dry_run: args.confirm.dry_run,
            };
            interruptible(crate::ops::major::run(&design, &opts, cli.output))
        }
        Command::Lab(cmd) => runtime()?.block_on(lab(cmd, cli.output)),
        Command::Completions(args) => {
            clap_complete::generate(args.shell, &mut Cli::command(), "pgha", &mut std::io::stdout());
            Ok(())
        }
        Command::Man(args) => man(&args.out),
    }
}

/// `pgha deploy`.
fn deploy(cli: &Cli, args: &crate::cli::DeployArgs) -> anyhow::Result<()> {
    let design = load(cli)?;
    let opts = crate::deploy::Options {
        only: args.clouds.clone(),
        yes: args.confirm.yes,
        dry_run: args.confirm.dry_run,
        delete_removed_data: args.delete_removed_data,
    };
    interruptible(crate::deploy::run(&design, &opts, cli.output))
}

/// `pgha cloud make-primary|make-secondary`.
fn cloud(cli: &Cli, cmd: &CloudCommand) -> anyhow::Result<()> {
    use crate::ops::cloud::{self, Flip};
    let (args, flip, force) = match cmd {
        CloudCommand::MakePrimary(a) => {
            refuse_old_force(&a.old_force)?;
            (&a.cloud, Flip::MakePrimary, a.accept_data_loss)
        }
        CloudCommand::MakeSecondary(a) => (a, Flip::MakeSecondary, false),
    };
    let design = load_mode(cli, design::Mode::AllowNoPrimary)?;
    let opts = cloud::Options {
        yes: args.confirm.yes,
        force,
        dry_run: args.confirm.dry_run,
    };
    interruptible(cloud::run(&design, &args.name, flip, &opts, cli.output))
}

/// `pgha recover-node`.
fn recover_node(cli: &Cli, args: &crate::cli::RecoverArgs) -> anyhow::Result<()> {
    refuse_old_force(&args.old_force)?;
    let design = load_mode(cli, design::Mode::AllowNoPrimary)?;
    let opts = crate::ops::recover::Options {
        yes: args.confirm.yes,
        force: args.accept_data_loss,
        reclone: args.reclone,
        dry_run: args.confirm.dry_run,
    };
    interruptible(crate::ops::recover::run(&design, &args.host, &opts, cli.output))
}

/// `pgha switchover`.
fn switchover(cli: &Cli, args: &crate::cli::SwitchoverArgs) -> anyhow::Result<()> {
    let design = load(cli)?;
    let opts = crate::ops::switchover::Options {
        to: args.to.clone(),
        yes: args.confirm.yes,
        dry_run: args.confirm.dry_run,
    };
    interruptible(crate::ops::switchover::run(&design, &opts, cli.output))
}

/// `pgha failover`.
fn failover(cli: &Cli, args: &crate::cli::FailoverArgs) -> anyhow::Result<()> {
    refuse_old_force(&args.old_force)?;
    let design = load(cli)?;
    let opts = crate::ops::failover::Options {
        to: args.to.clone(),
        accept_data_loss: args.accept_data_loss,
        yes: args.confirm.yes,
        dry_run: args.confirm.dry_run,
    };
    interruptible(crate::ops::failover::run(&design, &opts, cli.output))
}

/// `pgha backup [list|check]`.
fn backup(cli: &Cli, args: &crate::cli::BackupArgs) -> anyhow::Result<()> {
    use crate::ops::backup;
    let design = load(cli)?;
    match args.command {
        Some(BackupCommand::List) => runtime()?.block_on(backup::list(&design, cli.output)),
        Some(BackupCommand::Check) => runtime()?.block_on(backup::check(&design, cli.output)),
        None => {
            let opts = backup::Options {
                kind: args.kind,
                cloud: args.cloud.clone(),
                yes: args.confirm.yes,
                dry_run: args.confirm.dry_run,
            };
            interruptible(backup::take(&design, &opts, cli.output))
        }
    }
}

/// `pgha restore`.
fn restore(cli: &Cli, args: &crate::cli::RestoreArgs) -> anyhow::Result<()> {
    use crate::components::backup::Target;
    let design = load(cli)?;
    let target = match (&args.to, &args.backup) {
        (Some(t), _) => Target::Time(t.clone()),
        (_, Some(l)) => Target::Backup(l.clone()),
        _ => Target::Latest,
    }
    .checked()
    .map_err(error::Usage)?;
    let opts = crate::ops::restore::Options {
        target,
        yes: args.confirm.yes,
        dry_run: args.confirm.dry_run,
    };
    interruptible(crate::ops::restore::run(&design, &opts, cli.output))
}

/// Loads and validates the design, printing its warnings.
pub fn load(cli: &Cli) -> anyhow::Result<Design> {
    load_mode(cli, design::Mode::Deployable)
}

pub fn load_mode(cli: &Cli, mode: design::Mode) -> anyhow::Result<Design> {
    let loaded = design::load_mode(&cli.design, mode)?;
    ui::print_warnings(&loaded.warnings);
    let mut design = loaded.design;
    if let Some(dir) = &cli.templates {
        design.templates_dir = Some(dir.clone());
    }
    Ok(design)
}

/// Writes the design and its inventories, then reads them back as any
/// command would.
fn init(cli: &Cli, a: &crate::cli::InitArgs) -> anyhow::Result<()> {
    use design::init;
    let request = init::Request {
        name: a.name.clone(),
        clouds: a
            .clouds
            .iter()
            .map(|c| init::parse_cloud(c))
            .collect::<Result<_, _>>()?,
        glb: a.glb.clone(),
        glb_fqdn: a.glb_fqdn.clone(),
        witness: a.witness.clone(),
        repositories: a
            .repositories
            .iter()
            .map(|r| init::parse_repository(r))
            .collect::<Result<_, _>>()?,
        no_backup: a.no_backup,
        ssh_user: a.ssh_user.clone(),
        identity_file: a.identity_file.clone(),
        known_hosts: a.known_hosts.clone(),
        client_networks: a.client_networks.clone(),
    };
    let files = init::render(&request)?;
    // Checked where it will stand (relative paths resolve from there)
    // before any file is written.
    design::load_str_mode(&files.inline, &cli.design, design::Mode::Deployable)?;
    let base = cli.design.parent().unwrap_or(std::path::Path::new("")).to_path_buf();
    let mut writes = vec![(cli.design.clone(), files.design)];
    writes.extend(files.inventories.into_iter().map(|(p, t)| (base.join(p), t)));
    if !a.force {
        if let Some((p, _)) = writes.iter().find(|(p, _)| p.exists()) {
            anyhow::bail!(error::Usage(format!(
                "{} exists: nothing was written (--force replaces it)",
                p.display()
            )));
        }
    }
    for (p, text) in &writes {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let loaded = design::load_mode(&cli.design, design::Mode::Deployable)?;
    ui::print_warnings(&loaded.warnings);
    let names: Vec<String> = writes.iter().map(|(p, _)| p.display().to_string()).collect();
    ui::print(&format!(
        "wrote {}
next: `pgha validate`, then `pgha plan` and `pgha deploy` (-f {} if not the default)",
        names.join(", "),
        cli.design.display()
    ))
}

/// The endpoint's connection string and the file it verifies servers with.
fn connection(design: &Design, a: &crate::cli::DsnArgs) -> anyhow::Result<(connect::Target, String)> {
    connect::check_name("--role", &a.role)?;
    connect::check_name("--dbname", &a.dbname)?;
    let target = connect::target(design, a.endpoint, a.cloud.as_deref())?;
    let rootcert = connect::client_trust(design)?;
    let dsn = connect::dsn(&target, &a.role, &a.dbname, &rootcert);
    Ok((target, dsn))
}

/// `pgha monitoring`: the files written locally, from the design and the
/// certificates the first deploy made.
fn monitoring(cli: &Cli, args: &crate::cli::MonitoringArgs) -> anyhow::Result<()> {
    use crate::ops::monitoring;
    let design = load(cli)?;
    let files = monitoring_files(&design)?;
    let written = monitoring::write(&args.out, &files)?;
    match cli.output {
        Output::Json => ui::print_json(&written),
        Output::Text => ui::print(&format!(
            "wrote {} files under {}: point Prometheus at {} (the client key is 0600)",
            written.len(),
            args.out.display(),
            args.out.join("prometheus.yml").display()
        )),
    }
}

/// `pgha monitoring`'s files for `design`, with the metrics CA's client
/// certificate the first deploy made.
fn monitoring_files(design: &Design) -> anyhow::Result<Vec<crate::ops::monitoring::Generated>> {
    use crate::ops::monitoring;
    let pki = &design.pki_dir;
    let read = |p: std::path::PathBuf| {
        crate::fsutil::read_text(&p, crate::fsutil::MAX_SMALL).with_context(|| {
            format!(
                "run `pgha deploy` first: it makes the metrics CA's client certificate in {}",
                pki.display()
            )
        })
    };
    let tls = monitoring::ClientTls {
        trust: read(pki.join("trust.crt"))?,
        cert: read(pki.join("metrics/prometheus.crt"))?,
        key: read(pki.join("metrics/prometheus.key"))?,
    };
    monitoring::files(design, &tls)
}

fn dsn(cli: &Cli, a: &crate::cli::DsnArgs) -> anyhow::Result<()> {
    let design = load_mode(cli, design::Mode::AllowNoPrimary)?;
    let (target, dsn) = connection(&design, a)?;
    match cli.output {
        Output::Json => ui::print_json(&serde_json::json!({
            "dsn": dsn,
            "endpoint": target.endpoint,
            "cloud": target.cloud,
            "hosts": target.hosts,
            "port": target.port,
            "role": a.role,
            "dbname": a.dbname,
        })),
        Output::Text => ui::print(&dsn),
    }
}

/// Becomes psql (exec): its terminal, signals and exit code are the user's.
fn psql(cli: &Cli, a: &crate::cli::PsqlArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let design = load_mode(cli, design::Mode::AllowNoPrimary)?;
    let (_, dsn) = connection(&design, &a.to)?;
    let mut cmd = std::process::Command::new("psql");
    cmd.arg(dsn).args(&a.args);
    // The superuser's password, and those of the design's roles kept in the
    // secrets file, come from it; an env-sourced role's is the user's own.
    let kept = design
        .objects
        .role(&a.to.role)
        .is_some_and(|r| r.password == design::objects::PasswordSource::Secrets);
    if a.to.role == connect::SUPERUSER || kept {
        let secrets = Secrets::load(&design.secrets_file)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{} does not exist: `pgha deploy` writes the passwords there",
                design.secrets_file.display()
            )
        })?;
        let password = if kept {
            secrets.roles.get(&a.to.role).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} holds no password for {} yet: run `pgha deploy`",
                    design.secrets_file.display(),
                    a.to.role
                )
            })?
        } else {
            &secrets.superuser_password
        };
        cmd.env("PGPASSWORD", password);
    }
    let err = cmd.exec();
    Err(anyhow::anyhow!("could not run psql: {err} (install postgresql-client)"))
}

fn validate(cli: &Cli) -> anyhow::Result<()> {
    let result = design::load(&cli.design);
    match cli.output {
        Output::Json => {
            let (valid, problems) = match &result {
                Ok(l) => (true, l.warnings.clone()),
                Err(e) => (false, e.problems.clone()),
            };
            ui::print_json(&serde_json::json!({ "valid": valid, "problems": problems }))?;
            match result {
                Ok(_) => Ok(()),
                // Already printed as data; still exit 2.
                Err(_) => Err(error::Usage(String::from("the design is invalid")).into()),
            }
        }
        Output::Text => {
            let loaded = result?;
            ui::print_warnings(&loaded.warnings);
            let d = &loaded.design;
            let hosts: usize = d.clouds.iter().map(|c| c.hosts.len()).sum();
            ui::print(&format!(
                "{}: valid ({} clouds, {} database hosts, {} warning(s))",
                cli.design.display(),
                d.clouds.len(),
                hosts,
                loaded.warnings.len()
            ))
        }
    }
}

fn man(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, out).with_context(|| format!("cannot write man pages to {}", out.display()))?;
    ui::print(&format!("wrote man pages to {}", out.display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a changing command; Ctrl-C stops it there. Dropping the command
/// drops its SSH sessions, and each one ends its control master
/// (`ssh -O exit`): nothing is left connected to the hosts. The error says
/// which steps completed (exit 1).
fn interruptible(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let rt = runtime()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = command => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
                "interrupted (Ctrl-C): {}; SSH connections closed. A cluster lock it held expires within {} s; \
                 run the same command again to finish (an interrupted flip resumes where it stopped)",
                ui::journal::summary(),
                crate::lock::LEASE_TTL
            )),
        }
    });
    // Background tasks (the lock's renewal) hold sessions too: end them now.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    // And masters whose connection was cancelled before it had a session.
    crate::remote::end_leftover_masters();
    result
}

fn say(line: &str) {
    eprintln!("{line}");
}

async fn lab(cmd: &LabCommand, output: Output) -> anyhow::Result<()> {
    use crate::lab::{self, Fault};
    match cmd {
        LabCommand::Up(a) => {
            let prefix = a
                .subnet
                .strip_suffix(".0/24")
                .filter(|p| p.split('.').count() == 3 && p.split('.').all(|o| o.parse::<u8>().is_ok()))
                .ok_or_else(|| error::Usage(format!("--subnet {} is not a /24 like 10.77.0.0/24", a.subnet)))?;
            let spec = lab::LabSpec {
                name: a.name.clone(),
                dir: a.lab.dir.clone(),
                clouds: a.clouds.into(),
                hosts_per_cloud: a.hosts.into(),
                variant: a.image,
                os: a.os,
                subnet_prefix: prefix.to_string(),
                user: match &a.user {
                    Some(u) if !design::shape::posix_user(u) || u == "root" => {
                        return Err(error::Usage(format!("--user {u} is not a POSIX user name other than root")).into())
                    }
                    u => u.clone(),
                },
                // An odd count of sites: a witness next to an even number of clouds.
                witness: !a.no_witness && a.clouds % 2 == 0,
                backup: !a.no_backup,
                monitor: a.monitor,
            };
            if a.monitor && (a.os != lab::Os::Debian13 || a.image != lab::image::Variant::Baked) {
                return Err(error::Usage(
                    "--monitor needs the Debian 13 baked image (--os debian13 --image baked): it carries Prometheus"
                        .to_string(),
                )
                .into());
            }
            let l = lab::up(&spec, &say).await?;
            match output {
                Output::Json => ui::print_json(&l)?,
                Output::Text => {
                    print_lab_status(&l).await?;
                    let design = a.lab.dir.join(lab::DESIGN_FILE);
                    ui::print(&format!(
                        "lab directory: {} (id_ed25519, known_hosts, inventories/, {})\nnext: pgha deploy -f {}",
                        a.lab.dir.display(),
                        lab::DESIGN_FILE,
                        design.display()
                    ))?;
                }
            }
            Ok(())
        }
        LabCommand::Image(a) => {
            let tag = lab::image::ensure(a.os, a.image, &say).await?;
            ui::print(&tag)
        }
        LabCommand::Status(d) => {
            let l = lab::Lab::load(&d.dir)?;
            match output {
                Output::Json => ui::print_json(&lab::status(&l).await?),
                Output::Text => print_lab_status(&l).await,
            }
        }
        LabCommand::Down(d) => lab::down(&d.dir, &say).await,
        LabCommand::Kill(t) => lab::fault(&t.lab.dir, &t.target, Fault::Kill, &say).await,
        LabCommand::Start(t) => lab::fault(&t.lab.dir, &t.target, Fault::Start, &say).await,
        LabCommand::Cut(t) => lab::fault(&t.lab.dir, &t.target, Fault::Cut, &say).await,
        LabCommand::Heal(t) => lab::fault(&t.lab.dir, &t.target, Fault::Heal, &say).await,
        LabCommand::Partition(a) => lab::partition(&a.cloud.lab.dir, &a.cloud.cloud, Some(a.operator), &say).await,
        LabCommand::Unpartition(a) => lab::partition(&a.lab.dir, &a.cloud, None, &say).await,
        LabCommand::Monitor(d) => {
            let path = d.dir.join(lab::DESIGN_FILE);
            let loaded = design::load_mode(&path, design::Mode::Deployable)?;
            ui::print_warnings(&loaded.warnings);
            let files = monitoring_files(&loaded.design)?;
            lab::monitor(&d.dir, &files, &say).await
        }
    }
}

async fn print_lab_status(l: &crate::lab::Lab) -> anyhow::Result<()> {
    let mut t = ui::table(&["Cloud", "Host", "Address", "State", "Network"]);
    for r in crate::lab::status(l).await? {
        t.add_row(vec![r.cloud, r.name, r.address, r.state, r.network]);
    }
    ui::print(&format!("lab {} ({}, image {}):\n{t}", l.name, l.subnet, l.image))
}

/// `--force` is refused (exit 2) with the flag that now says what it does:
/// it accepted data loss, where patronictl's only skips the prompt.
fn refuse_old_force(f: &crate::cli::OldForce) -> anyhow::Result<()> {
    if f.force {
        anyhow::bail!(error::Usage(
            "--force is not an option any more: it accepted data loss, where patronictl's only skips the prompt\n  \
             hint: --yes answers the prompt; --accept-data-loss accepts losing the commits the command names"
                .into(),
        ));
    }
    Ok(())
}
