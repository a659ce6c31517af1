//! Camera emulation shared by the camera tests: frames in every wire format made from a reference
//! RGB image (YUV by the BT.601 limited-range transform V4L2 uses, MJPEG by a real JPEG encoder),
//! named pipes, and board configs.

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use kith::camera::CameraFormat;
use kith_runtime::image::rgb_to_yuv;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-camera-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A named pipe at `dir/name`.
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// A packed RGB image.
#[derive(Debug, Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

/// A demo frame (a photograph of people, 640x480), optionally scaled down.
pub fn demo_frame(n: usize, width: u32, height: u32) -> Rgb {
    let path = repo().join(format!("board-configs/demo/frames/frame_{n:03}.jpg"));
    let img = image::open(&path).unwrap().to_rgb8();
    let img = if (img.width(), img.height()) == (width, height) {
        img
    } else {
        image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle)
    };
    Rgb {
        width: width as usize,
        height: height as usize,
        data: img.into_raw(),
    }
}

/// A smooth image: colour ramps in x and y, with no edge sharper than a few levels per pixel.
pub fn smooth(width: usize, height: usize) -> Rgb {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            data.extend_from_slice(&[
                (20 + x * 215 / width) as u8,
                (230 - y * 200 / height) as u8,
                (60 + (x + y) * 150 / (width + height)) as u8,
            ]);
        }
    }
    Rgb {
        width,
        height,
        data,
    }
}

/// The luma (full range, as V4L2 GREY carries it) of an RGB pixel, BT.601 weights.
pub fn grey_of(p: [u8; 3]) -> u8 {
    let [r, g, b] = p.map(u32::from);
    ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8
}

/// Mean of the YUV of the pixels at `points` (chroma subsampling by averaging).
fn mean_yuv(img: &Rgb, points: &[(usize, usize)]) -> [u8; 3] {
    let mut sum = [0u32; 3];
    for &(x, y) in points {
        let yuv = rgb_to_yuv(img.pixel(x.min(img.width - 1), y.min(img.height - 1)));
        for c in 0..3 {
            sum[c] += u32::from(yuv[c]);
        }
    }
    let n = points.len() as u32;
    sum.map(|s| ((s + n / 2) / n) as u8)
}

/// `img` in `format` as a camera sends it, rows `stride` bytes apart (first plane; 0 = packed).
/// The padding bytes are filled with 0xAB so a reader that ignores the stride is caught.
pub fn encode(img: &Rgb, format: CameraFormat, stride: usize) -> Vec<u8> {
    let (w, h) = (img.width, img.height);
    let packed = match format {
        CameraFormat::Yuyv | CameraFormat::Uyvy => w * 2,
        CameraFormat::Rgb24 => w * 3,
        _ => w,
    };
    let s = if stride == 0 { packed } else { stride };
    assert!(s >= packed);
    match format {
        CameraFormat::Rgb24 | CameraFormat::Grey | CameraFormat::Yuyv | CameraFormat::Uyvy => {
            let mut out = vec![0xAB; s * h];
            for y in 0..h {
                let row = &mut out[y * s..y * s + packed];
                for x in 0..w {
                    let p = img.pixel(x, y);
                    match format {
                        CameraFormat::Rgb24 => row[x * 3..x * 3 + 3].copy_from_slice(&p),
                        CameraFormat::Grey => row[x] = grey_of(p),
                        _ if x % 2 == 0 => {
                            let [_, u, v] = mean_yuv(img, &[(x, y), (x + 1, y)]);
                            let y0 = rgb_to_yuv(p)[0];
                            let y1 = rgb_to_yuv(img.pixel((x + 1).min(w - 1), y))[0];
                            let quad = if format == CameraFormat::Yuyv {
                                [y0, u, y1, v]
                            } else {
                                [u, y0, v, y1]
                            };
                            row[x * 2..x * 2 + 4].copy_from_slice(&quad);
                        }
                        _ => {}
                    }
                }
            }
            out
        }
        CameraFormat::Nv12 | CameraFormat::Yuv420 => {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            let chroma_stride = if format == CameraFormat::Nv12 {
                s
            } else {
                s.div_ceil(2)
            };
            let luma_len = s * h;
            let planes = if format == CameraFormat::Nv12 { 1 } else { 2 };
            let mut out = vec![0xAB; luma_len + planes * chroma_stride * ch];
            for y in 0..h {
                for x in 0..w {
                    out[y * s + x] = rgb_to_yuv(img.pixel(x, y))[0];
                }
            }
            let v_plane = luma_len + chroma_stride * ch;
            for cy in 0..ch {
                for cx in 0..cw {
                    let (x, y) = (cx * 2, cy * 2);
                    let [_, u, v] =
                        mean_yuv(img, &[(x, y), (x + 1, y), (x, y + 1), (x + 1, y + 1)]);
                    let row = luma_len + cy * chroma_stride;
                    if format == CameraFormat::Nv12 {
                        out[row + cx * 2] = u;
                        out[row + cx * 2 + 1] = v;
                    } else {
                        out[row + cx] = u;
                        out[v_plane + cy * chroma_stride + cx] = v;
                    }
                }
            }
            out
        }
        CameraFormat::Mjpeg => jpeg(img, JPEG_QUALITY),
    }
}

/// The JPEG quality of the emulated MJPEG camera (UVC webcams send about this).
pub const JPEG_QUALITY: u8 = 90;

/// `img` as a baseline JPEG of `quality`, by the `image` crate's encoder.
pub fn jpeg(img: &Rgb, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            &img.data,
            img.width as u32,
            img.height as u32,
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// Mean and largest absolute difference per channel value between two RGB buffers.
pub fn rgb_error(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += u64::from(d);
        max = max.max(d);
    }
    (sum as f64 / a.len() as f64, max)
}

/// board-configs/demo.toml with its paths made absolute and without its `fallback_model`, for the
/// tests that are not about the start-up rule: the INT8 file runs whatever this CPU's timings, and
/// nothing is timed at start-up (timing both files costs about a minute under qemu-user).
pub fn demo_board() -> String {
    let demo = std::fs::read_to_string(repo().join("board-configs/demo.toml")).unwrap();
    assert!(demo.contains("\nfallback_model = "), "{demo}");
    demo.lines()
        .filter(|line| !line.starts_with("fallback_model"))
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        .replace("\"../models/", &format!("\"{}/models/", repo().display()))
        .replace(
            "\"demo/frames\"",
            &format!("\"{}/board-configs/demo/frames\"", repo().display()),
        )
}

/// [`demo_board`] written to `dir`/board.toml; returns its path.
pub fn write_demo_board(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("board.toml");
    std::fs::write(&path, demo_board()).unwrap();
    path
}

/// [`demo_board`] with `camera` as its camera table, run one frame at a time (not pipelined) so
/// every frame finishes as it is captured.
pub fn board_with_camera(camera: &str) -> String {
    let demo = demo_board().replace("pipelined = true", "pipelined = false");
    let start = demo.find("[camera]").unwrap();
    let end = demo.find("[display]").unwrap();
    format!("{}[camera]\n{camera}\n\n{}", &demo[..start], &demo[end..])
}

/// Lines a child writes to one of its streams, as they come.
pub fn lines(stream: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends SIGTERM; returns how long the child took to exit and whether it exited with 0.
pub fn terminate(child: &mut std::process::Child) -> (std::time::Duration, bool) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::time::{Duration, Instant};
    let start = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (start.elapsed(), status.success());
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("kith did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
