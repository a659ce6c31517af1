//! The JSON lines writer with any floats, NaN and infinities included: every line it writes
//! parses as JSON.
#![no_main]

use kith::files::FileSettings;
use kith::output::JsonLines;
use kith_runtime::labels::NUM_FINE;
use kith_runtime::{Person, Relation, Scene};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let floats: Vec<f32> = input
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut scene = Scene::default();
    scene.set_source(&String::from_utf8_lossy(input.get(..16).unwrap_or(input)));
    for (id, p) in floats.chunks_exact(5).take(3).enumerate() {
        let _ = scene.persons.push(Person {
            track: p[4].to_bits(),
            ..Person::new(id as u8, [p[0], p[1], p[2], p[3]], p[4])
        });
    }
    if let Some(probs) = floats.get(..NUM_FINE) {
        let probs: [f32; NUM_FINE] = probs.try_into().expect("NUM_FINE values");
        let mut relation = Relation::new(0, 1, probs);
        // Smoothed scores as odd as the frame's own.
        relation.smoothed = probs.map(|p| p * 0.5);
        let _ = scene.relations.push(relation);
    }
    let path = std::env::temp_dir().join(format!("kith-fuzz-json-{}", std::process::id()));
    // results.jsonl is appended to: start each input from an empty file.
    let _ = std::fs::remove_file(&path);
    let mut out = JsonLines::open(&path, FileSettings::default()).expect("temp file");
    out.write(&scene, "untrained-fuzz", "fuzz.onnx")
        .expect("written");
    drop(out);
    let text = std::fs::read_to_string(&path).expect("read back");
    assert_eq!(text.lines().count(), 1, "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert!(value.is_object());
});
