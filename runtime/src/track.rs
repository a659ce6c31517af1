//! Tracking: gives each detected person a `track` id that stays the same across frames while the
//! person stays in view. Detections are matched to tracks by where the track's box is expected
//! (its last box moved by its velocity: IoU and centre distance) and by what it looks like (a small
//! colour histogram of the box), so two people who swap places keep their ids when their clothes
//! differ. A track that finds no detection is kept for a few frames; a scene cut (the whole frame
//! changes, e.g. a folder of unrelated photos) ends every track, so strangers never inherit an id.
//! Fixed capacity: nothing is allocated per frame.

use heapless::Vec as HVec;

use crate::detect::iou;
use crate::image::RgbImage;
use crate::limits::{MAX_PERSONS, MAX_TRACKS};
use crate::scene::Person;

/// Levels per colour channel in the appearance histogram (4 x 4 x 4 bins).
const LEVELS: usize = 4;
const BINS: usize = LEVELS * LEVELS * LEVELS;
/// Samples per box side for the histogram (a grid, not every pixel).
const BOX_SAMPLES: usize = 16;
/// Share of the box left out on each side, so the histogram sees the person more than the
/// background.
const BOX_MARGIN: f32 = 0.15;
/// Cells of the frame thumbnail the scene-cut test compares.
const THUMB_W: usize = 8;
const THUMB_H: usize = 6;
/// Samples per thumbnail cell side.
const CELL_SAMPLES: usize = 4;

/// Farthest a detection may be from a track's expected centre, in the track box's diagonals.
const MAX_DISTANCE: f32 = 2.0;
/// Weight of appearance against motion in the match score: a Bhattacharyya similarity 0.1 lower
/// costs as much as 0.5 of motion score (IoU and nearness, each 0..1, averaged). The same person
/// a frame later measures 0.98-0.99 on the demo frames, two different people 0.58-0.82.
const APPEARANCE_WEIGHT: f32 = 5.0;
/// Below this similarity two boxes are not the same person, however close.
const MIN_SIMILARITY: f32 = 0.7;
/// Lowest match score that continues a track.
const MIN_SCORE: f32 = 0.05;
/// How much of a matched detection's histogram and velocity enter the track's.
const UPDATE_RATE: f32 = 0.3;

/// How the tracker keeps and ends tracks, from the board config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackerSettings {
    /// Frames a track is kept without a matching detection before it ends.
    pub max_missed: u32,
    /// Mean change of the frame's colour thumbnail (0..1) above which every track ends.
    pub scene_cut: f32,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            max_missed: 10,
            // The demo frames change by at most 0.036 within a scene (people moving 2-8 px per
            // frame) and by 0.087 or more from one scene to another.
            scene_cut: 0.06,
        }
    }
}

/// A colour histogram stored as the square roots of its shares (a unit vector), so that the
/// Bhattacharyya similarity of two is their dot product.
type Histogram = [f32; BINS];

/// A coarse colour picture of the whole frame, for the scene-cut test.
type Thumbnail = [[f32; 3]; THUMB_W * THUMB_H];

#[derive(Debug, Clone, Copy)]
struct Track {
    id: u32,
    bbox: [f32; 4],
    /// Centre motion per frame.
    velocity: (f32, f32),
    /// Frames since the last matching detection.
    missed: u32,
    histogram: Histogram,
}

impl Track {
    /// Where the box should be now, after `missed + 1` frames of motion.
    fn expected(&self) -> [f32; 4] {
        let n = (self.missed + 1) as f32;
        let (dx, dy) = (self.velocity.0 * n, self.velocity.1 * n);
        let b = self.bbox;
        [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]
    }
}

/// The tracks of a stream of frames.
#[derive(Debug, Clone)]
pub struct Tracker {
    settings: TrackerSettings,
    tracks: HVec<Track, MAX_TRACKS>,
    next_id: u32,
    /// The previous frame's thumbnail and size; `None` before the first frame.
    last_frame: Option<(Thumbnail, usize, usize)>,
}

impl Tracker {
    /// A tracker with no tracks yet; ids start at 1.
    pub fn new(settings: TrackerSettings) -> Self {
        Tracker {
            settings,
            tracks: HVec::new(),
            next_id: 1,
            last_frame: None,
        }
    }

    /// Ends every track and takes `settings` from the next frame; ids go on from the last one
    /// given, so none is reused.
    pub fn restart(&mut self, settings: TrackerSettings) {
        self.settings = settings;
        self.tracks.clear();
        self.last_frame = None;
    }

