//! Allocations per frame of capture + conversion from a real named pipe: none for raw frames
//! (I420, YUYV), and the count for MJPEG, whose JPEG decoder allocates its own scratch per image.
//! This file holds one test only, so no other test allocates while it counts.

mod common;

use std::io::Write;

use common::*;
use kith::camera::pipe::PipeSource;
use kith::camera::{CameraFormat, FrameSource, PipeSettings, Retry};
use kith::service::StopFlag;
use kith_runtime::alloc_count::{AllocCounts, CountingAllocator};
use kith_runtime::image::RgbImage;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WARMUP: usize = 2;
const MEASURED: usize = 20;

/// Own allocations (count, bytes) over the measured frames.
fn measure(format: CameraFormat, dir: &std::path::Path) -> (u64, u64) {
    let (w, h) = (640u32, 480u32);
    let path = fifo(dir, format.name());
    let bytes = encode(&demo_frame(5, w, h), format, 0);
    let writer_path = path.clone();
    // The writer writes the same prepared bytes again and again: it allocates nothing per frame.
    let writer = std::thread::spawn(move || {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .unwrap();
        for _ in 0..WARMUP + MEASURED {
            pipe.write_all(&bytes).unwrap();
        }
    });
    let settings = PipeSettings {
        path,
        format,
        width: w,
        height: h,
        retry: Retry {
            min: std::time::Duration::from_millis(10),
            max: std::time::Duration::from_millis(10),
        },
    };
    let mut source = PipeSource::open(&settings, StopFlag::new()).unwrap();
    // The pipeline's preallocated conversion buffer.
    let mut rgb = RgbImage::with_capacity(w as usize, h as usize);
    let mut frame = |source: &mut PipeSource| {
        let captured = source.next_frame().unwrap().unwrap();
        rgb.convert_from(&captured.frame).unwrap();
        assert_eq!((rgb.width, rgb.height), (w as usize, h as usize));
    };
    for _ in 0..WARMUP {
        frame(&mut source);
    }
    let before = AllocCounts::now();
    for _ in 0..MEASURED {
        frame(&mut source);
    }
    let d = AllocCounts::now().since(&before);
    writer.join().unwrap();
    (d.own, d.own_bytes)
}

#[test]
fn raw_pipe_frames_allocate_nothing_and_mjpeg_is_measured() {
    let dir = temp_dir("allocations");
    for format in [CameraFormat::Yuv420, CameraFormat::Yuyv] {
        let (count, bytes) = measure(format, &dir);
        println!("{format}: {count} allocations ({bytes} bytes) in {MEASURED} frames");
        assert_eq!(count, 0, "{format}: capture + conversion allocated");
    }
    let (count, bytes) = measure(CameraFormat::Mjpeg, &dir);
    println!(
        "mjpeg: {:.1} allocations ({:.0} bytes) per 640x480 frame, all inside the JPEG decoder",
        count as f64 / MEASURED as f64,
        bytes as f64 / MEASURED as f64
    );
    assert!(count > 0, "the counter sees the decoder's allocations");
    std::fs::remove_dir_all(&dir).unwrap();
}
