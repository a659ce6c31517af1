//! Drawing a camera frame on the displays: the 640x480 frame scaled onto the screens of the shipped
//! boards through [`Framebuffer`] (a file standing in for /dev/fb0), in both pixel formats it
//! encodes, then copied to the mapping (`present`); and onto the in-memory display (an
//! [`RgbImage`], what kith-bench's render stage and PNG snapshots draw on) at the frame's own size
//! and at 1280x800.
//!
//! Run: `cargo bench -p kith --bench display -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use kith::display::fbdev::Framebuffer;
use kith::display::spec::{FbPixelFormat, FbdevSpec};
use kith_runtime::image::RgbImage;
use kith_runtime::overlay::draw_frame;

/// Screens: an SPI panel, a small HDMI/DSI screen, the arm64 VM's virtio-gpu, full HD.
const SCREENS: [(u32, u32); 4] = [(240, 240), (800, 480), (1280, 800), (1920, 1080)];

/// A deterministic 640x480 picture with texture (no flat colour).
fn picture() -> RgbImage {
    let (w, h) = (640, 480);
    let mut img = RgbImage::new(w, h);
    for (i, px) in img.data.chunks_exact_mut(3).enumerate() {
        let (x, y) = (i % w, i / w);
        let noise = ((x * 7919 + y * 104_729) ^ (x * y)) % 61;
        px.copy_from_slice(&[
            (x + noise) as u8,
            (y + 2 * noise) as u8,
            ((x + y) / 3) as u8,
        ]);
    }
    img
}

fn screen(dir: &std::path::Path, w: u32, h: u32, format: FbPixelFormat) -> Framebuffer {
    let bytes = if format == FbPixelFormat::Rgb565 {
        2
    } else {
        4
    };
    let device: PathBuf = dir.join(format!("fb-{w}x{h}-{bytes}"));
    std::fs::write(&device, vec![0u8; (w * h * bytes) as usize])
        .expect("bench: cannot write the screen file");
    let spec = FbdevSpec {
        device,
        emulated: true,
        width: Some(w),
        height: Some(h),
        pixel_format: Some(format),
        line_length: None,
    };
    Framebuffer::open(&spec).expect("bench: cannot open the emulated framebuffer")
}

fn framebuffer(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("kith-display-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench: cannot create a temporary directory");
    let img = picture();
    let frame = img.as_frame();
    let mut group = c.benchmark_group("fbdev");
    for (w, h) in SCREENS {
        for (name, format) in [
            ("xrgb8888", FbPixelFormat::Xrgb8888),
            ("rgb565", FbPixelFormat::Rgb565),
        ] {
            let mut fb = screen(&dir, w, h, format);
            let id = format!("640x480 to {w}x{h} {name}");
            group.bench_function(BenchmarkId::new("draw_frame", &id), |b| {
                b.iter(|| {
                    let Ok(()) = draw_frame(&mut fb, black_box(&frame));
                })
            });
            group.bench_function(BenchmarkId::new("present", &id), |b| {
                b.iter(|| fb.present())
            });
        }
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn memory(c: &mut Criterion) {
    let img = picture();
    let frame = img.as_frame();
    let mut group = c.benchmark_group("memory");
    for (w, h) in [(640, 480), (1280, 800)] {
        let mut canvas = RgbImage::new(w, h);
        group.bench_function(
            BenchmarkId::new("draw_frame", format!("640x480 to {w}x{h}")),
            |b| {
                b.iter(|| {
                    let Ok(()) = draw_frame(&mut canvas, black_box(&frame));
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, framebuffer, memory);
criterion_main!(benches);
