//! `kith-fb-compare`: compares a framebuffer dump brought out of the test VM with what kith meant
//! to show: its PNG snapshot of the same frame (`frame`), or the full-screen status message
//! (`status`, e.g. "camera lost", drawn here with kith's own overlay code). Prints one line and
//! exits 0 when the pictures match, 1 when they do not.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use image::RgbImage;
use kith_runtime::overlay::draw_status;
use kith_vm::compare::compare;
use kith_vm::fb::Geometry;

#[derive(Parser)]
#[command(name = "kith-fb-compare")]
struct Cli {
    /// The dump (`dd if=/dev/fb0`).
    #[arg(long)]
    dump: PathBuf,
    /// The geometry `kith-vm-probe fbinfo` printed for it.
    #[arg(long)]
    geometry: PathBuf,
    /// Also write the dump as a PNG here (to look at).
    #[arg(long)]
    save: Option<PathBuf>,
    #[command(subcommand)]
    expected: Expected,
}

#[derive(Subcommand)]
enum Expected {
    /// kith's PNG snapshot of the frame on screen.
    Frame { png: PathBuf },
    /// kith's full-screen status message with this text.
    Status { text: String },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let text = std::fs::read_to_string(&cli.geometry)
        .with_context(|| format!("{}: cannot read", cli.geometry.display()))?;
    let geometry = Geometry::parse(&text).with_context(|| format!("{}", cli.geometry.display()))?;
    let dump =
        std::fs::read(&cli.dump).with_context(|| format!("{}: cannot read", cli.dump.display()))?;
    let screen = geometry
        .decode(&dump)
        .with_context(|| format!("{}", cli.dump.display()))?;
    if let Some(path) = &cli.save {
        screen
            .save(path)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let (expected, what) = match &cli.expected {
        Expected::Frame { png } => (
            image::open(png)
                .with_context(|| format!("{}: cannot read", png.display()))?
                .to_rgb8(),
            png.display().to_string(),
        ),
        Expected::Status { text } => (status_screen(&geometry, text)?, format!("status {text:?}")),
    };
    let c = compare(&screen, &geometry, &expected)?;
    println!(
        "{} {}x{} at {},{} on a {}x{} {}-bit screen: {} of {} pixels differ (max channel difference {}; expected: {})",
        if c.matches() { "match" } else { "MISMATCH" },
        expected.width(),
        expected.height(),
        c.at.0,
        c.at.1,
        geometry.width,
        geometry.height,
        geometry.bits_per_pixel,
        c.differing,
        c.pixels,
        c.max_diff,
        what,
    );
    std::process::exit(if c.matches() { 0 } else { 1 });
}

/// The full screen as kith's `draw_status` draws it.
fn status_screen(geometry: &Geometry, text: &str) -> Result<RgbImage> {
    let mut canvas =
        kith_runtime::image::RgbImage::new(geometry.width as usize, geometry.height as usize);
    let Ok(()) = draw_status(&mut canvas, text);
    RgbImage::from_raw(geometry.width, geometry.height, canvas.data)
        .context("the status canvas has the wrong size")
}
