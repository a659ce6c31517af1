//! Tracking on the real pipeline (detector, tracker, relation model, smoother), on sequences
//! generated from the demo frames: a camera panning a few pixels per frame over each scene, two
//! people of a scene swapping places abruptly, and photos of other scenes one after the other.

mod common;

use common::{demo_frames, model};
use kith_runtime::image::RgbImage;
use kith_runtime::{
    DetectorSettings, Person, Pipeline, PipelineSettings, SmoothingSettings, TrackerSettings,
};

fn pipeline() -> Pipeline {
    let settings = PipelineSettings {
        threads: 1,
        detector: DetectorSettings::default(),
        pipelined: false,
        tracker: TrackerSettings::default(),
        smoothing: SmoothingSettings {
            enabled: true,
            ..SmoothingSettings::default()
        },
        overlay: Default::default(),
    };
    Pipeline::load(
        &model("person-detector.onnx"),
        &model("gritv2-s.fp32.onnx"),
        settings,
    )
    .unwrap()
}

/// Runs `frame` through the pipeline; returns its persons.
fn run(pipeline: &mut Pipeline, frame: &RgbImage, name: &str) -> Vec<Person> {
    assert!(pipeline.step(&frame.as_frame(), name, 0).unwrap());
    let scene = pipeline.finish();
    for r in &scene.relations {
        let tracks = [r.a, r.b].map(|i| scene.persons[i as usize].track);
        assert!(tracks[0] != tracks[1] && tracks.iter().all(|t| *t > 0));
    }
    scene.persons.to_vec()
}

/// The `w` x `h` window of `img` whose top left corner is (`x`, `y`).
fn crop(img: &RgbImage, x: usize, y: usize, w: usize, h: usize) -> RgbImage {
    let mut out = RgbImage::with_capacity(w, h);
    out.set_size(w, h);
    for row in 0..h {
        let src = ((y + row) * img.width + x) * 3;
        out.data[row * w * 3..(row + 1) * w * 3].copy_from_slice(&img.data[src..src + w * 3]);
    }
    out
}

/// `img` with its two `w` x `h` rectangles at `(x1, y)` and `(x2, y)` swapped.
fn swap_rectangles(
    img: &RgbImage,
    (x1, x2, y): (usize, usize, usize),
    (w, h): (usize, usize),
) -> RgbImage {
    let mut out = img.clone();
    for row in y..y + h {
        for col in 0..w {
            let (a, b) = (
                (row * img.width + x1 + col) * 3,
                (row * img.width + x2 + col) * 3,
            );
            out.data[a..a + 3].copy_from_slice(&img.data[b..b + 3]);
            out.data[b..b + 3].copy_from_slice(&img.data[a..a + 3]);
        }
    }
    out
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    w * h / (area(a) + area(b) - w * h)
}

fn shifted(b: &[f32; 4], dx: f32, dy: f32) -> [f32; 4] {
    [b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy]
}

/// The person of `persons` that is the one expected at `expected`, if one is.
fn found_at<'a>(persons: &'a [Person], expected: &[f32; 4]) -> Option<&'a Person> {
    persons.iter().find(|p| iou(&p.bbox, expected) > 0.5)
}

/// Frames of each generated pan (the window moves at most 3 * 11 px of the 60 px it has to spare).
const PAN_FRAMES: usize = 12;

