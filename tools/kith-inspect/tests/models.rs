//! The shipped model files as the tools read them: checksums against MODELS.md, parameter and
//! MAC counts.

mod common;

use common::{model, repo};
use kith_inspect::info::{file_sha256, inspect};

#[test]
fn models_match_their_recorded_sha256() {
    let text = std::fs::read_to_string(repo().join("models/MODELS.md")).unwrap();
    let rows: Vec<(String, u64, String)> = text
        .lines()
        .filter_map(|l| {
            let cells: Vec<_> = l
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            match cells[..] {
                [file, bytes, sha] if file.ends_with(".onnx") => {
                    Some((file.to_owned(), bytes.parse().ok()?, sha.to_owned()))
                }
                _ => None,
            }
        })
        .collect();
    assert!(rows.len() >= 3, "MODELS.md lists {} files", rows.len());
    for (file, bytes, sha) in &rows {
        let path = model(file);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            *bytes,
            "{file}: size differs from MODELS.md"
        );
        assert_eq!(
            &file_sha256(&path).unwrap(),
            sha,
            "{file}: sha256 differs from MODELS.md"
        );
    }
    for entry in std::fs::read_dir(repo().join("models")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".onnx") {
            assert!(
                rows.iter().any(|r| r.0 == name),
                "{name} has no row in MODELS.md"
            );
            assert!(
                std::fs::metadata(model(&name)).unwrap().len() < 100 * 1024 * 1024,
                "{name} is over 100 MB"
            );
        }
    }
}
#[test]
fn int8_file_size_and_counts_are_as_documented() {
    let int8 = inspect(&model("gritv2-s.int8.onnx")).unwrap();
    let mb = int8.bytes as f64 / 1e6;
    assert!((15.0..=30.0).contains(&mb), "INT8 file is {mb:.1} MB");
    assert!(
        int8.params_by_type.get("int8").copied().unwrap_or(0) > 15_000_000,
        "{:?}",
        int8.params_by_type
    );
    let fp32 = inspect(&model("gritv2-s.fp32.onnx")).unwrap();
    assert!(
        (20_000_000..22_000_000).contains(&fp32.params),
        "{} parameters",
        fp32.params
    );
    // Same network: the MACs agree within a few percent whatever the precision.
    let ratio = int8.macs as f64 / fp32.macs as f64;
    assert!(
        (0.95..1.05).contains(&ratio),
        "int8 {} vs fp32 {} MACs",
        int8.macs,
        fp32.macs
    );
    assert!(fp32.macs > 2_000_000_000, "{} MACs", fp32.macs);
}
