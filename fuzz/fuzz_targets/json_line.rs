//! The JSON lines writer with any floats, NaN and infinities included: every line it writes
//! parses as JSON.
#![no_main]

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
            id: id as u8,
            bbox: [p[0], p[1], p[2], p[3]],
            score: p[4],
        });
    }
    if let Some(probs) = floats.get(..NUM_FINE) {
        let _ = scene.relations.push(Relation {
            a: 0,
            b: 1,
            probs: probs.try_into().expect("NUM_FINE values"),
        });
    }
    let path = std::env::temp_dir().join(format!("kith-fuzz-json-{}", std::process::id()));
    let mut out = JsonLines::create(&path).expect("temp file");
    out.write(&scene, "untrained-fuzz", "fuzz.onnx")
        .expect("written");
    drop(out);
    let text = std::fs::read_to_string(&path).expect("read back");
    assert_eq!(text.lines().count(), 1, "{text}");
    let value: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert!(value.is_object());
});
