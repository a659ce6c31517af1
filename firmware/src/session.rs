//! A session: frames from the board's camera (or a replacement source) through the pipeline into
//! the display and the outputs, one frame per [`Session::step`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use kith_runtime::image::RgbImage;
use kith_runtime::profile::micros_since;
use kith_runtime::{Pipeline, Scene};

use crate::camera::pipe::PipeSource;
use crate::camera::replay::ReplaySource;
use crate::camera::spec::CameraSpec;
#[cfg(feature = "v4l2")]
use crate::camera::v4l2::V4l2Source;
use crate::camera::{FrameSource, Lost, Negotiated, SourceError};
use crate::config::{BoardConfig, ConfigError};
use crate::display::png::PngSnapshots;
use crate::display::spec::DisplaySpec;
use crate::display::{Display, DisplayError};
use crate::mqtt::{MqttError, Publisher};
use crate::output::JsonLines;
use crate::service::StopFlag;
use crate::OutputError;

/// The size of "camera lost" on an in-memory display that knows no frame size yet.
const STATUS_SIZE: (usize, usize) = (640, 480);

/// Why a session stopped.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Pipeline(#[from] kith_runtime::Error),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Display(#[from] DisplayError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

impl SessionError {
    /// Whether the error is in the board config or its model files (exit status 2).
    pub fn is_config(&self) -> bool {
        use kith_runtime::relation_choice::ChoiceError;
        use kith_runtime::Error as E;
        match self {
            SessionError::Pipeline(E::RelationChoice(choice)) => {
                matches!(**choice, ChoiceError::Fallback(_))
            }
            SessionError::Mqtt(e) => e.is_config(),
            _ => matches!(
                self,
                SessionError::Config(_)
                    | SessionError::Display(DisplayError::Geometry { .. })
                    | SessionError::Pipeline(
                        E::ModelLoad { .. } | E::ModelContract { .. } | E::Setting { .. }
                    )
            ),
        }
    }
}

/// How a session is opened.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Replaces the board's camera with image files.
    pub source: Option<PathBuf>,
    /// Folder for results.jsonl and PNG snapshots; `None` writes no files.
    pub out: Option<PathBuf>,
    /// Replaces the board's thread count.
    pub threads: Option<usize>,
    /// Play the source in a loop whatever the board says (benchmarks of many frames).
    pub repeat: bool,
    /// Replaces the board's `pipelined` setting.
    pub pipelined: Option<bool>,
    /// Replaces the board's display (benchmarks: [`DisplaySpec::Memory`] or [`DisplaySpec::None`]).
    pub display: Option<DisplaySpec>,
    /// Besides the display, a PNG of what it shows every N frames, in OUT/frames/ (with a "png"
    /// display, N replaces its `every`).
    pub snapshots: Option<usize>,
    /// Set by SIGINT/SIGTERM (or a test): sources and waits give up promptly when it is set.
    pub stop: StopFlag,
}

/// What [`Session::step`] did.
#[derive(Debug)]
pub enum Step {
    /// A frame went through; its result is [`Session::scene`].
    Frame,
    /// A frame was captured and is still being related (pipelined); nothing finished yet.
    Pending,
    /// The source gave an unreadable frame, skipped.
    Skipped(SourceError),
    /// The camera is gone; "camera lost" is on the display and the source reconnects with
    /// back-off on the next steps.
    CameraLost(Lost),
    /// The source has no more frames.
    End,
}

/// Opens the board's camera, or the replay that `--source` asks for instead.
fn open_source(
    config: &BoardConfig,
    options: &SessionOptions,
) -> Result<Box<dyn FrameSource>, SessionError> {
    if let Some(path) = &options.source {
        return Ok(Box::new(ReplaySource::open(path, options.repeat)?));
    }
    let stop = options.stop.clone();
    Ok(match &config.camera {
        CameraSpec::Replay { path, repeat } => {
            Box::new(ReplaySource::open(path, *repeat || options.repeat)?)
        }
        CameraSpec::Pipe(settings) => Box::new(PipeSource::open(settings, stop)?),
        #[cfg(feature = "v4l2")]
        CameraSpec::V4l2(settings) => Box::new(V4l2Source::open(settings, stop)?),
    })
}

/// Frames from a source through the pipeline into display and outputs.
pub struct Session {
    source: Box<dyn FrameSource>,
    pipeline: Pipeline,
    display: Display,
    /// `--snapshots`: PNGs of what a board display shows.
    snapshots: Option<PngSnapshots>,
    results: Option<JsonLines>,
    /// `[mqtt]`: each frame published to the broker.
    mqtt: Option<Publisher>,
    weights: String,
    /// File name of the relation model, for the JSON output.
    relation_model: String,
}

