//! The pipeline: owns the detector, the relation model, their buffers and the finished [`Scene`],
//! and runs frames through them, either one after the other on the caller's thread or pipelined:
//! the relation model on a worker thread relates frame t while the caller detects frame t+1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;

use crate::alloc_count::AllocCounts;
use crate::detect::{DetectorSettings, PersonDetector};
use crate::error::RunError;
use crate::image::{Frame, RgbImage};
use crate::limits::PREALLOCATED_FRAME;
use crate::model::ModelFile;
use crate::overlay::{self, OverlaySettings};
use crate::profile::{micros_since, Profile};
use crate::relate::RelationModel;
use crate::relation_choice::{self, Choice};
use crate::scene::Scene;
use crate::smooth::{Smoother, SmoothingSettings};
use crate::track::{Tracker, TrackerSettings};
use crate::{Error, Result};

/// How the pipeline is built, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineSettings {
    /// Threads tract may use for each model's matrix products.
    pub threads: usize,
    pub detector: DetectorSettings,
    /// Relate frame t on a worker thread while frame t+1 is detected. Results then come one frame
    /// later, and frames/s is no longer 1 / total.
    pub pipelined: bool,
    /// How persons keep their track ids across frames.
    pub tracker: TrackerSettings,
    /// How the relation labels of tracked pairs are smoothed.
    pub smoothing: SmoothingSettings,
    /// Privacy mode and line threshold of the overlay [`Pipeline::render`] draws.
    pub overlay: OverlaySettings,
}

/// A frame on its way through the pipeline: its pixels, what was found in it, and when it came.
#[derive(Debug, Default)]
struct FrameJob {
    rgb: RgbImage,
    scene: Scene,
    arrived: Option<Instant>,
    /// Once privacy mode has hidden the person boxes of `rgb`: the microseconds it took.
    hidden_us: Option<u64>,
}

/// What the relation model is and where it runs.
#[derive(Debug, Clone)]
pub struct RelationInfo {
    path: PathBuf,
    weights: String,
    untrained: bool,
    kernels: Vec<String>,
    narrowed_products: usize,
    choice: Option<Choice>,
}

impl RelationInfo {
    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model file's name.
    pub fn file_name(&self) -> String {
        crate::model::file_name_of(&self.path)
    }

    /// What the weights are: "untrained-demo" or a trained model's name/version.
    pub fn weights(&self) -> &str {
        &self.weights
    }

    /// How many of its quantised products run with weights narrowed to 7 bits on this CPU
    /// ([`crate::narrow_weights`]).
    pub fn narrowed_products(&self) -> usize {
        self.narrowed_products
    }

    /// Whether the weights were never trained on PISC (labels are then not recognition).
    pub fn is_untrained(&self) -> bool {
        self.untrained
    }

    /// The tract-linalg matmul kernels the relation model runs on ([`ModelFile::matmul_kernels`]).
    pub fn matmul_kernels(&self) -> &[String] {
        &self.kernels
    }

    /// With a fallback file: which of the two runs and the start-up timings that decided it.
    pub fn choice(&self) -> Option<&Choice> {
        self.choice.as_ref()
    }
}

/// The relation model on a worker thread, with the channels jobs travel through.
#[derive(Debug)]
struct Worker {
    jobs: SyncSender<FrameJob>,
    done: Receiver<(FrameJob, Result<()>)>,
    thread: JoinHandle<RelationModel>,
    in_flight: bool,
}

#[derive(Debug)]
enum Relate {
    Here(Box<RelationModel>),
    Worker(Worker),
    /// Only while switching between the two.
    Moving,
}

/// Frames in, [`Scene`]s out. Build it once; every buffer is reused from frame to frame.
#[derive(Debug)]
pub struct Pipeline {
    detector: PersonDetector,
    relate: Relate,
    info: RelationInfo,
    spare: Option<FrameJob>,
    finished: Option<FrameJob>,
    /// What [`Pipeline::scene`] shows before any frame is finished.
    empty: Scene,
    profile: Profile,
    next_frame: u64,
    frame_allocs: AllocCounts,
    tracker: Tracker,
    smoother: Smoother,
    /// When the last smoothed frame came.
    last_smoothed: Option<Instant>,
    overlay: OverlaySettings,
    /// A stop request looked at between the two models ([`Pipeline::set_interrupt`]).
    interrupt: Option<Arc<AtomicBool>>,
}

