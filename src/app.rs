//! Runs one parsed command line and turns its outcome into an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::design::{self, Design};
use crate::error;
use crate::plan::Plan;
use crate::render::{self, Renderer};
use crate::secrets::Secrets;
use crate::ui::{self, Output};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            if err.downcast_ref::<error::Invalid>().is_some() {
                eprintln!("{err}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(error::exit_code(&err))
        }
    }
}

/// `pgha plan | head` closing the pipe early is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Validate => validate(&cli),
        Command::Plan => {
            let design = load(&cli)?;
            let plan = Plan::deployment(&design);
            match cli.output {
                Output::Json => ui::print_json(&plan),
                Output::Text => {
                    println!(
                        "Deployment plan for {} ({} steps):",
                        plan.cluster,
                        plan.steps.len()
                    );
                    println!("{}", ui::plan_table(&plan));
                    Ok(())
                }
            }
        }
        Command::Render(args) => {
            let design = load(&cli)?;
            let renderer = Renderer::for_design(&design)?;
            let files = renderer.all(&design, &Secrets::redacted())?;
            let written = render::write_tree(&args.out, &files)?;
            match cli.output {
                Output::Json => ui::print_json(&written),
                Output::Text => {
                    println!(
                        "wrote {} files under {} (passwords redacted)",
                        written.len(),
                        args.out.display()
                    );
                    Ok(())
                }
            }
        }
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "pgha",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man(args) => man(&args.out),
    }
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
            println!(
                "{}: valid ({} clouds, {} database hosts, {} warning(s))",
                cli.design.display(),
                d.clouds.len(),
                hosts,
                loaded.warnings.len()
            );
            Ok(())
        }
    }
}

fn man(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, out)
        .with_context(|| format!("cannot write man pages to {}", out.display()))?;
    println!("wrote man pages to {}", out.display());
    Ok(())
}