impl Session {
    /// Opens the source, loads the models, opens the display and creates the outputs for `config`.
    pub fn open(config: &BoardConfig, options: &SessionOptions) -> Result<Self, SessionError> {
        let source = open_source(config, options)?;
        let mut settings = config.pipeline_settings();
        if let Some(threads) = options.threads {
            settings.threads = threads;
        }
        if let Some(pipelined) = options.pipelined {
            settings.pipelined = pipelined;
        }
        let pipeline = Pipeline::load_with_fallback(
            &config.detector.model,
            &config.relation.model,
            config.relation.fallback_model.as_deref(),
            settings,
        )?;
        let out = options.out.as_deref();
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)
                .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        }
        let results = out
            .map(|dir| JsonLines::create(&dir.join("results.jsonl")))
            .transpose()?;
        let frames = out.map(|dir| dir.join("frames"));
        let mut spec = options
            .display
            .clone()
            .unwrap_or_else(|| config.display.clone());
        if let (DisplaySpec::Png { every }, Some(n)) = (&mut spec, options.snapshots) {
            *every = n;
        }
        let display = Display::open(&spec, frames.as_deref())?;
        log::debug!("display opened: {}", display.describe());
        let snapshots = match (options.snapshots, &frames) {
            (Some(every), Some(dir)) if display.png().is_none() => {
                Some(PngSnapshots::create(dir, every, display.resolution())?)
            }
            _ => None,
        };
        let mqtt = config.mqtt.as_ref().map(Publisher::start).transpose()?;
        let weights = pipeline.relation().weights().to_owned();
        let relation_model = pipeline.relation().file_name();
        Ok(Session {
            source,
            pipeline,
            display,
            snapshots,
            results,
            mqtt,
            weights,
            relation_model,
        })
    }

    /// The size and format the camera delivers, for cameras that negotiate one.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.source.negotiated()
    }

    /// What was drawn last (the annotated frame or the "camera lost" screen) on an in-memory
    /// display.
    pub fn canvas(&self) -> Option<&RgbImage> {
        match &self.display {
            Display::Memory(canvas) => Some(canvas),
            _ => None,
        }
    }

    /// The pipeline (models, last scene, profile).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The pipeline, mutable (to profile its models after a run).
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// Forgets the latency profile so far (after warm-up frames).
    pub fn reset_profile(&mut self) {
        self.pipeline.reset_profile();
    }

    /// The last frame's result.
    pub fn scene(&self) -> &Scene {
        self.pipeline.scene()
    }

    /// Where PNG snapshots go, when they are written.
    pub fn snapshot_dir(&self) -> Option<&Path> {
        self.display
            .png()
            .or(self.snapshots.as_ref())
            .map(PngSnapshots::dir)
    }

    /// The MQTT publisher (its [`Publisher::dropped`] count), when the board has `[mqtt]`.
    pub fn mqtt(&self) -> Option<&Publisher> {
        self.mqtt.as_ref()
    }

    /// The display frames are drawn on.
    pub fn display(&self) -> &Display {
        &self.display
    }

    /// Shows a full-screen status message such as "camera lost" on the display in place of
    /// frames; the next finished frame replaces it.
    pub fn show_status(&mut self, text: &str) -> Result<(), SessionError> {
        Ok(self.display.show_status(text)?)
    }

    /// Runs one frame: capture, pipeline, drawing, outputs. When pipelined, the frame finished (drawn
    /// and written) is the one before the frame captured, and the last one is finished at the end.
    pub fn step(&mut self) -> Result<Step, SessionError> {
        let start = Instant::now();
        let captured = match self.source.next_frame() {
            Ok(Some(c)) => c,
            Ok(None) => {
                return if self.pipeline.flush()? {
                    self.complete()?;
                    Ok(Step::Frame)
                } else {
                    Ok(Step::End)
                };
            }
            Err(e @ SourceError::Corrupt { .. }) => return Ok(Step::Skipped(e)),
            Err(SourceError::Lost(lost)) => {
                self.show_camera_lost()?;
                return Ok(Step::CameraLost(lost));
            }
            Err(e) => return Err(e.into()),
        };
        let decode_us = micros_since(start);
        if self
            .pipeline
            .step(&captured.frame, captured.name, decode_us)?
        {
            self.complete()?;
            Ok(Step::Frame)
        } else {
            Ok(Step::Pending)
        }
    }

    /// Puts "camera lost" on the display; an in-memory display that has drawn nothing yet takes
    /// the camera's size (or [`STATUS_SIZE`]).
    fn show_camera_lost(&mut self) -> Result<(), SessionError> {
        if let Display::Memory(canvas) = &mut self.display {
            if canvas.width == 0 || canvas.height == 0 {
                let (w, h) = self
                    .source
                    .negotiated()
                    .map_or(STATUS_SIZE, |n| (n.width as usize, n.height as usize));
                canvas.set_size(w, h);
            }
        }
        self.show_status("camera lost")
    }

    /// Draws the pipeline's finished frame on the display and writes it.
    fn complete(&mut self) -> Result<(), SessionError> {
        // Frames finish in capture order, so the scene's number is also the snapshot's. The
        // snapshot is drawn first so the frame's render time is the display's.
        let scene = self.pipeline.scene();
        let (n, width, height) = (scene.frame, scene.width, scene.height);
        if let Some(snapshots) = &mut self.snapshots {
            if snapshots.begin_frame(n, width, height) {
                let Ok(()) = self.pipeline.render(snapshots);
                snapshots.present()?;
            }
        }
        if self.display.begin_frame(n, width, height) {
            let Ok(()) = self.pipeline.render(&mut self.display);
            self.display.present()?;
        }
        let scene = self.pipeline.finish();
        if let Some(results) = &mut self.results {
            results.write(scene, &self.weights, &self.relation_model)?;
        }
        if let Some(mqtt) = &mut self.mqtt {
            mqtt.publish(scene, &self.weights, &self.relation_model)?;
        }
        Ok(())
    }
}
