//! The start-up rule (`kith_runtime::relation_choice`): of a relation model and its fallback, the
//! one that relates faster on this CPU is kept, whichever of the two it is. Timed for real: a tiny
//! graph that meets the relation model contract against the real GRITv2-S FP32 file (about
//! 2.5 GMAC against a few hundred multiplications).

mod common;

use common::model;
use kith_onnx_build::{float_value_info, floats, int64s, node, pb, write_model};
use kith_runtime::labels::{joined, FINE_LABELS, NUM_FINE};
use kith_runtime::limits::MAX_PERSONS;
use kith_runtime::relation_choice::{keep_faster, load_fallback, ChoiceError, MAX_RUNS};
use kith_runtime::RelationModel;

/// Writes a relation model of almost no cost to `path`: `logits = reshape(mask) * w`, with the
/// inputs, output and metadata kith requires of GRITv2-S.
fn tiny_relation_model(path: &std::path::Path) {
    let p = MAX_PERSONS as i64;
    let weights = (0..MAX_PERSONS * MAX_PERSONS * NUM_FINE)
        .map(|i| (i % NUM_FINE) as f32)
        .collect();
    let graph = pb::GraphProto {
        name: "tiny-relation".into(),
        node: vec![
            node("Reshape", &["mask", "shape"], "column", vec![]),
            node("Mul", &["column", "w"], "logits", vec![]),
        ],
        initializer: vec![
            floats("w", &[1, p, p, NUM_FINE as i64], weights),
            int64s("shape", &[4], vec![1, p, 1, 1]),
        ],
        input: vec![
            float_value_info("image", &[1, 3, 16, 16]),
            float_value_info("boxes", &[1, p, 4]),
            float_value_info("mask", &[1, p]),
        ],
        output: vec![float_value_info("logits", &[1, p, p, NUM_FINE as i64])],
        ..Default::default()
    };
    let labels = joined(&FINE_LABELS);
    write_model(
        path,
        graph,
        &[("kith.labels", &labels), ("kith.weights", "untrained-test")],
    )
    .unwrap();
}

#[test]
fn the_faster_file_is_kept_whether_model_or_fallback() {
    let tiny = std::env::temp_dir().join(format!("kith-tiny-relation-{}.onnx", std::process::id()));
    tiny_relation_model(&tiny);
    let real = model("gritv2-s.fp32.onnx");
    for tiny_is_fallback in [true, false] {
        let (first, second) = if tiny_is_fallback {
            (&real, &tiny)
        } else {
            (&tiny, &real)
        };
        let primary = RelationModel::load(first, 1).unwrap();
        let fallback = load_fallback(second, 1).unwrap();
        let (kept, choice) = keep_faster(primary, fallback).unwrap();
        println!("{choice}");
        assert_eq!(kept.model().path(), tiny.as_path());
        assert_eq!(choice.kept.path, tiny);
        assert_eq!(choice.dropped.path, real);
        assert_eq!(choice.fallback_kept, tiny_is_fallback);
        assert!(choice.kept.best < choice.dropped.best, "{choice:?}");
        for t in [&choice.kept, &choice.dropped] {
            assert!((1..=MAX_RUNS).contains(&t.runs), "{t:?}");
        }
        // The tiny file fits all its runs in the budget.
        assert_eq!(choice.kept.runs, MAX_RUNS);
        let text = choice.to_string();
        assert!(
            text.starts_with(&format!(
                "kith-tiny-relation-{}.onnx, faster",
                std::process::id()
            )) && text.contains("gritv2-s.fp32.onnx"),
            "{text}"
        );
    }
    std::fs::remove_file(&tiny).unwrap();
}

#[test]
fn a_fallback_that_is_no_relation_model_is_refused_naming_the_field() {
    let err = load_fallback(&model("person-detector.onnx"), 1).unwrap_err();
    assert!(matches!(err, ChoiceError::Fallback(_)), "{err:?}");
    let text = format!("{}: {}", err, std::error::Error::source(&err).unwrap());
    assert!(
        text.starts_with("field `relation.fallback_model`: ")
            && text.contains("person-detector.onnx"),
        "{text}"
    );
}