/// Relates the persons of a job (the "relate" stage, plus the relation model's share of
/// "preprocess"). Fewer than two persons need no model run.
fn relate_job(relation: &mut RelationModel, job: &mut FrameJob) -> Result<()> {
    let scene = &mut job.scene;
    scene.relations.clear();
    if scene.persons.len() < 2 {
        return Ok(());
    }
    let frame = job.rgb.as_frame();
    let t = Instant::now();
    relation.prepare_image(&frame)?;
    scene.timings.preprocess += micros_since(t);
    let t = Instant::now();
    relation.relate(
        &scene.persons,
        frame.width,
        frame.height,
        &mut scene.relations,
    )?;
    scene.timings.relate = micros_since(t);
    Ok(())
}

fn spawn_worker(mut relation: RelationModel) -> Result<Worker> {
    let (jobs, jobs_rx) = sync_channel::<FrameJob>(1);
    let (done_tx, done) = sync_channel::<(FrameJob, Result<()>)>(1);
    let thread = std::thread::Builder::new()
        .name("kith-relate".into())
        .spawn(move || {
            for mut job in jobs_rx {
                let result = relate_job(&mut relation, &mut job);
                if done_tx.send((job, result)).is_err() {
                    break;
                }
            }
            relation
        })
        .map_err(|e| Error::Setting {
            field: "pipelined",
            detail: format!("cannot start the relation thread: {e}"),
        })?;
    Ok(Worker {
        jobs,
        done,
        thread,
        in_flight: false,
    })
}

impl Pipeline {
    /// Loads both models.
    pub fn load(detector: &Path, relation: &Path, settings: PipelineSettings) -> Result<Self> {
        let threads = settings.threads.max(1);
        let detector = PersonDetector::load(detector, threads, settings.detector)?;
        let relation = RelationModel::load(relation, threads)?;
        Self::new(detector, relation, settings)
    }

    /// Loads both models as [`Pipeline::load`] does; with a `fallback` relation model file, loads it
    /// too and keeps whichever of the two relates faster on this CPU ([`relation_choice`]).
    pub fn load_with_fallback(
        detector: &Path,
        relation: &Path,
        fallback: Option<&Path>,
        settings: PipelineSettings,
    ) -> Result<Self> {
        let Some(fallback) = fallback else {
            return Self::load(detector, relation, settings);
        };
        let threads = settings.threads.max(1);
        let detector = PersonDetector::load(detector, threads, settings.detector)?;
        let relation = RelationModel::load(relation, threads)?;
        let fallback = relation_choice::load_fallback(fallback, threads)?;
        let (relation, choice) = relation_choice::keep_faster(relation, fallback)?;
        let mut pipeline = Self::new(detector, relation, settings)?;
        pipeline.info.choice = Some(choice);
        Ok(pipeline)
    }

    /// Builds a pipeline from loaded models with `settings` (its `threads` and `detector` are the
    /// models' own and not used here).
    pub fn new(
        detector: PersonDetector,
        relation: RelationModel,
        settings: PipelineSettings,
    ) -> Result<Self> {
        let info = RelationInfo {
            path: relation.model().path().to_owned(),
            weights: relation.weights().to_owned(),
            untrained: relation.is_untrained(),
            kernels: relation.model().matmul_kernels(),
            narrowed_products: relation.model().narrowed_products(),
            choice: None,
        };
        let relate = if settings.pipelined {
            Relate::Worker(spawn_worker(relation)?)
        } else {
            Relate::Here(Box::new(relation))
        };
        let job = || FrameJob {
            rgb: RgbImage::with_capacity(PREALLOCATED_FRAME.0, PREALLOCATED_FRAME.1),
            scene: Scene::default(),
            arrived: None,
            hidden_us: None,
        };
        Ok(Pipeline {
            detector,
            relate,
            info,
            spare: Some(job()),
            finished: Some(job()),
            empty: Scene::default(),
            profile: Profile::default(),
            next_frame: 0,
            frame_allocs: AllocCounts::default(),
            tracker: Tracker::new(settings.tracker),
            smoother: Smoother::new(settings.smoothing, settings.tracker.max_missed),
            last_smoothed: None,
            overlay: settings.overlay,
            interrupt: None,
        })
    }

    /// The person detector.
    pub fn detector(&self) -> &PersonDetector {
        &self.detector
    }

    /// The person detector, mutable (to change its thresholds between frames).
    pub fn detector_mut(&mut self) -> &mut PersonDetector {
        &mut self.detector
    }

