//! The faster of two relation model files on this CPU. A board config may name a second file
//! (`[relation] fallback_model`, e.g. the FP32 file next to the INT8 default): kith then loads both,
//! times a few runs of each on a synthetic frame at start-up, keeps the faster and drops the other,
//! so that it never runs a file that is slower here than its alternative without saying so. The rule
//! is documented in docs/int8.md ("The start-up rule").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use heapless::Vec as HVec;

use crate::image::RgbImage;
use crate::limits::MAX_PAIRS;
use crate::model::file_name_of;
use crate::relate::RelationModel;
use crate::scene::Person;
use crate::Error;

/// Most runs of each file; the first is a warm-up.
pub const MAX_RUNS: usize = 3;

/// Time after which a file gets no further run: its runs so far decide.
pub const TIME_BUDGET: Duration = Duration::from_secs(2);

/// How fast one file related the synthetic frame at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// The model file.
    pub path: PathBuf,
    /// Runs made, the warm-up included.
    pub runs: usize,
    /// The fastest run after the warm-up; the warm-up itself when the budget left no other run.
    pub best: Duration,
}

/// Which of the two files runs, with the timings that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The file kept: it runs from now on.
    pub kept: Timing,
    /// The file dropped.
    pub dropped: Timing,
    /// Whether the kept file is the fallback rather than `[relation] model`.
    pub fallback_kept: bool,
}

impl std::fmt::Display for Choice {
    /// E.g. `gritv2-s.int8.onnx, faster here than the fallback gritv2-s.fp32.onnx: 56.1 ms against
    /// 88.4 ms (best of 2 timed runs each after a warm-up)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |t: &Timing| t.best.as_secs_f64() * 1e3;
        let timed = |t: &Timing| t.runs.saturating_sub(1);
        let runs = match (timed(&self.kept), timed(&self.dropped)) {
            (0, 0) => "one warm-up run each: the time budget left no timed run".to_owned(),
            (k, d) if k == d => format!("best of {k} timed runs each after a warm-up"),
            (k, d) => {
                format!("best of {k} and {d} timed runs after a warm-up, the warm-up where 0")
            }
        };
        write!(
            f,
            "{}, faster here than {} {}: {:.1} ms against {:.1} ms ({runs})",
            file_name_of(&self.kept.path),
            if self.fallback_kept {
                "the model"
            } else {
                "the fallback"
            },
            file_name_of(&self.dropped.path),
            ms(&self.kept),
            ms(&self.dropped),
        )
    }
}

/// Why the choice could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    /// The fallback file does not load or does not meet the relation model contract.
    #[error("field `relation.fallback_model`")]
    Fallback(#[source] Error),
    /// A timing run failed.
    #[error("start-up timing of {}", path.display())]
    Timing {
        path: PathBuf,
        #[source]
        source: Error,
    },
}

/// Loads the fallback file with `threads` threads, as [`RelationModel::load`] loads the model.
pub fn load_fallback(path: &Path, threads: usize) -> Result<RelationModel, ChoiceError> {
    RelationModel::load(path, threads).map_err(ChoiceError::Fallback)
}

/// Times `model` and `fallback` on the same synthetic frame, one run of each in turn, each until
/// it has made [`MAX_RUNS`] runs or spent [`TIME_BUDGET`]; returns the faster (on a tie `model`)
/// and drops the other.
pub fn keep_faster(
    model: RelationModel,
    fallback: RelationModel,
) -> Result<(RelationModel, Choice), ChoiceError> {
    let frame = synthetic_frame();
    let persons = synthetic_persons(frame.width, frame.height);
    let mut contenders = [Contender::new(model), Contender::new(fallback)];
    for c in &mut contenders {
        c.model
            .prepare_image(&frame.as_frame())
            .map_err(|e| c.failed(e))?;
    }
    while contenders.iter().any(Contender::wants_a_run) {
        for c in contenders.iter_mut().filter(|c| c.wants_a_run()) {
            c.run(&persons, frame.width, frame.height)?;
        }
    }
    let [model, fallback] = contenders;
    let fallback_kept = fallback.timing().best < model.timing().best;
    let (kept, dropped) = if fallback_kept {
        (fallback, model)
    } else {
        (model, fallback)
    };
    let choice = Choice {
        kept: kept.timing(),
        dropped: dropped.timing(),
        fallback_kept,
    };
    Ok((kept.model, choice))
}

/// One file being timed.
struct Contender {
    model: RelationModel,
    /// Every run so far, the warm-up first.
    runs: Vec<Duration>,
    spent: Duration,
}

impl Contender {
    fn new(model: RelationModel) -> Self {
        Contender {
            model,
            runs: Vec::with_capacity(MAX_RUNS),
            spent: Duration::ZERO,
        }
    }

    fn wants_a_run(&self) -> bool {
        self.runs.len() < MAX_RUNS && self.spent < TIME_BUDGET
    }

    fn run(&mut self, persons: &[Person], width: usize, height: usize) -> Result<(), ChoiceError> {
        let mut relations = HVec::<_, MAX_PAIRS>::new();
        let start = Instant::now();
        let result = self.model.relate(persons, width, height, &mut relations);
        let took = start.elapsed();
        result.map_err(|e| self.failed(e))?;
        log::debug!(
            "timing {}: run {} took {:.1} ms",
            self.model.model().file_name(),
            self.runs.len() + 1,
            took.as_secs_f64() * 1e3
        );
        self.runs.push(took);
        self.spent += took;
        Ok(())
    }

    fn failed(&self, source: Error) -> ChoiceError {
        ChoiceError::Timing {
            path: self.model.model().path().to_owned(),
            source,
        }
    }

    fn timing(&self) -> Timing {
        let timed = self.runs.get(1..).filter(|r| !r.is_empty());
        let best = timed
            .unwrap_or(&self.runs)
            .iter()
            .copied()
            .min()
            .unwrap_or(Duration::MAX);
        Timing {
            path: self.model.model().path().to_owned(),
            runs: self.runs.len(),
            best,
        }
    }
}

/// A 320x240 frame of smooth colour gradients: what a camera frame costs the model (its cost does
/// not depend on the pixels).
fn synthetic_frame() -> RgbImage {
    let (width, height) = (320, 240);
    let data = (0..height)
        .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, (x + y) as u8]))
        .collect();
    RgbImage {
        width,
        height,
        data,
    }
}

/// Four persons side by side, so that the model relates six pairs.
fn synthetic_persons(width: usize, height: usize) -> [Person; 4] {
    let w = width as f32 / 4.0;
    let h = height as f32;
    std::array::from_fn(|i| {
        Person::new(
            i as u8,
            [i as f32 * w, 0.1 * h, (i as f32 + 1.0) * w, h],
            0.9,
        )
    })
}
