//! Privacy mode end to end: `kith run` on the first demo frame with a framebuffer file and
//! `--snapshots`, once with `privacy = "blur"` and once without. Everything outside the person
//! boxes is the same pixel for pixel in the PNG and in the framebuffer; inside the boxes the
//! photograph's detail is gone (the overlay, drawn after the blur, is the same in both runs).

mod common;

use std::path::{Path, PathBuf};

/// What one run wrote: the snapshot, the framebuffer (as RGB) and the person boxes of its JSON.
struct Run {
    png: Vec<[u8; 3]>,
    fb: Vec<[u8; 3]>,
    boxes: Vec<[f64; 4]>,
    /// The JSON line without its timings.
    json: serde_json::Value,
}

const W: usize = 640;
const H: usize = 480;

fn run(dir: &Path, privacy: Option<&str>) -> Run {
    std::fs::create_dir_all(dir).unwrap();
    let fb = dir.join("fb0");
    std::fs::write(&fb, vec![0u8; W * H * 4]).unwrap();
    let mut board = common::demo_board().replace(
        "kind = \"png\"\nevery = 1",
        &format!(
            "kind = \"fbdev\"\ndevice = \"{}\"\nwidth = {W}\nheight = {H}\npixel_format = \"xrgb8888\"\nemulated = true",
            fb.display()
        ),
    );
    if let Some(mode) = privacy {
        board = board.replace("threads = 1", &format!("threads = 1\nprivacy = \"{mode}\""));
        assert!(board.contains("privacy"));
    }
    std::fs::write(dir.join("board.toml"), board).unwrap();
    let out_dir = dir.join("out");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--board"])
        .arg(dir.join("board.toml"))
        .arg("--out")
        .arg(&out_dir)
        .args(["--frames", "1", "--snapshots", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(out_dir.join("frames/000000.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), (W as u32, H as u32));
    let fb = std::fs::read(&fb).unwrap();
    let line = std::fs::read_to_string(out_dir.join("results.jsonl")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let boxes = json["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let b: Vec<f64> = p["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            [b[0], b[1], b[2], b[3]]
        })
        .collect();
    json.as_object_mut().unwrap().remove("timings_us");
    Run {
        png: png.pixels().map(|p| p.0).collect(),
        fb: fb.chunks_exact(4).map(|p| [p[2], p[1], p[0]]).collect(),
        boxes,
        json,
    }
}

/// Whether (x, y) is within `margin` pixels of box `b` (the JSON rounds to 0.1 px).
fn in_box(b: &[f64; 4], x: usize, y: usize, margin: f64) -> bool {
    let (x, y) = (x as f64, y as f64);
    x >= b[0].floor() - margin
        && x < b[2].ceil() + margin
        && y >= b[1].floor() - margin
        && y < b[3].ceil() + margin
}

/// The photograph's detail inside box `b`: the mean difference of horizontal neighbours, over
/// the pixels where the two runs differ (so the overlay, the same in both, is left out).
fn detail(image: &[[u8; 3]], other: &[[u8; 3]], b: &[f64; 4]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for y in (b[1].ceil() as usize + 3)..(b[3].floor() as usize).min(H).saturating_sub(3) {
        for x in (b[0].ceil() as usize + 3)..(b[2].floor() as usize).min(W).saturating_sub(4) {
            let (i, j) = (y * W + x, y * W + x + 1);
            if image[i] == other[i] || image[j] == other[j] {
                continue;
            }
            sum += (0..3)
                .map(|c| (image[i][c] as f64 - image[j][c] as f64).abs())
                .sum::<f64>();
            n += 1;
        }
    }
    assert!(n > 1000, "{n} pixels of the photograph in box {b:?}");
    sum / n as f64
}

fn check(plain: &[[u8; 3]], private: &[[u8; 3]], boxes: &[[f64; 4]], what: &str) {
    let mut outside = 0;
    for y in 0..H {
        for x in 0..W {
            if boxes.iter().any(|b| in_box(b, x, y, 1.0)) {
                continue;
            }
            outside += 1;
            assert_eq!(
                plain[y * W + x],
                private[y * W + x],
                "{what}: ({x}, {y}) outside the boxes changed"
            );
        }
    }
    assert!(
        outside > W * H / 20,
        "{what}: {outside} pixels outside the boxes"
    );
    for b in boxes {
        let (before, after) = (detail(plain, private, b), detail(private, plain, b));
        println!("{what}: box {b:?}: detail {before:.1} -> {after:.2}");
        assert!(
            after < before / 4.0,
            "{what}: box {b:?}: {before} -> {after}"
        );
    }
}

#[test]
fn blur_hides_the_boxes_in_the_png_and_the_framebuffer_and_nothing_else() {
    let dir: PathBuf = common::temp_dir("privacy");
    let plain = run(&dir.join("off"), None);
    let private = run(&dir.join("blur"), Some("blur"));
    assert_eq!(plain.json, private.json, "the JSON is unaffected");
    assert!(plain.boxes.len() >= 2, "{:?}", plain.boxes);
    assert_eq!(
        private.png, private.fb,
        "the framebuffer shows the snapshot"
    );
    check(&plain.png, &private.png, &private.boxes, "png");
    check(&plain.fb, &private.fb, &private.boxes, "framebuffer");
    std::fs::remove_dir_all(&dir).unwrap();
}