    /// A flag that, once set, makes [`Pipeline::step`] return after the detector without running
    /// the relation model, so a stop request waits for one model run, not a whole frame.
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Privacy mode and line threshold from the next frame drawn on (a reload's `privacy` and
    /// `[overlay]`).
    pub fn set_overlay(&mut self, settings: OverlaySettings) {
        self.overlay = settings;
    }

    /// Tracking and smoothing settings from the next frame (a reload's `[tracking]`): the tracks
    /// and smoothed scores start afresh; new track ids go on from the last one.
    pub fn set_tracking(&mut self, tracker: TrackerSettings, smoothing: SmoothingSettings) {
        self.tracker.restart(tracker);
        self.smoother = Smoother::new(smoothing, tracker.max_missed);
        self.last_smoothed = None;
    }

    /// Takes over from `previous` (a pipeline replaced by one with other models): frame numbers
    /// go on from its last one, its tracks, smoothed scores, overlay settings, latency profile and
    /// stop flag are kept.
    pub fn continue_from(&mut self, previous: &Pipeline) {
        self.next_frame = previous.next_frame;
        self.profile = previous.profile.clone();
        self.interrupt = previous.interrupt.clone();
        self.tracker = previous.tracker.clone();
        self.smoother = previous.smoother.clone();
        self.last_smoothed = previous.last_smoothed;
        self.overlay = previous.overlay;
    }

    /// The relation model's file and weights.
    pub fn relation(&self) -> &RelationInfo {
        &self.info
    }

    /// Whether the relation model runs on its own thread.
    pub fn is_pipelined(&self) -> bool {
        matches!(self.relate, Relate::Worker(_))
    }

    /// Both models, for profiling them outside the frame loop: (detector, relation). A pipelined
    /// relation model is brought back to this thread first (after its last frame is finished).
    pub fn models_mut(&mut self) -> Result<(&mut ModelFile, &mut ModelFile)> {
        self.flush()?;
        if let Relate::Worker(_) = self.relate {
            let Relate::Worker(worker) = std::mem::replace(&mut self.relate, Relate::Moving) else {
                unreachable!("matched just above");
            };
            drop(worker.jobs);
            let relation = worker
                .thread
                .join()
                .map_err(|_| Error::run(self.info.path.display(), RunError::WorkerPanicked))?;
            self.relate = Relate::Here(Box::new(relation));
        }
        match &mut self.relate {
            Relate::Here(relation) => Ok((self.detector.model_mut(), relation.model_mut())),
            _ => unreachable!("the relation model was brought back above"),
        }
    }

    /// The finished frame's result.
    pub fn scene(&self) -> &Scene {
        self.finished.as_ref().map_or(&self.empty, |j| &j.scene)
    }

    /// Latency distributions over the frames finished so far.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Forgets the frames recorded so far (e.g. warm-up frames before a measurement).
    pub fn reset_profile(&mut self) {
        self.profile = Profile::default();
    }

    /// Detects the persons of `frame` and relates every pair. `source` names the frame in the
    /// output; `decode_us` is the time the caller spent capturing and decoding it. Returns whether a
    /// frame is finished ([`Pipeline::scene`]; draw it with [`Pipeline::render`], then call
    /// [`Pipeline::finish`]): always this frame, or when pipelined, the frame before it (none for the
    /// first frame, and none when the interrupt flag was set during detection).
    pub fn step(&mut self, frame: &Frame, source: &str, decode_us: u64) -> Result<bool> {
        self.frame_allocs = AllocCounts::now();
        let mut job = match self.spare.take().or_else(|| self.finished.take()) {
            Some(job) => job,
            None => {
                return Err(Error::Frame(
                    "step called while a frame is still being related".into(),
                ))
            }
        };
        if let Err(e) = self.detect_job(frame, source, decode_us, &mut job) {
            self.spare = Some(job);
            return Err(e);
        }
        if self
            .interrupt
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
        {
            self.spare = Some(job);
            return Ok(false);
        }
        match &mut self.relate {
            Relate::Here(relation) => {
                let result = relate_job(relation, &mut job);
                if result.is_ok() {
                    self.smooth(&mut job);
                }
                self.finished = Some(job);
                result.map(|()| true)
            }
            Relate::Worker(worker) => {
                let previous = if worker.in_flight {
                    Some(receive(worker)?)
                } else {
                    None
                };
                worker.jobs.send(job).map_err(|_| worker_gone(&self.info))?;
                worker.in_flight = true;
                match previous {
                    Some((mut done, result)) => {
                        if result.is_ok() {
                            self.smooth(&mut done);
                        }
                        self.finished = Some(done);
                        result.map(|()| true)
                    }
                    None => Ok(false),
                }
            }
            Relate::Moving => Err(worker_gone(&self.info)),
        }
    }

    /// The first half of a frame: copy into the job, preprocess, detect and track.
    fn detect_job(
        &mut self,
        frame: &Frame,
        source: &str,
        decode_us: u64,
        job: &mut FrameJob,
    ) -> Result<()> {
        let start = Instant::now();
        job.arrived = Some(start);
        job.rgb.convert_from(frame)?;
        job.hidden_us = None;
        let rgb = job.rgb.as_frame();
        self.detector.prepare(&rgb)?;
        let scene = &mut job.scene;
        scene.frame = self.next_frame;
        self.next_frame += 1;
        scene.set_source(source);
        scene.width = rgb.width;
        scene.height = rgb.height;
        scene.timings = Default::default();
        scene.timings.decode = decode_us;
        scene.timings.preprocess = micros_since(start);
        let t = Instant::now();
        self.detector
            .detect(rgb.width, rgb.height, &mut scene.persons)?;
        self.tracker.update(&job.rgb, &mut scene.persons);
        scene.timings.detect = micros_since(t);
        Ok(())
    }

    /// After relate: smooths the job's relations over the frames before it (part of "relate").
    fn smooth(&mut self, job: &mut FrameJob) {
        let t = Instant::now();
        let dt = match (self.last_smoothed, job.arrived) {
            (Some(last), Some(now)) => now.saturating_duration_since(last).as_secs_f32(),
            _ => 0.0,
        };
        self.last_smoothed = job.arrived;
        let scene = &mut job.scene;
        self.smoother
            .update(&scene.persons, &mut scene.relations, scene.frame, dt);
        if !scene.relations.is_empty() {
            scene.timings.relate += micros_since(t);
        }
    }

    /// Waits for a frame still being related (pipelined, at the end of a stream). Returns whether a
    /// frame is finished.
    pub fn flush(&mut self) -> Result<bool> {
        if let Relate::Worker(worker) = &mut self.relate {
            if worker.in_flight {
                let (mut done, result) = receive(worker)?;
                if result.is_ok() {
                    self.smooth(&mut done);
                }
                if let Some(old) = self.finished.take() {
                    self.spare = Some(old);
                }
                self.finished = Some(done);
                return result.map(|()| true);
            }
        }
        Ok(false)
    }

    /// Draws the finished frame and its scene on `target` (the "render" stage), the person boxes
    /// hidden first in privacy mode (once per frame, however many targets it is drawn on; its time
    /// counts in every render).
    pub fn render<D>(&mut self, target: &mut D) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = Rgb888> + OriginDimensions,
    {
        let (untrained, settings) = (self.info.untrained, self.overlay);
        let Some(job) = self.finished.as_mut() else {
            return Ok(());
        };
        let t = Instant::now();
        let hidden_us = *job.hidden_us.get_or_insert_with(|| {
            settings.privacy.apply(&mut job.rgb, &job.scene.persons);
            micros_since(t)
        });
        let t = Instant::now();
        overlay::draw_frame(target, &job.rgb.as_frame())?;
        overlay::draw_scene(target, &job.scene, untrained, &settings)?;
        job.scene.timings.render = hidden_us + micros_since(t);
        Ok(())
    }

    /// Closes the finished frame: sums its stages into `total`, records it in the profile and
    /// returns it.
    pub fn finish(&mut self) -> &Scene {
        if let Some(job) = self.finished.as_mut() {
            let t = &mut job.scene.timings;
            t.total = t.decode + t.preprocess + t.detect + t.relate + t.render;
            let allocs = AllocCounts::now().since(&self.frame_allocs);
            self.profile.record(t, &allocs);
        }
        self.scene()
    }
}

fn worker_gone(info: &RelationInfo) -> Error {
    Error::run(info.path.display(), RunError::WorkerStopped)
}

fn receive(worker: &mut Worker) -> Result<(FrameJob, Result<()>)> {
    worker.in_flight = false;
    worker
        .done
        .recv()
        .map_err(|_| Error::run("relation model", RunError::WorkerStopped))
}
