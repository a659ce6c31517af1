//! The audit's lookup-table hazard check on a graph with tract's DequantizeLinear -> Softmax ->
//! QuantizeLinear fault, and on one where the chain is safe.

mod common;

use kith_inspect::audit::audit;
use kith_runtime::model::{output_f32, ModelFile};

/// Builds `x [1, 16] -> QuantizeLinear -> DequantizeLinear -> middle... -> y` with int8 zero
/// points 0: `middle` lists (op, quantisation scale) steps, `None` for a plain op.
fn qdq_graph(path: &std::path::Path, steps: &[(&str, Option<f32>)]) {
    use tract_onnx::pb;
    let float = pb::tensor_proto::DataType::Float as i32;
    let mut nodes = vec![];
    let mut initializer = vec![pb::TensorProto {
        name: "zp".into(),
        data_type: pb::tensor_proto::DataType::Int8 as i32,
        int32_data: vec![0],
        ..Default::default()
    }];
    let mut wire = "x".to_owned();
    for (i, (op, scale)) in steps.iter().enumerate() {
        let mut node = |op: &str, inputs: Vec<String>| {
            let out = if i + 1 == steps.len() && op != "QuantizeLinear" {
                "y".to_owned()
            } else {
                format!("{op}_{i}")
            };
            nodes.push(pb::NodeProto {
                op_type: op.into(),
                input: inputs,
                output: vec![out.clone()],
                name: out.clone(),
                ..Default::default()
            });
            out
        };
        if let Some(s) = scale {
            let scale_name = format!("scale_{i}");
            initializer.push(pb::TensorProto {
                name: scale_name.clone(),
                data_type: float,
                float_data: vec![*s],
                ..Default::default()
            });
            let q = node(
                "QuantizeLinear",
                vec![wire.clone(), scale_name.clone(), "zp".into()],
            );
            wire = node("DequantizeLinear", vec![q, scale_name, "zp".into()]);
        } else {
            wire = node(op, vec![wire.clone()]);
        }
    }
    let graph = pb::GraphProto {
        name: "qdq-test".into(),
        node: nodes,
        initializer,
        input: vec![kith_onnx_build::float_value_info("x", &[1, 16])],
        output: vec![kith_onnx_build::float_value_info("y", &[1, 16])],
        ..Default::default()
    };
    kith_onnx_build::write_model(path, graph, &[]).unwrap();
}

/// The test input: 16 values from -2 to 2.
fn x() -> Vec<f32> {
    (0..16).map(|i| -2.0 + 4.0 * i as f32 / 15.0).collect()
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().fold(f32::MIN, |a, &b| a.max(b));
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// Runs the graph at `path` in tract as kith does, and returns max |y - want|.
fn max_diff_from(path: &std::path::Path, want: &[f32]) -> f32 {
    let mut m = ModelFile::load(path, 1).unwrap();
    m.input_mut(0).unwrap().copy_from_slice(&x());
    let out = m.run().unwrap();
    let y = output_f32(&m, &out, 0).unwrap();
    println!("{}: {y:?}", path.display());
    y.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

const IN_SCALE: f32 = 2.0 / 127.0;
const OUT_SCALE: f32 = 1.0 / 127.0;

#[test]
fn hazard_check_fails_on_the_softmax_lookup_table_fault() {
    let dir = std::env::temp_dir();
    let faulty = dir.join(format!("kith-qdq-softmax-{}.onnx", std::process::id()));
    qdq_graph(
        &faulty,
        &[
            ("q", Some(IN_SCALE)),
            ("Softmax", None),
            ("q", Some(OUT_SCALE)),
        ],
    );
    let report = audit(&faulty).unwrap();
    let want = softmax(&x());
    let diff = max_diff_from(&faulty, &want);
    std::fs::remove_file(&faulty).unwrap();
    println!(
        "faulty graph: hazards {:?}, max |tract - f32 softmax| {diff}",
        report.hazards
    );
    assert!(
        report
            .hazards
            .iter()
            .any(|h| h.kind == "lut-chain" && h.detail.contains("Softmax")),
        "the audit missed the DQ -> Softmax -> Q chain: {:?}",
        report.hazards
    );
    // The bug itself: tract evaluates softmax per element (all ones), far from the real one.
    assert!(
        diff > 0.5,
        "tract's output is {diff} from softmax: the fault is gone?"
    );
}

#[test]
fn hazard_check_passes_softmax_outside_the_qdq_chain() {
    let dir = std::env::temp_dir();
    let safe = dir.join(format!("kith-qdq-safe-{}.onnx", std::process::id()));
    // DQ -> Sigmoid -> Q is element-wise and folds into a correct lookup table; the Softmax runs
    // in f32 after the last DequantizeLinear.
    qdq_graph(
        &safe,
        &[
            ("q", Some(IN_SCALE)),
            ("Sigmoid", None),
            ("q", Some(OUT_SCALE)),
            ("Softmax", None),
        ],
    );
    let report = audit(&safe).unwrap();
    let sigmoid: Vec<f32> = x().iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    let diff = max_diff_from(&safe, &softmax(&sigmoid));
    std::fs::remove_file(&safe).unwrap();
    println!(
        "safe graph: hazards {:?}, max |tract - f32| {diff}",
        report.hazards
    );
    assert!(
        report.nodes.iter().any(|n| n.op == "LookupTable"),
        "no lookup table: the proven-chain path is not exercised ({:?})",
        report.nodes.iter().map(|n| &n.op).collect::<Vec<_>>()
    );
    assert!(report.hazards.is_empty(), "{:?}", report.hazards);
    assert!(diff < 0.01, "tract's output is {diff} from the f32 result");
}