    /// Sets `track` of each of `persons`, detected in `image`: continues the tracks they match and
    /// starts new ones for the rest. Returns whether a scene cut ended the earlier tracks.
    pub fn update(&mut self, image: &RgbImage, persons: &mut [Person]) -> bool {
        let cut = self.scene_cut(image);
        if cut {
            self.tracks.clear();
        }
        let mut histograms = [[0f32; BINS]; MAX_PERSONS];
        let n = persons.len().min(MAX_PERSONS);
        let persons = &mut persons[..n];
        for (p, h) in persons.iter().zip(histograms.iter_mut()) {
            box_histogram(image, &p.bbox, h);
        }
        let matched = self.associate(persons, &histograms);
        for t in self.tracks.iter_mut() {
            t.missed += 1;
        }
        // Continued tracks first: starting one may remove a track, which moves the indices.
        for (i, p) in persons.iter_mut().enumerate() {
            if let Some(t) = matched[i] {
                p.track = self.continue_track(t, p, &histograms[i]);
            }
        }
        for (i, p) in persons.iter_mut().enumerate() {
            if matched[i].is_none() {
                p.track = self.start_track(p, &histograms[i]);
            }
        }
        let max_missed = self.settings.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        cut
    }

    /// Greedy matching, best score first: the track index each person continues, if any.
    fn associate(
        &self,
        persons: &[Person],
        histograms: &[Histogram; MAX_PERSONS],
    ) -> [Option<usize>; MAX_PERSONS] {
        let mut scores = [[f32::NEG_INFINITY; MAX_TRACKS]; MAX_PERSONS];
        for (i, p) in persons.iter().enumerate() {
            for (j, t) in self.tracks.iter().enumerate() {
                scores[i][j] = match_score(t, &p.bbox, &histograms[i]);
            }
        }
        let mut matched = [None; MAX_PERSONS];
        let mut taken = [false; MAX_TRACKS];
        loop {
            let mut best: Option<(usize, usize)> = None;
            let mut best_score = MIN_SCORE;
            for (i, row) in scores.iter().enumerate().take(persons.len()) {
                if matched[i].is_some() {
                    continue;
                }
                for (j, s) in row.iter().enumerate().take(self.tracks.len()) {
                    if !taken[j] && *s >= best_score {
                        best_score = *s;
                        best = Some((i, j));
                    }
                }
            }
            let Some((i, j)) = best else {
                return matched;
            };
            matched[i] = Some(j);
            taken[j] = true;
        }
    }

    /// Moves track `index` to `person`'s box; returns its id.
    fn continue_track(&mut self, index: usize, person: &Person, histogram: &Histogram) -> u32 {
        let t = &mut self.tracks[index];
        // `missed` was counted up for this frame: the frames since the track's last box.
        let frames = t.missed.max(1) as f32;
        let (cx, cy) = centre(&t.bbox);
        let (nx, ny) = centre(&person.bbox);
        let step = ((nx - cx) / frames, (ny - cy) / frames);
        t.velocity.0 += UPDATE_RATE * (step.0 - t.velocity.0);
        t.velocity.1 += UPDATE_RATE * (step.1 - t.velocity.1);
        t.bbox = person.bbox;
        t.missed = 0;
        blend_histogram(&mut t.histogram, histogram);
        t.id
    }

    /// Starts a track for `person` (ending the longest-missed track when full); returns its id.
    fn start_track(&mut self, person: &Person, histogram: &Histogram) -> u32 {
        if self.tracks.is_full() {
            let oldest = (0..self.tracks.len()).max_by_key(|&j| self.tracks[j].missed);
            if let Some(j) = oldest {
                self.tracks.swap_remove(j);
            }
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        // Cannot fail: a place was made above.
        let _ = self.tracks.push(Track {
            id,
            bbox: person.bbox,
            velocity: (0.0, 0.0),
            missed: 0,
            histogram: *histogram,
        });
        id
    }

    /// Whether `image` starts a new scene (another size, or its thumbnail changed by more than
    /// [`TrackerSettings::scene_cut`]); remembers its thumbnail for the next frame.
    fn scene_cut(&mut self, image: &RgbImage) -> bool {
        let thumb = thumbnail(image);
        let cut = match &self.last_frame {
            Some((last, w, h)) if (*w, *h) == (image.width, image.height) => {
                thumbnail_change(last, &thumb) > self.settings.scene_cut
            }
            Some(_) => true,
            None => false,
        };
        self.last_frame = Some((thumb, image.width, image.height));
        cut
    }
}

/// How well a detection continues track `t` (higher is better); `-inf` when it cannot.
fn match_score(t: &Track, bbox: &[f32; 4], histogram: &Histogram) -> f32 {
    let expected = t.expected();
    let (ex, ey) = centre(&expected);
    let (cx, cy) = centre(bbox);
    let diagonal = (expected[2] - expected[0])
        .hypot(expected[3] - expected[1])
        .max(1.0);
    let distance = (cx - ex).hypot(cy - ey) / diagonal;
    let similarity = similarity(&t.histogram, histogram);
    if distance > MAX_DISTANCE || similarity < MIN_SIMILARITY {
        return f32::NEG_INFINITY;
    }
    let motion = 0.5 * iou(&expected, bbox) + 0.5 * (1.0 - distance / MAX_DISTANCE);
    motion - APPEARANCE_WEIGHT * (1.0 - similarity)
}

fn centre(b: &[f32; 4]) -> (f32, f32) {
    ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)
}

