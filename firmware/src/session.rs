//! A session: frames from the board's camera (or a replacement source) through the pipeline into
//! the display and the outputs, one frame per [`Session::step`]. [`Session::reload`] applies a
//! re-read board config between frames (SIGHUP): each part is rebuilt only when its section
//! changed, and new models load on a thread of their own while the old ones keep running.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use kith_runtime::image::RgbImage;
use kith_runtime::profile::micros_since;
use kith_runtime::{DetectorSettings, Pipeline, Scene};

use crate::camera::pipe::PipeSource;
use crate::camera::replay::ReplaySource;
use crate::camera::spec::CameraSpec;
#[cfg(feature = "v4l2")]
use crate::camera::v4l2::V4l2Source;
use crate::camera::{FrameSource, Lost, Negotiated, SourceError};
use crate::config::{BoardConfig, ConfigError, DetectorSpec};
use crate::display::png::PngSnapshots;
use crate::display::spec::DisplaySpec;
use crate::display::{Display, DisplayError};
use crate::files::Fsync;
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
                    | SessionError::Source(SourceError::Unusable { .. })
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

/// What a reload changed, in the words of the log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// The parts applied at once ("camera", "display", "detector thresholds").
    pub applied: Vec<&'static str>,
    /// New models are loading on the side; they replace the running ones when they load and pass
    /// their contract check.
    pub loading_models: bool,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<&str> = self.applied.clone();
        if self.loading_models {
            parts.push("models (loading on the side)");
        }
        match parts.is_empty() {
            true => write!(f, "nothing changed"),
            false => write!(f, "applied: {}", parts.join(", ")),
        }
    }
}

/// A model file as last seen: a file replaced in place under the same name counts as a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    path: PathBuf,
    len: Option<u64>,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> Self {
        let meta = std::fs::metadata(path).ok();
        FileStamp {
            path: path.to_owned(),
            len: meta.as_ref().map(|m| m.len()),
            modified: meta.and_then(|m| m.modified().ok()),
        }
    }
}

/// Everything that makes the models: a change in any of it loads new ones.
#[derive(Debug, Clone, PartialEq)]
struct ModelsKey {
    files: Vec<FileStamp>,
    threads: usize,
    pipelined: bool,
    detector: DetectorSettings,
}

impl ModelsKey {
    /// The key of `config` with the session's overrides, leaving out what changes on the running
    /// pipeline: the detector's thresholds, tracking, smoothing and the overlay.
    fn of(config: &BoardConfig, options: &SessionOptions) -> Self {
        let mut settings = pipeline_settings(config, options);
        settings.detector.score_threshold = 0.0;
        settings.detector.nms_iou = 0.0;
        let relation = &config.relation;
        let files = [Some(&config.detector.model), Some(&relation.model)]
            .into_iter()
            .chain([relation.fallback_model.as_ref()])
            .flatten()
            .map(|p| FileStamp::of(p))
            .collect();
        ModelsKey {
            files,
            threads: settings.threads,
            pipelined: settings.pipelined,
            detector: settings.detector,
        }
    }
}

/// Models loading on their own thread for a reload.
struct Loading {
    key: ModelsKey,
    thread: JoinHandle<Result<Pipeline, kith_runtime::Error>>,
}

/// The pipeline settings of `config` with the session's overrides.
fn pipeline_settings(
    config: &BoardConfig,
    options: &SessionOptions,
) -> kith_runtime::PipelineSettings {
    let mut settings = config.pipeline_settings();
    if let Some(threads) = options.threads {
        settings.threads = threads;
    }
    if let Some(pipelined) = options.pipelined {
        settings.pipelined = pipelined;
    }
    settings
}

/// Loads the models `config` names (with the fallback rule).
fn load_pipeline(
    config: &BoardConfig,
    options: &SessionOptions,
) -> Result<Pipeline, kith_runtime::Error> {
    Pipeline::load_with_fallback(
        &config.detector.model,
        &config.relation.model,
        config.relation.fallback_model.as_deref(),
        pipeline_settings(config, options),
    )
}

