//! The README's 8-person overlay pictures: four demo frames tiled 2x2 into one 640x480 frame, run
//! through the real pipeline (detector and GRITv2-S, untrained weights, so the badge shows), and
//! the result drawn on a 1280x800 screen and on a 240x240 panel.
//!
//! Run: `cargo build --workspace --release --examples && target/release/examples/eight_persons docs/`

use std::error::Error;
use std::path::{Path, PathBuf};

use kith_runtime::image::RgbImage;
use kith_runtime::{DetectorSettings, Pipeline, PipelineSettings};

/// The demo frames tiled, left to right then top to bottom (4, 4, 4 and 3 persons).
const TILES: [usize; 4] = [10, 13, 15, 5];
/// The screens drawn on: the HDMI screen and the Pi 4's panel.
const SCREENS: [(usize, usize); 2] = [(1280, 800), (240, 240)];

fn main() -> Result<(), Box<dyn Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs".into()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("runtime/ has no parent")?;
    let (w, h) = (640u32, 480u32);
    let mut mosaic = image::RgbImage::new(w, h);
    for (k, n) in TILES.iter().enumerate() {
        let path = repo.join(format!("board-configs/demo/frames/frame_{n:03}.jpg"));
        let tile = image::open(&path)?.to_rgb8();
        let tile =
            image::imageops::resize(&tile, w / 2, h / 2, image::imageops::FilterType::Triangle);
        let (x, y) = ((k as u32 % 2) * w / 2, (k as u32 / 2) * h / 2);
        image::imageops::replace(&mut mosaic, &tile, x.into(), y.into());
    }
    let frame = RgbImage {
        width: w as usize,
        height: h as usize,
        data: mosaic.into_raw(),
    };
    let settings = PipelineSettings {
        threads: 1,
        detector: DetectorSettings::default(),
        pipelined: false,
        tracker: Default::default(),
        smoothing: Default::default(),
        overlay: Default::default(),
    };
    let models = repo.join("models");
    let mut pipeline = Pipeline::load(
        &models.join("person-detector.onnx"),
        &models.join("gritv2-s.int8.onnx"),
        settings,
    )?;
    pipeline.step(&frame.as_frame(), "mosaic", 0)?;
    let scene = pipeline.scene();
    println!(
        "{} persons, {} pairs",
        scene.persons.len(),
        scene.relations.len()
    );
    for (sw, sh) in SCREENS {
        let mut screen = RgbImage::new(sw, sh);
        let Ok(()) = pipeline.render(&mut screen);
        let path = out.join(format!("overlay-8-persons-{sw}x{sh}.png"));
        image::save_buffer(
            &path,
            &screen.data,
            sw as u32,
            sh as u32,
            image::ExtendedColorType::Rgb8,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