#[test]
fn people_moving_a_few_pixels_per_frame_keep_their_track_ids() {
    let frames = demo_frames();
    let mut pipeline = pipeline();
    // One pan per scene of the demo (2, 3 and 4 people): PAN_FRAMES frames, 3 px right and 2 px
    // down per frame, so the people move 3 px left and 2 px up in the picture.
    for (name, img) in [&frames[0], &frames[5], &frames[10]] {
        let (w, h) = (img.width - 60, img.height - 40);
        let first = run(&mut pipeline, &crop(img, 0, 0, w, h), name);
        assert!(first.len() >= 2, "{name}: {} persons", first.len());
        let (mut kept, mut seen) = (0, 0);
        for i in 1..PAN_FRAMES {
            let persons = run(&mut pipeline, &crop(img, 3 * i, 2 * i, w, h), name);
            let (dx, dy) = (-3.0 * i as f32, -2.0 * i as f32);
            for p0 in &first {
                if let Some(p) = found_at(&persons, &shifted(&p0.bbox, dx, dy)) {
                    seen += 1;
                    assert_eq!(p.track, p0.track, "{name} frame {i}: {p:?} was {p0:?}");
                    kept += 1;
                }
            }
            let mut tracks: Vec<u32> = persons.iter().map(|p| p.track).collect();
            tracks.sort_unstable();
            tracks.dedup();
            assert_eq!(
                tracks.len(),
                persons.len(),
                "{name} frame {i}: one id per person"
            );
        }
        println!(
            "{name}: {} persons, {kept} of {seen} re-detections over {} moved frames kept their track",
            first.len(),
            PAN_FRAMES - 1
        );
        assert!(
            seen >= (PAN_FRAMES - 1) * first.len() * 2 / 3,
            "{name}: the detector must find the moved people: {seen}"
        );
    }
}

#[test]
fn two_people_swapping_places_abruptly_keep_their_ids() {
    let frames = demo_frames();
    // frame_010: the mirrored astronaut (x 6-157) and Hopper (x 200-301) stand behind the desk,
    // each inside one of two 168 x 160 rectangles side by side; swapping the rectangles swaps them.
    let (name, img) = &frames[10];
    let (rects, size) = ((0, 170, 240), (168, 160));
    let mut pipeline = pipeline();
    let first = run(&mut pipeline, img, name);
    let inside = |p: &Person, x: usize| {
        let (cx, cy) = p.centre();
        (x as f32..(x + size.0) as f32).contains(&cx) && (240.0..400.0).contains(&cy)
    };
    let astronaut = *first
        .iter()
        .find(|p| inside(p, rects.0))
        .expect("astronaut");
    let hopper = *first.iter().find(|p| inside(p, rects.1)).expect("Hopper");
    for _ in 0..3 {
        let again = run(&mut pipeline, img, name);
        assert!(found_at(&again, &astronaut.bbox).is_some_and(|p| p.track == astronaut.track));
        assert!(found_at(&again, &hopper.bbox).is_some_and(|p| p.track == hopper.track));
    }
    let persons = run(&mut pipeline, &swap_rectangles(img, rects, size), "swapped");
    let d = (rects.1 - rects.0) as f32;
    let astronaut_now =
        found_at(&persons, &shifted(&astronaut.bbox, d, 0.0)).expect("astronaut moved right");
    let hopper_now =
        found_at(&persons, &shifted(&hopper.bbox, -d, 0.0)).expect("Hopper moved left");
    println!(
        "before: astronaut track {}, Hopper track {}; after the swap: astronaut {}, Hopper {}",
        astronaut.track, hopper.track, astronaut_now.track, hopper_now.track
    );
    assert_eq!(astronaut_now.track, astronaut.track);
    assert_eq!(hopper_now.track, hopper.track);
}

#[test]
fn a_folder_of_unrelated_photos_starts_fresh_tracks() {
    let frames = demo_frames();
    let mut pipeline = pipeline();
    // The first frame of each of the demo's three scenes (other people, other places), then the
    // first again: each is a scene cut, and no track of an earlier photo comes back.
    let mut all = Vec::new();
    for i in [0, 5, 10, 0] {
        let (name, img) = &frames[i];
        let persons = run(&mut pipeline, img, name);
        let tracks: Vec<u32> = persons.iter().map(|p| p.track).collect();
        println!("{name}: tracks {tracks:?}");
        assert!(!tracks.is_empty());
        assert!(
            tracks.iter().all(|t| !all.contains(t)),
            "{name}: a track of an earlier photo came back"
        );
        all.extend(tracks);
    }
}
