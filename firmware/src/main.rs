//! `kith`: watches a camera, finds the people in each frame, recognises the social relation of
//! every pair with GRITv2-S and draws the labels. `cargo run --release` with no arguments plays the
//! bundled demo frames (board-configs/demo.toml) into ./out.

mod camera;
mod config;
mod display;
mod output;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kith_runtime::alloc_count::CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The board config `kith` runs when given no arguments.
const DEMO_BOARD: &str = "board-configs/demo.toml";

#[derive(Parser)]
#[command(
    name = "kith",
    version,
    about = "Social relation recognition on single-board computers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline: camera (or --source) -> persons -> relations -> display and outputs.
    Run(RunArgs),
    /// Validate a board config and load its models, opening no device; exit 2 on any error.
    Check {
        /// Board config (TOML).
        #[arg(long)]
        board: PathBuf,
    },
}

/// Arguments of `kith run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Board config (TOML).
    #[arg(long, default_value = DEMO_BOARD)]
    pub board: PathBuf,
    /// Replace the board's camera with an image file or a folder of JPEG/PNG images (name order).
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Output folder: results.jsonl and frames/NNNNNN.png.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    pub frames: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run(RunArgs {
        board: DEMO_BOARD.into(),
        source: None,
        out: "out".into(),
        frames: None,
    }));
    let result = match command {
        Command::Run(args) => run::run(&args),
        Command::Check { board } => run::check(&board),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kith: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(run::exit_code(&e))
        }
    }
}