/// The display a session draws on and its `--snapshots`, opened from `spec` (or the options'
/// replacement).
fn open_display(
    spec: &DisplaySpec,
    fsync: Fsync,
    options: &SessionOptions,
) -> Result<(Display, Option<PngSnapshots>), SessionError> {
    let frames = options.out.as_deref().map(|dir| dir.join("frames"));
    let mut spec = options.display.clone().unwrap_or_else(|| spec.clone());
    if let (DisplaySpec::Png { every }, Some(n)) = (&mut spec, options.snapshots) {
        *every = n;
    }
    let display = Display::open(&spec, frames.as_deref(), fsync)?;
    log::debug!("display opened: {}", display.describe());
    let snapshots = match (options.snapshots, &frames) {
        (Some(every), Some(dir)) if display.png().is_none() => Some(PngSnapshots::create(
            dir,
            every,
            display.resolution(),
            fsync,
        )?),
        _ => None,
    };
    Ok((display, snapshots))
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
    /// The board config running now (models: the ones that run, not those still loading).
    config: BoardConfig,
    options: SessionOptions,
    models: ModelsKey,
    loading: Option<Loading>,
}

impl Session {
    /// Opens the source, loads the models, opens the display and creates the outputs for `config`.
    pub fn open(config: &BoardConfig, options: &SessionOptions) -> Result<Self, SessionError> {
        let source = open_source(config, options)?;
        let mut pipeline = load_pipeline(config, options)?;
        pipeline.set_interrupt(options.stop.shared());
        let out = options.out.as_deref();
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)
                .map_err(|e| OutputError::new(dir, format!("cannot create: {e}")))?;
        }
        let results = out
            .map(|dir| JsonLines::open(&dir.join("results.jsonl"), config.output))
            .transpose()?;
        let (display, snapshots) = open_display(&config.display, config.output.fsync, options)?;
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
            config: config.clone(),
            options: options.clone(),
            models: ModelsKey::of(config, options),
            loading: None,
        })
    }

    /// The board config running now.
    pub fn config(&self) -> &BoardConfig {
        &self.config
    }

    /// Applies a re-read board config from the next frame: thresholds at once, a camera or display
    /// whose section changed reopened (the camera stays open otherwise), new model files or model
    /// settings loaded on a thread of their own and swapped in by a later [`Session::step`] once
    /// they load and pass their contract check. On an error nothing is applied and the running
    /// config stays.
    pub fn reload(&mut self, config: BoardConfig) -> Result<Reloaded, SessionError> {
        let mut reloaded = Reloaded::default();
        let camera = self.options.source.is_none() && config.camera != self.config.camera;
        // Opened before anything changes, so an error leaves the running session as it is.
        let source = camera
            .then(|| open_source(&config, &self.options))
            .transpose()?;
        let display = (self.options.display.is_none() && config.display != self.config.display)
            .then(|| open_display(&config.display, config.output.fsync, &self.options))
            .transpose()?;
        let mqtt = (config.mqtt != self.config.mqtt)
            .then(|| config.mqtt.as_ref().map(Publisher::start).transpose())
            .transpose()?;
        let (new, old) = (config.detector.settings, self.config.detector.settings);
        let thresholds = (new.score_threshold, new.nms_iou) != (old.score_threshold, old.nms_iou);
        if thresholds {
            self.pipeline
                .detector_mut()
                .set_thresholds(new.score_threshold, new.nms_iou)?;
            reloaded.applied.push("detector thresholds");
        }
        if let Some(source) = source {
            self.source = source;
            reloaded.applied.push("camera");
        }
        if let Some((display, snapshots)) = display {
            self.display = display;
            self.snapshots = snapshots;
            reloaded.applied.push("display");
        }
        if config.overlay != self.config.overlay {
            self.pipeline.set_overlay(config.overlay);
            reloaded.applied.push("overlay");
        }
        if config.tracking != self.config.tracking {
            let tracking = &config.tracking;
            self.pipeline
                .set_tracking(tracking.tracker, tracking.smoothing);
            reloaded.applied.push("tracking");
        }
        if let Some(mqtt) = mqtt {
            // The old publisher says `offline` and goes; the new one connects on its own threads.
            self.mqtt = mqtt;
            reloaded.applied.push("mqtt");
        }
        let key = ModelsKey::of(&config, &self.options);
        if key == self.models {
            self.loading = None;
        } else if self.loading.as_ref().is_none_or(|l| l.key != key) {
            let (load, options) = (config.clone(), self.options.clone());
            let thread = std::thread::Builder::new()
                .name("kith-reload".into())
                .spawn(move || load_pipeline(&load, &options))
                .map_err(|e| kith_runtime::Error::Setting {
                    field: "relation.model",
                    detail: format!("cannot start the model loading thread: {e}"),
                })?;
            self.loading = Some(Loading { key, thread });
        }
        reloaded.loading_models = self.loading.is_some();
        // The models' sections stay those of the running models until new ones are swapped in.
        let (detector, relation) = (self.config.detector.clone(), self.config.relation.clone());
        let (threads, pipelined) = (self.config.threads, self.config.pipelined);
        self.config = BoardConfig {
            detector: DetectorSpec {
                settings: DetectorSettings {
                    score_threshold: new.score_threshold,
                    nms_iou: new.nms_iou,
                    ..detector.settings
                },
                ..detector
            },
            relation,
            threads,
            pipelined,
            ..config
        };
        Ok(reloaded)
    }

    /// Swaps in models loaded for a reload once their thread is done: the running pipeline's last
    /// frame is finished first (returns `true` then; the swap comes on the next call).
    fn swap_loaded_models(&mut self) -> Result<bool, SessionError> {
        if !self
            .loading
            .as_ref()
            .is_some_and(|l| l.thread.is_finished())
        {
            return Ok(false);
        }
        if self.pipeline.flush()? {
            self.complete()?;
            return Ok(true);
        }
        let Some(loading) = self.loading.take() else {
            return Ok(false);
        };
        let loaded = loading.thread.join();
        match loaded {
            Ok(Ok(mut pipeline)) => {
                let settings = self.config.detector.settings;
                pipeline
                    .detector_mut()
                    .set_thresholds(settings.score_threshold, settings.nms_iou)?;
                pipeline.continue_from(&self.pipeline);
                self.pipeline = pipeline;
                self.weights = self.pipeline.relation().weights().to_owned();
                self.relation_model = self.pipeline.relation().file_name();
                self.models = loading.key;
                log::info!(
                    "reload: now running {} and {}",
                    self.pipeline.detector().model().file_name(),
                    self.relation_model
                );
            }
            Ok(Err(e)) => log::error!("reload: {e}; keeping the running models"),
            Err(_) => log::error!("reload: loading the models panicked; keeping the running ones"),
        }
        Ok(false)
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
        if self.swap_loaded_models()? {
            return Ok(Step::Frame);
        }
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

    /// Draws the pipeline's finished frame on the display and writes it. After a stop request the
    /// frame is still written but no longer drawn: drawing a large screen is the longest step of
    /// a frame on a small board, and kith stops within a second.
    fn complete(&mut self) -> Result<(), SessionError> {
        // Frames finish in capture order, so the scene's number is also the snapshot's. The
        // snapshot is drawn first so the frame's render time is the display's.
        let scene = self.pipeline.scene();
        let (n, width, height) = (scene.frame, scene.width, scene.height);
        let stop = &self.options.stop;
        if let Some(snapshots) = self.snapshots.as_mut().filter(|_| !stop.is_set()) {
            if snapshots.begin_frame(n, width, height) {
                let Ok(()) = self.pipeline.render(snapshots);
                snapshots.present()?;
            }
        }
        if !stop.is_set() && self.display.begin_frame(n, width, height) {
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
