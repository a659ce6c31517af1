//! A session: frames from the board's camera (or a replacement source) through the pipeline into
//! the display and the outputs, one frame per [`Session::step`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use kith_runtime::canvas::RgbCanvas;
use kith_runtime::overlay;
use kith_runtime::profile::micros_since;
use kith_runtime::{Pipeline, Scene};

use crate::camera::pipe::PipeSource;
use crate::camera::replay::ReplaySource;
#[cfg(feature = "v4l2")]
use crate::camera::v4l2::V4l2Source;
use crate::camera::{FrameSource, Lost, Negotiated, SourceError};
use crate::config::{BoardConfig, CameraSpec, ConfigError, DisplayConfig};
use crate::display::png::PngSnapshots;
use crate::output::JsonLines;
use crate::service::StopFlag;
use crate::OutputError;

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
}

impl SessionError {
    /// Whether the error is in the board config or its model files (exit status 2).
    pub fn is_config(&self) -> bool {
        use kith_runtime::Error as E;
        matches!(
            self,
            SessionError::Config(_)
                | SessionError::Pipeline(
                    E::ModelLoad { .. } | E::ModelContract { .. } | E::Setting { .. }
                )
        )
    }
}

/// Where frames are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drawing {
    /// As the board config says (PNG snapshots or none).
    Board,
    /// Every frame onto an in-memory canvas, written nowhere (benchmarks).
    Memory,
    /// No drawing at all.
    Off,
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
    pub drawing: Drawing,
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
    let spec = config.camera().map_err(|detail| ConfigError {
        file: config.file.clone(),
        detail,
    })?;
    let stop = options.stop.clone();
    Ok(match spec {
        CameraSpec::Replay { path, repeat } => {
            Box::new(ReplaySource::open(&path, repeat || options.repeat)?)
        }
        CameraSpec::Pipe(settings) => Box::new(PipeSource::open(&settings, stop)?),
        #[cfg(feature = "v4l2")]
        CameraSpec::V4l2(settings) => Box::new(V4l2Source::open(&settings, stop)?),
        #[cfg(not(feature = "v4l2"))]
        CameraSpec::V4l2(_) => {
            return Err(ConfigError {
                file: config.file.clone(),
                detail: crate::config::NO_V4L2.into(),
            }
            .into())
        }
    })
}

/// Frames from a source through the pipeline into display and outputs.
pub struct Session {
    source: Box<dyn FrameSource>,
    pipeline: Pipeline,
    canvas: Option<RgbCanvas>,
    snapshots: Option<PngSnapshots>,
    results: Option<JsonLines>,
    weights: String,
}

impl Session {
    /// Opens the source, loads the models and creates the outputs for `config`.
    pub fn open(config: &BoardConfig, options: &SessionOptions) -> Result<Self, SessionError> {
        let source = open_source(config, options)?;
        let mut settings = config.pipeline_settings();
        if let Some(threads) = options.threads {
            settings.threads = threads;
        }
        if let Some(pipelined) = options.pipelined {
            settings.pipelined = pipelined;
        }
        let pipeline = Pipeline::load(&config.detector.model, &config.relation.model, settings)?;
        let out = options.out.as_deref();
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)
                .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        }
        let results = out
            .map(|dir| JsonLines::create(&dir.join("results.jsonl")))
            .transpose()?;
        let snapshots = match (options.drawing, &config.display, out) {
            (Drawing::Board, DisplayConfig::Png { every }, Some(dir)) => {
                Some(PngSnapshots::create(&dir.join("frames"), *every)?)
            }
            _ => None,
        };
        let canvas = match options.drawing {
            Drawing::Memory => Some(RgbCanvas::default()),
            Drawing::Board if snapshots.is_some() => Some(RgbCanvas::default()),
            _ => None,
        };
        let weights = pipeline.relation().weights().to_owned();
        Ok(Session {
            source,
            pipeline,
            canvas,
            snapshots,
            results,
            weights,
        })
    }

    /// The size and format the camera delivers, for cameras that negotiate one.
    pub fn negotiated(&self) -> Option<Negotiated> {
        self.source.negotiated()
    }

    /// What was drawn last (the annotated frame or the "camera lost" screen), when drawing.
    pub fn canvas(&self) -> Option<&RgbCanvas> {
        self.canvas.as_ref()
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
    pub fn snapshot_dir(&self, out: &Path) -> Option<PathBuf> {
        self.snapshots.as_ref().map(|_| out.join("frames"))
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
                self.show_camera_lost();
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

    /// Puts "camera lost" on the display, at the size of the last frame (or the camera's).
    fn show_camera_lost(&mut self) {
        let Some(canvas) = self.canvas.as_mut() else {
            return;
        };
        if canvas.width() == 0 || canvas.height() == 0 {
            let (w, h) = self
                .source
                .negotiated()
                .map_or((640, 480), |n| (n.width as usize, n.height as usize));
            canvas.resize(w, h);
        }
        let Ok(()) = overlay::draw_status(canvas, "camera lost");
    }

    /// Draws and writes the pipeline's finished frame.
    fn complete(&mut self) -> Result<(), SessionError> {
        // Frames finish in capture order, so the scene's number is also the snapshot's.
        let n = self.pipeline.scene().frame;
        let snapshot = self.snapshots.as_ref().is_some_and(|s| s.wants(n));
        if let Some(canvas) = self
            .canvas
            .as_mut()
            .filter(|_| snapshot || self.snapshots.is_none())
        {
            let scene = self.pipeline.scene();
            canvas.resize(scene.width, scene.height);
            let Ok(()) = self.pipeline.render(canvas);
        }
        let scene = self.pipeline.finish();
        if let Some(results) = &mut self.results {
            results.write(scene, &self.weights)?;
        }
        if let (Some(snapshots), Some(canvas)) = (&self.snapshots, &self.canvas) {
            if snapshot {
                snapshots.write(n, canvas)?;
            }
        }
        Ok(())
    }
}
