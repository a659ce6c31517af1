//! The pipeline: owns the detector, the relation model, their buffers and the current [`Scene`],
//! and runs one frame through them.

use std::path::Path;
use std::time::Instant;

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;

use crate::alloc_count::AllocCounts;
use crate::detect::{DetectorSettings, PersonDetector};
use crate::image::{Frame, PixelFormat, RgbImage};
use crate::model::ModelFile;
use crate::overlay;
use crate::profile::{micros_since, Profile};
use crate::relate::RelationModel;
use crate::scene::Scene;
use crate::Result;

/// How the pipeline is built, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineSettings {
    /// Threads tract may use for each model's matrix products.
    pub threads: usize,
    pub detector: DetectorSettings,
}

/// One frame in, one [`Scene`] out. Build it once; every buffer is reused from frame to frame.
#[derive(Debug)]
pub struct Pipeline {
    detector: PersonDetector,
    relation: RelationModel,
    rgb: RgbImage,
    scene: Scene,
    profile: Profile,
    next_frame: u64,
    frame_allocs: AllocCounts,
}

impl Pipeline {
    /// Loads both models.
    pub fn load(detector: &Path, relation: &Path, settings: PipelineSettings) -> Result<Self> {
        let threads = settings.threads.max(1);
        let detector = PersonDetector::load(detector, threads, settings.detector)?;
        let relation = RelationModel::load(relation, threads)?;
        Ok(Self::new(detector, relation))
    }

    /// Builds a pipeline from loaded models.
    pub fn new(detector: PersonDetector, relation: RelationModel) -> Self {
        Pipeline {
            detector,
            relation,
            rgb: RgbImage::with_capacity(1920, 1080),
            scene: Scene::default(),
            profile: Profile::default(),
            next_frame: 0,
            frame_allocs: AllocCounts::default(),
        }
    }

    /// The person detector.
    pub fn detector(&self) -> &PersonDetector {
        &self.detector
    }

    /// The relation model.
    pub fn relation(&self) -> &RelationModel {
        &self.relation
    }

    /// Both models, for profiling them outside the frame loop: (detector, relation).
    pub fn models_mut(&mut self) -> (&mut ModelFile, &mut ModelFile) {
        (self.detector.model_mut(), self.relation.model_mut())
    }

    /// The last frame's result.
    pub fn scene(&self) -> &Scene {
        &self.scene
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
    /// output; `decode_us` is the time the caller spent capturing and decoding it.
    pub fn step(&mut self, frame: &Frame, source: &str, decode_us: u64) -> Result<&Scene> {
        self.frame_allocs = AllocCounts::now();
        let start = Instant::now();
        let rgb = if frame.format == PixelFormat::Rgb {
            frame.validate()?;
            *frame
        } else {
            self.rgb.convert_from(frame)?;
            self.rgb.as_frame()
        };
        self.detector.prepare(&rgb)?;
        let mut preprocess = micros_since(start);

        let scene = &mut self.scene;
        scene.frame = self.next_frame;
        scene.set_source(source);
        scene.width = rgb.width;
        scene.height = rgb.height;
        scene.timings = Default::default();
        scene.timings.decode = decode_us;

        let t = Instant::now();
        self.detector
            .detect(rgb.width, rgb.height, &mut scene.persons)?;
        scene.timings.detect = micros_since(t);

        scene.relations.clear();
        if scene.persons.len() >= 2 {
            let t = Instant::now();
            self.relation.prepare_image(&rgb)?;
            preprocess += micros_since(t);
            let t = Instant::now();
            self.relation
                .relate(&scene.persons, rgb.width, rgb.height, &mut scene.relations)?;
            scene.timings.relate = micros_since(t);
        }
        scene.timings.preprocess = preprocess;
        Ok(&self.scene)
    }

    /// Draws the last frame and its scene on `target` (the "render" stage). `frame` is the frame
    /// given to [`Pipeline::step`].
    pub fn render<D>(&mut self, target: &mut D, frame: &Frame) -> Result<(), D::Error>
    where
        D: DrawTarget<Color = Rgb888> + OriginDimensions,
    {
        let t = Instant::now();
        let rgb = if frame.format == PixelFormat::Rgb {
            *frame
        } else {
            self.rgb.as_frame()
        };
        overlay::draw_frame(target, &rgb)?;
        overlay::draw_scene(target, &self.scene, self.relation.is_untrained())?;
        self.scene.timings.render = micros_since(t);
        Ok(())
    }

    /// Closes the frame: sums the stages into `total`, records the frame in the profile and returns
    /// the finished scene.
    pub fn finish(&mut self) -> &Scene {
        let t = &mut self.scene.timings;
        t.total = t.decode + t.preprocess + t.detect + t.relate + t.render;
        let allocs = AllocCounts::now().since(&self.frame_allocs);
        self.profile.record(&self.scene.timings, &allocs);
        self.next_frame += 1;
        &self.scene
    }
}
