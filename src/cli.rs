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
Exit codes: 0 success, 2 invalid input (design, arguments, unconfirmed plan), 1 failure while running."
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
    /// Check the design file and report every problem with its location.
    Validate,
    /// Print the numbered deployment plan. Changes nothing.
    Plan,
    /// Write every file pgha would install, per host, for review (passwords redacted).
    Render(RenderArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Write man pages.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Where to write: DIR/<cloud>/<host>/<path on the host>.
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
