//! Command-line definitions: one struct per subcommand, nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ui::Output;

#[derive(Debug, Parser)]
#[command(
    name = "pgha",
    version,
    about = "Deploy and operate highly available PostgreSQL across clouds over SSH",
    long_about = "pgha turns a design file into PostgreSQL under Patroni, an etcd cluster per cloud, \
HAProxy on every host and a global load balancer in front of the primary cloud.\n\n\
Exit codes: 0 success, 2 invalid input (design, arguments, unconfirmed plan), 1 failure while running; \
`pgha status` also 3 when degraded (its worst finding a warning) and 4 when unsafe (a host takes writes \
where none may)."
)]
pub struct Cli {
    /// The design file.
    #[arg(
        short = 'f',
        long = "design",
        global = true,
        default_value = "pgha.yaml",
        value_name = "FILE"
    )]
    pub design: PathBuf,

    /// Output format for commands whose output is data.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// A directory of *.j2 files that replace the built-in templates.
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a first design file (-f, default pgha.yaml) and its inventories
    /// for the clouds and hosts given, every setting shown with its default.
    Init(InitArgs),
    /// Check the design file and report every problem with its location.
    Validate,
    /// Print the numbered deployment plan. Changes nothing.
    Plan,
    /// Write every file pgha would install, per host, for review (passwords redacted).
    Render(RenderArgs),
    /// Write Prometheus's configuration for the cluster: scrape jobs with
    /// file-based targets for every host and component, alert rules with the
    /// design's bounds, and the metrics CA's client certificate. Changes no host.
    Monitoring(MonitoringArgs),
    /// Deploy the design over SSH: primary cloud first, then secondary clouds, then the GLB.
    Deploy(DeployArgs),
    /// The cluster at a glance: cloud, host, role, state, timeline, lag, etcd, HAProxy, GLB.
    /// Exit 0 healthy, 3 degraded (a warning), 4 unsafe (a host takes writes
    /// where none may), 1 when it cannot run.
    Status(StatusArgs),
    /// Flip which cloud serves traffic and may elect the master.
    #[command(subcommand)]
    Cloud(CloudCommand),
    /// Bring a failed node back as a replica, safely.
    RecoverNode(RecoverArgs),
    /// Planned master change inside the primary cloud, no data loss.
    Switchover(SwitchoverArgs),
    /// A master for the primary cloud when it has none and Patroni will not
    /// elect one (its only running replica is behind the newest timeline):
    /// names the commits that would be lost, refused without --accept-data-loss.
    Failover(FailoverArgs),
    /// Maintenance mode: Patroni stops failing over and leaves PostgreSQL
    /// as it is, in every cloud or one, until `resume`.
    Pause(PauseArgs),
    /// End maintenance mode: Patroni fails over again.
    Resume(PauseArgs),
    /// What happened, oldest first: each cloud's promotions (Patroni's
    /// history) and pgha's journal of changing commands.
    History,
    /// The cluster's TLS certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Take a backup into every cloud's repository (pgBackRest); `list` and
    /// `check` read them.
    Backup(BackupArgs),
    /// Restore the whole cluster to a point in time, the end of the archive,
    /// or a backup: every host's data is replaced (the old kept aside).
    Restore(RestoreArgs),
    /// Move the whole cluster to a new release, host by host, without
    /// stopping it.
    #[command(subcommand)]
    Upgrade(UpgradeCommand),
    /// Print the libpq connection string of an endpoint (TLS verify-full,
    /// the cluster's CA), for the GLB or one cloud. No password in it.
    Dsn(DsnArgs),
    /// Open psql on an endpoint: the superuser's password from the secrets
    /// file goes on psql's environment, never its arguments.
    Psql(PsqlArgs),
    /// A lab of real hosts (systemd containers with sshd) on this machine.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Write man pages.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A cloud and its hosts' addresses, NAME=ADDRESS[,ADDRESS...]; the
    /// first is primary. Hosts are named NAME-pg1, NAME-pg2, ...
    #[arg(long = "cloud", value_name = "NAME=ADDRESSES", required = true)]
    pub clouds: Vec<String>,
    /// The cluster's name.
    #[arg(long, default_value = "pgha")]
    pub name: String,
    /// The GLB host's address (an HAProxy pgha configures).
    #[arg(long, value_name = "ADDRESS")]
    pub glb: Option<String>,
    /// The name clients use for the GLB (default: its address).
    #[arg(long, value_name = "NAME")]
    pub glb_fqdn: Option<String>,
    /// A host in a third site: turns the site lease on.
    #[arg(long, value_name = "ADDRESS")]
    pub witness: Option<String>,
    /// A cloud's repository host, CLOUD=ADDRESS (default: the cloud's last
    /// database host keeps the repository).
    #[arg(long = "repository", value_name = "CLOUD=ADDRESS")]
    pub repositories: Vec<String>,
    /// No backups (the section is written commented out).
    #[arg(long)]
    pub no_backup: bool,
    #[arg(long, value_name = "USER", default_value = "root")]
    pub ssh_user: String,
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<String>,
    /// A network whose clients may log in directly (CIDR); repeatable.
    #[arg(long = "client-network", value_name = "CIDR")]
    pub client_networks: Vec<String>,
    /// Replace files that exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct DsnArgs {
    /// rw: the master. ro: the replicas of the cloud that has the master
    /// (the master when none is healthy). local: one cloud's own replicas.
    #[arg(long, value_enum, default_value = "rw")]
    pub endpoint: crate::ops::connect::Endpoint,
    /// That cloud's HAProxy instances instead of the GLB.
    #[arg(long, value_name = "NAME")]
    pub cloud: Option<String>,
    /// The role to log in as.
    #[arg(long, value_name = "ROLE", default_value = crate::ops::connect::SUPERUSER)]
    pub role: String,
    /// The database.
    #[arg(long, value_name = "NAME", default_value = "postgres")]
    pub dbname: String,
}

