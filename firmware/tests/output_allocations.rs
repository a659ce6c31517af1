//! Writing a frame's JSON line to results.jsonl allocates nothing after the first frames, even for
//! the largest scene: MAX_PERSONS persons, all MAX_PAIRS pairs, a source name of full length made
//! of characters JSON must escape. The pipeline's own frame path has its count in
//! runtime/tests/allocations.rs. This file holds one test only, so no other test allocates while
//! it counts.

use kith::output::JsonLines;
use kith_runtime::alloc_count::{AllocCounts, CountingAllocator};
use kith_runtime::labels::NUM_FINE;
use kith_runtime::limits::{JSON_LINE_CAPACITY, MAX_PAIRS, MAX_PERSONS, SOURCE_NAME_CAPACITY};
use kith_runtime::profile::StageTimes;
use kith_runtime::{Person, Relation, Scene};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WARMUP: u64 = 2;
const MEASURED: u64 = 20;

/// The longest scene kith can produce, with numbers that print at full length.
fn largest_scene() -> Scene {
    let mut scene = Scene {
        width: 1920,
        height: 1080,
        timings: StageTimes {
            decode: u64::MAX,
            preprocess: u64::MAX,
            detect: u64::MAX,
            relate: u64::MAX,
            render: u64::MAX,
            total: u64::MAX,
        },
        ..Default::default()
    };
    // Each control character is written as a six-byte \u escape.
    scene.set_source(&"\u{1}".repeat(1000));
    for id in 0..MAX_PERSONS {
        let f = id as f32;
        let bbox = [1234.5678 + f, 987.6543 + f, 1876.4321 - f, 1079.9876 - f];
        let person = Person {
            track: u32::MAX - id as u32,
            ..Person::new(id as u8, bbox, 0.123_456_7 + f / 100.0)
        };
        scene.persons.push(person).unwrap();
    }
    for a in 0..MAX_PERSONS {
        for b in a + 1..MAX_PERSONS {
            let mut probs = [0.012_345_67; NUM_FINE];
            probs[(a + b) % NUM_FINE] = 0.938_271_6;
            let relation = Relation {
                smoothed: [0.123_456_7; NUM_FINE],
                ..Relation::new(a as u8, b as u8, probs)
            };
            scene.relations.push(relation).unwrap();
        }
    }
    assert_eq!(scene.relations.len(), MAX_PAIRS);
    scene
}

#[test]
fn writing_the_largest_scene_allocates_nothing_per_frame() {
    let dir = std::env::temp_dir().join(format!("kith-output-allocations-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.jsonl");
    let mut out = JsonLines::open(&path, Default::default()).unwrap();
    let mut scene = largest_scene();
    let weights = "untrained-demo";
    let relation_model = "gritv2-s.int8.onnx";
    for frame in 0..WARMUP {
        scene.frame = frame;
        out.write(&scene, weights, relation_model).unwrap();
    }
    let before = AllocCounts::now();
    for frame in WARMUP..WARMUP + MEASURED {
        scene.frame = frame;
        out.write(&scene, weights, relation_model).unwrap();
    }
    let d = AllocCounts::now().since(&before);
    println!(
        "{MEASURED} lines: {} allocations ({} bytes)",
        d.own, d.own_bytes
    );
    assert_eq!(d.own, 0, "writing a JSON line allocated");

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, WARMUP + MEASURED);
    for (frame, line) in lines.iter().enumerate() {
        assert!(
            line.len() < JSON_LINE_CAPACITY,
            "a line of {} bytes outgrows JSON_LINE_CAPACITY",
            line.len()
        );
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["frame"], frame as u64);
        assert_eq!(v["source"], "\u{1}".repeat(SOURCE_NAME_CAPACITY));
        assert_eq!(v["persons"].as_array().unwrap().len(), MAX_PERSONS);
        assert_eq!(v["relations"].as_array().unwrap().len(), MAX_PAIRS);
        assert_eq!(v["timings_us"]["total"], u64::MAX);
    }
    println!("line length: {} bytes", lines[0].len());
    std::fs::remove_dir_all(&dir).unwrap();
}