/// The RGB of the pixel nearest to (`x`, `y`), clamped to the image.
fn pixel(image: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let x = (x.max(0.0) as usize).min(image.width.saturating_sub(1));
    let y = (y.max(0.0) as usize).min(image.height.saturating_sub(1));
    let i = (y * image.width + x) * 3;
    match image.data.get(i..i + 3) {
        Some(p) => [p[0], p[1], p[2]],
        None => [0; 3],
    }
}

/// The colour histogram of the inner part of `bbox`, sampled on a grid.
fn box_histogram(image: &RgbImage, bbox: &[f32; 4], out: &mut Histogram) {
    out.fill(0.0);
    if image.width == 0 || image.height == 0 {
        return;
    }
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let (x0, y0) = (bbox[0] + BOX_MARGIN * w, bbox[1] + BOX_MARGIN * h);
    let inner = 1.0 - 2.0 * BOX_MARGIN;
    let step = |side: f32| side * inner / BOX_SAMPLES as f32;
    let (sx, sy) = (step(w), step(h));
    for row in 0..BOX_SAMPLES {
        for col in 0..BOX_SAMPLES {
            let [r, g, b] = pixel(
                image,
                x0 + (col as f32 + 0.5) * sx,
                y0 + (row as f32 + 0.5) * sy,
            );
            let level = |v: u8| v as usize * LEVELS / 256;
            out[(level(r) * LEVELS + level(g)) * LEVELS + level(b)] += 1.0;
        }
    }
    normalise(out);
}

/// Square roots of the shares, so the histogram is a unit vector.
fn normalise(h: &mut Histogram) {
    let total: f32 = h.iter().sum();
    if total > 0.0 {
        for v in h.iter_mut() {
            *v = (*v / total).sqrt();
        }
    }
}

/// Bhattacharyya similarity, 0 (no colour in common) ..1 (the same histogram).
fn similarity(a: &Histogram, b: &Histogram) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Moves `track` towards `seen` and keeps it a unit vector.
fn blend_histogram(track: &mut Histogram, seen: &Histogram) {
    let mut norm = 0.0;
    for (t, s) in track.iter_mut().zip(seen) {
        *t += UPDATE_RATE * (s - *t);
        norm += *t * *t;
    }
    let norm = norm.sqrt();
    if norm > 0.0 {
        for t in track.iter_mut() {
            *t /= norm;
        }
    }
}

/// Mean colour of each cell of a [`THUMB_W`] x [`THUMB_H`] grid over the frame, 0..1.
fn thumbnail(image: &RgbImage) -> Thumbnail {
    let mut thumb = [[0f32; 3]; THUMB_W * THUMB_H];
    if image.width == 0 || image.height == 0 {
        return thumb;
    }
    let (cw, ch) = (
        image.width as f32 / THUMB_W as f32,
        image.height as f32 / THUMB_H as f32,
    );
    let samples = (CELL_SAMPLES * CELL_SAMPLES) as f32 * 255.0;
    for (cell, mean) in thumb.iter_mut().enumerate() {
        let (x0, y0) = ((cell % THUMB_W) as f32 * cw, (cell / THUMB_W) as f32 * ch);
        for row in 0..CELL_SAMPLES {
            for col in 0..CELL_SAMPLES {
                let x = x0 + (col as f32 + 0.5) * cw / CELL_SAMPLES as f32;
                let y = y0 + (row as f32 + 0.5) * ch / CELL_SAMPLES as f32;
                for (m, v) in mean.iter_mut().zip(pixel(image, x, y)) {
                    *m += v as f32 / samples;
                }
            }
        }
    }
    thumb
}

