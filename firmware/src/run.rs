//! `kith run` and `kith check`: build the pipeline from a board config and drive it.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use kith_runtime::alloc_count;
use kith_runtime::profile::micros_since;
use kith_runtime::Pipeline;

use crate::camera::replay::ReplaySource;
use crate::camera::{FrameSource, SourceError};
use crate::config::{BoardConfig, CameraConfig, ConfigError, DisplayConfig};
use crate::display::png::PngSnapshots;
use crate::output::JsonLines;
use crate::RunArgs;

/// Exit status for a bad board config or model file, as `kith check` documents.
const EXIT_BAD_CONFIG: u8 = 2;

/// The exit status for an error: 2 for a config or model problem, 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let bad_config = e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || matches!(
                c.downcast_ref::<kith_runtime::Error>(),
                Some(
                    kith_runtime::Error::ModelLoad { .. }
                        | kith_runtime::Error::ModelContract { .. }
                        | kith_runtime::Error::Setting { .. }
                )
            )
    });
    if bad_config {
        EXIT_BAD_CONFIG
    } else {
        1
    }
}

fn load_pipeline(config: &BoardConfig) -> Result<Pipeline> {
    Ok(Pipeline::load(
        &config.detector.model,
        &config.relation.model,
        config.pipeline_settings(),
    )?)
}

/// `kith check`: validates the config and loads both models, opening no device.
pub fn check(board: &Path) -> Result<()> {
    let config = BoardConfig::load(board)?;
    let pipeline = load_pipeline(&config)?;
    let (w, h) = pipeline.detector().input_size();
    println!(
        "{}: ok (board \"{}\"; detector {} {w}x{h}; relations {} weights={})",
        board.display(),
        config.name,
        pipeline.detector().model().file_name(),
        pipeline.relation().model().file_name(),
        pipeline.relation().weights(),
    );
    Ok(())
}

/// `kith run`: plays the source through the pipeline into the display and outputs.
pub fn run(args: &RunArgs) -> Result<()> {
    let config = BoardConfig::load(&args.board)?;
    let mut source: Box<dyn FrameSource> = match (&args.source, &config.camera) {
        (Some(path), _) => Box::new(ReplaySource::open(path, false)?),
        (None, CameraConfig::Replay { path, repeat }) => {
            Box::new(ReplaySource::open(path, *repeat)?)
        }
    };
    let mut pipeline = load_pipeline(&config)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let mut results = JsonLines::create(&args.out.join("results.jsonl"))?;
    let mut snapshots = match config.display {
        DisplayConfig::Png { every } => {
            Some(PngSnapshots::create(&args.out.join("frames"), every)?)
        }
        DisplayConfig::None => None,
    };
    print_banner(&config, &pipeline);
    let weights = pipeline.relation().weights().to_owned();
    let limit = args.frames.unwrap_or(u64::MAX);
    let mut done = 0u64;
    let mut skipped = 0u64;
    while done < limit {
        let start = Instant::now();
        let captured = match source.next_frame() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e @ SourceError::Corrupt { .. }) => {
                eprintln!("kith: warning: {e}");
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let decode_us = micros_since(start);
        pipeline.step(&captured.frame, captured.name, decode_us)?;
        if let Some(snap) = snapshots.as_mut().filter(|s| s.wants(done)) {
            snap.canvas
                .resize(captured.frame.width, captured.frame.height);
            let Ok(()) = pipeline.render(&mut snap.canvas, &captured.frame);
        }
        let scene = pipeline.finish();
        results.write(scene, &weights)?;
        if let Some(snap) = snapshots.as_ref().filter(|s| s.wants(done)) {
            snap.write(done)?;
        }
        println!(
            "frame {:>6} {:<24} {} persons, {} pairs, {:.1} ms",
            scene.frame,
            scene.source.as_str(),
            scene.persons.len(),
            scene.relations.len(),
            scene.timings.total as f64 / 1000.0
        );
        done += 1;
    }
    println!();
    print!("{}", pipeline.profile().table(alloc_count::is_counting()));
    println!(
        "wrote {done} frames to {}{}{}",
        args.out.join("results.jsonl").display(),
        if snapshots.is_some() {
            " and PNG snapshots to "
        } else {
            ""
        },
        snapshots
            .as_ref()
            .map(|_| args.out.join("frames").display().to_string())
            .unwrap_or_default(),
    );
    if skipped > 0 {
        println!("skipped {skipped} unreadable frames (see warnings above)");
    }
    Ok(())
}

fn print_banner(config: &BoardConfig, pipeline: &Pipeline) {
    let (w, h) = pipeline.detector().input_size();
    println!(
        "kith {} on board \"{}\", {} thread(s)",
        env!("CARGO_PKG_VERSION"),
        config.name,
        config.threads
    );
    println!(
        "  detector  {} ({w}x{h}, {:?})",
        pipeline.detector().model().path().display(),
        pipeline.detector().resize_mode()
    );
    println!(
        "  relations {} (weights: {})",
        pipeline.relation().model().path().display(),
        pipeline.relation().weights()
    );
    if pipeline.relation().is_untrained() {
        println!("  NOTE: the relation weights are untrained (not trained on PISC): the labels are NOT recognition.");
    }
}