#[derive(Debug, Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    pub to: DsnArgs,
    /// Passed to psql as they are (after `--`).
    #[arg(last = true, value_name = "PSQL ARGS")]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Where to write: DIR/<cloud>/<host>/<path on the host>.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct MonitoringArgs {
    /// Where to write: DIR/prometheus.yml, DIR/targets/, DIR/rules/, DIR/tls/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write pgha.1 and one page per subcommand into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LabDir {
    /// The lab's directory: keys, known_hosts, inventories, design, state.
    #[arg(long = "lab", value_name = "DIR", default_value = "lab")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the image if missing, start every host, write keys, inventory and design.
    Up(LabUpArgs),
    /// Build the host image if it is missing (up does this too) and print its tag.
    Image(LabImageArgs),
    /// List the lab's hosts: cloud, name, address, running or not, network.
    Status(LabDir),
    /// Remove the lab's containers, network and directory, and nothing else.
    Down(LabDir),
    /// Power a host off (HOST may be a cloud name, or `glb`).
    Kill(LabTarget),
    /// Boot a killed host again, disks intact; waits until SSH answers.
    Start(LabTarget),
    /// Cut a host off the lab network.
    Cut(LabTarget),
    /// Reconnect a cut host.
    Heal(LabTarget),
    /// Drop all traffic between a cloud and every other lab host (its own
    /// hosts still reach each other): a partition between data centers.
    Partition(LabPartitionArgs),
    /// End a partition of a cloud (and the operator's cut, if any).
    Unpartition(LabCloud),
    /// After a deploy: put `pgha monitoring`'s files for the lab's design on
    /// its monitoring host and (re)start Prometheus and Alertmanager there.
    Monitor(LabDir),
}

#[derive(Debug, Args)]
pub struct LabPartitionArgs {
    #[command(flatten)]
    pub cloud: LabCloud,
    /// Cut this machine (the operator's, where pgha runs) off the cloud too.
    #[arg(long)]
    pub operator: bool,
}

#[derive(Debug, Args)]
pub struct LabCloud {
    /// A cloud of the lab (dc1, dc2, ...).
    pub cloud: String,
    #[command(flatten)]
    pub lab: LabDir,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub lab: LabDir,
    /// Name of the lab: prefix of its containers and name of its network.
    #[arg(long, default_value = "pgha-lab")]
    pub name: String,
    /// Number of clouds (dc1 is primary).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub clouds: u8,
    /// Hosts per cloud.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub hosts: u8,
    /// `baked`: PostgreSQL, Patroni, etcd and HAProxy pre-installed; `bare`: deploy installs them.
    #[arg(long, value_enum, default_value_t = crate::lab::Variant::Baked)]
    pub image: crate::lab::Variant,
    /// The hosts' Debian release: 13 (trixie, the reference) or 12 (bookworm).
    #[arg(long, value_enum, default_value_t = crate::lab::Os::Debian13)]
    pub os: crate::lab::Os,
    /// The lab network, a /24.
    #[arg(long, default_value = "10.77.0.0/24")]
    pub subnet: String,
    /// Log in as this user (created on every host with passwordless sudo and
    /// the lab's key) instead of root; the design written names it.
    #[arg(long)]
    pub user: Option<String>,
    /// No witness host: two clouds alone, without the site lease.
    #[arg(long)]
    pub no_witness: bool,
    /// No backup repository hosts: the design written has no backups.
    #[arg(long)]
    pub no_backup: bool,
    /// A monitoring host too, with Debian's Prometheus and Alertmanager
    /// (Debian 13 baked image); `pgha lab monitor` sets it up after a deploy.
    #[arg(long)]
    pub monitor: bool,
}

#[derive(Debug, Args)]
pub struct LabTarget {
    /// A host name, a cloud name, or `glb`.
    pub target: String,
    #[command(flatten)]
    pub lab: LabDir,
}