/// Mean absolute difference of two thumbnails, 0..1.
fn thumbnail_change(a: &Thumbnail, b: &Thumbnail) -> f32 {
    let sum: f32 = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .sum();
    sum / (THUMB_W * THUMB_H * 3) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 240;

    /// A grey frame with a filled box of each colour.
    fn frame(boxes: &[([f32; 4], [u8; 3])]) -> RgbImage {
        let mut img = RgbImage::with_capacity(W, H);
        img.set_size(W, H);
        img.data.fill(128);
        for (b, colour) in boxes {
            for y in b[1] as usize..(b[3] as usize).min(H) {
                for x in b[0] as usize..(b[2] as usize).min(W) {
                    let i = (y * W + x) * 3;
                    img.data[i..i + 3].copy_from_slice(colour);
                }
            }
        }
        img
    }

    fn person_box(x: f32, y: f32) -> [f32; 4] {
        [x, y, x + 40.0, y + 100.0]
    }

    const RED: [u8; 3] = [200, 30, 30];
    const BLUE: [u8; 3] = [30, 30, 200];

    /// Tracks `boxes` in a frame that shows them; returns the track ids in order.
    fn step(tracker: &mut Tracker, boxes: &[([f32; 4], [u8; 3])]) -> Vec<u32> {
        let img = frame(boxes);
        let mut persons: Vec<Person> = boxes
            .iter()
            .enumerate()
            .map(|(i, (b, _))| Person::new(i as u8, *b, 0.9))
            .collect();
        tracker.update(&img, &mut persons);
        persons.iter().map(|p| p.track).collect()
    }

    #[test]
    fn moving_persons_keep_their_ids_through_a_short_miss() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let first = step(
            &mut tracker,
            &[
                (person_box(40.0, 60.0), RED),
                (person_box(200.0, 60.0), BLUE),
            ],
        );
        assert_eq!(first, [1, 2]);
        for i in 1..30 {
            let d = i as f32;
            let red = (person_box(40.0 + 2.0 * d, 60.0), RED);
            let blue = (person_box(240.0 - d, 60.0 + d), BLUE);
            // The detector misses the red person for three frames, and lists them in either order.
            let ids = match i {
                10..=12 => vec![0, step(&mut tracker, &[blue])[0]],
                _ if i % 2 == 0 => step(&mut tracker, &[red, blue]),
                _ => step(&mut tracker, &[blue, red]).into_iter().rev().collect(),
            };
            if (10..=12).contains(&i) {
                assert_eq!(ids[1], 2, "frame {i}");
            } else {
                assert_eq!(ids, [1, 2], "frame {i}");
            }
        }
    }

    #[test]
    fn an_abrupt_swap_keeps_ids_with_their_colours() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let (left, right) = (person_box(100.0, 60.0), person_box(170.0, 60.0));
        assert_eq!(step(&mut tracker, &[(left, RED), (right, BLUE)]), [1, 2]);
        assert_eq!(step(&mut tracker, &[(left, RED), (right, BLUE)]), [1, 2]);
        // Same places, people swapped: the red person is now on the right.
        assert_eq!(step(&mut tracker, &[(left, BLUE), (right, RED)]), [2, 1]);
    }

    #[test]
    fn a_scene_cut_starts_fresh_tracks() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let b = person_box(100.0, 60.0);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [1]);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [1]);
        // The same box in a different picture: a stranger, however well it matches.
        let mut other = frame(&[(b, RED)]);
        for (i, v) in other.data.iter_mut().enumerate() {
            if *v == 128 {
                *v = if i % 3 == 1 { 230 } else { 20 };
            }
        }
        let mut persons = [Person::new(0, b, 0.9)];
        assert!(tracker.update(&other, &mut persons));
        assert_eq!(persons[0].track, 2);
    }

    #[test]
    fn a_restart_ends_the_tracks_and_never_reuses_an_id() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        let b = person_box(100.0, 60.0);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [1]);
        let settings = TrackerSettings {
            max_missed: 2,
            ..TrackerSettings::default()
        };
        tracker.restart(settings);
        assert_eq!(tracker.settings, settings);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [2]);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [2]);
    }

    #[test]
    fn a_track_missed_too_long_ends() {
        let settings = TrackerSettings {
            max_missed: 2,
            ..TrackerSettings::default()
        };
        let mut tracker = Tracker::new(settings);
        let b = person_box(100.0, 60.0);
        assert_eq!(step(&mut tracker, &[(b, RED)]), [1]);
        // Empty frames are no scene cut here: the red box is small in a grey frame.
        for _ in 0..3 {
            assert!(step(&mut tracker, &[]).is_empty());
        }
        assert_eq!(step(&mut tracker, &[(b, RED)]), [2]);
    }

    #[test]
    fn a_distant_box_is_a_new_person() {
        let mut tracker = Tracker::new(TrackerSettings::default());
        assert_eq!(step(&mut tracker, &[(person_box(10.0, 10.0), RED)]), [1]);
        assert_eq!(step(&mut tracker, &[(person_box(270.0, 130.0), RED)]), [2]);
    }
}