#[derive(Debug, Args)]
pub struct LabImageArgs {
    #[arg(long, value_enum, default_value_t = crate::lab::Variant::Baked)]
    pub image: crate::lab::Variant,
    /// The hosts' Debian release.
    #[arg(long, value_enum, default_value_t = crate::lab::Os::Debian13)]
    pub os: crate::lab::Os,
}

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Every host from Debian 12 (bookworm) to Debian 13 (trixie), one at a
    /// time: the secondary clouds first, then the primary cloud's replicas, a
    /// switchover, the old master, the witness and the GLB. PostgreSQL keeps
    /// its major version. Run it again after an interruption: it finishes
    /// what is left.
    Release(ReleaseArgs),
    /// The PostgreSQL major version of every host of every cloud, by
    /// pg_upgrade on the master and a copy of what it changed to each
    /// standby (a full copy where the standby was not at the master's
    /// position). `pg_upgrade --check` runs on every host first; the plan
    /// names the point from which the old version cannot start again. Writes
    /// stop from the master's stop until it runs the new version. Run it
    /// again after an interruption: it finishes what is left.
    Postgres(PostgresArgs),
}

#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// The major version to move to, such as 17: installed from the hosts'
    /// apt sources when missing.
    #[arg(value_name = "VERSION")]
    pub version: u32,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Replace the cluster CA and every certificate, rolling, with no moment
    /// where members cannot talk (old and new CA trusted during the switch).
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The backup type: a full copy, or the changes since the last full
    /// (diff) or since the last backup of any type (incr).
    #[arg(long = "type", value_enum, default_value_t = crate::components::backup::Kind::Full)]
    pub(crate) kind: crate::components::backup::Kind,
    /// Only this cloud's repository (default: every cloud's).
    #[arg(long, value_name = "NAME")]
    pub cloud: Option<String>,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "latest", "backup"])))]
pub struct RestoreArgs {
    /// The time to recover to: `YYYY-MM-DD HH:MM:SS` with an offset (e.g. `+00`).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Recover to the last archived transaction.
    #[arg(long)]
    pub latest: bool,
    /// Recover a backup (a label from `pgha backup list`), to the point it is consistent.
    #[arg(long, value_name = "LABEL")]
    pub backup: Option<String>,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Every repository's backups: type, start, duration, size, WAL range.
    List,
    /// pgbackrest check from every repository: the archive reaches it.
    Check,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub confirm: Confirm,
    /// Deploy only this cloud (repeatable; `glb` names the GLB).
    #[arg(long = "cloud", value_name = "NAME")]
    pub clouds: Vec<String>,
    /// A host dropped from the design loses its PostgreSQL data directory too
    /// (by default it is kept, with the services stopped and disabled).
    #[arg(long)]
    pub delete_removed_data: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Refresh every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<u64>,
    /// A Nagios plugin's answer: one line `PGHA OK|WARNING|CRITICAL|UNKNOWN - ...`,
    /// the findings after it, and Nagios's exit codes (0 healthy, 1
    /// degraded, 2 unsafe, 3 could not tell).
    #[arg(long, conflicts_with = "watch")]
    pub nagios: bool,
}

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Make NAME the primary cloud: a planned switchover when another cloud is
    /// primary and healthy, a promotion when none is.
    MakePrimary(MakePrimaryArgs),
    /// Make NAME secondary: drain the GLB and fence the cloud; no cloud is
    /// primary until `make-primary`.
    MakeSecondary(CloudArgs),
}

#[derive(Debug, Args)]
pub struct CloudArgs {
    /// The cloud.
    pub name: String,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct MakePrimaryArgs {
    #[command(flatten)]
    pub cloud: CloudArgs,
    /// Promote even if another host holds commits the new primary lacks
    /// (they are lost), or while another cloud still renews the site lease.
    #[arg(long)]
    pub accept_data_loss: bool,
    #[command(flatten)]
    pub old_force: OldForce,
}

/// The prompt every changing command asks, and its dry run.
#[derive(Debug, Args)]
pub struct Confirm {
    /// Answer yes to the confirmation (needed without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Connect, print the plan, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `--force` as it was: refused with the new name, so that a habit from
/// patronictl (where it only skips the prompt) never accepts a loss.
#[derive(Debug, Args)]
pub struct OldForce {
    #[arg(long, hide = true)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The host to recover.
    pub host: String,
    /// Copy the data afresh from the leader instead of trying pg_rewind.
    #[arg(long)]
    pub reclone: bool,
    /// Recover the current leader, or discard commits only this node holds (kept aside on disk).
    #[arg(long)]
    pub accept_data_loss: bool,
    #[command(flatten)]
    pub old_force: OldForce,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The replica to make master (default: the one with the least lag).
    #[arg(long, value_name = "HOST")]
    pub to: Option<String>,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The running replica to promote.
    #[arg(long, value_name = "HOST")]
    pub to: String,
    /// Promote it although other hosts hold commits it lacks (they are named first).
    #[arg(long)]
    pub accept_data_loss: bool,
    #[command(flatten)]
    pub old_force: OldForce,
    #[command(flatten)]
    pub confirm: Confirm,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Only this cloud (default: every cloud).
    #[arg(long, value_name = "NAME")]
    pub cloud: Option<String>,
    #[command(flatten)]
    pub confirm: Confirm,
}
