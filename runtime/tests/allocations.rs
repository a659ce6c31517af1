//! After the first frame, kith's own per-frame path (everything outside tract's run calls)
//! allocates nothing: preprocess, detection decoding, tracking, relation decoding, smoothing,
//! privacy blur, overlay. (The firmware's JSON line has its own count,
//! firmware/tests/output_allocations.rs.)
//! This file holds one test only, so no other test allocates while it counts.

mod common;

use common::{demo_frames, model};
use kith_runtime::alloc_count::{AllocCounts, CountingAllocator};
use kith_runtime::image::RgbImage;
use kith_runtime::overlay::{OverlaySettings, Privacy};
use kith_runtime::{
    DetectorSettings, Pipeline, PipelineSettings, SmoothingSettings, TrackerSettings,
};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn twenty_steady_frames_allocate_nothing_outside_the_models() {
    // One after the other, then pipelined (relations on a worker thread).
    for pipelined in [false, true] {
        let settings = PipelineSettings {
            threads: 1,
            detector: DetectorSettings::default(),
            pipelined,
            tracker: TrackerSettings::default(),
            // On, so that the smoother's path is counted too.
            smoothing: SmoothingSettings {
                enabled: true,
                ..SmoothingSettings::default()
            },
            overlay: OverlaySettings {
                privacy: Privacy::Blur,
                ..OverlaySettings::default()
            },
        };
        let mut pipeline = Pipeline::load(
            &model("person-detector.onnx"),
            &model("gritv2-s.fp32.onnx"),
            settings,
        )
        .unwrap();
        let frames = demo_frames();
        let mut canvas = RgbImage::new(640, 480);
        let mut run_frame = |i: usize, pipeline: &mut Pipeline| {
            let (name, img) = &frames[i % frames.len()];
            if !pipeline.step(&img.as_frame(), name, 0).unwrap() {
                return 0;
            }
            let Ok(()) = pipeline.render(&mut canvas);
            pipeline.finish().relations.len()
        };
        run_frame(0, &mut pipeline);
        run_frame(1, &mut pipeline);
        let mut own = 0;
        let mut model_allocs = 0;
        let mut pairs = 0;
        for i in 2..22 {
            let before = AllocCounts::now();
            pairs += run_frame(i, &mut pipeline);
            let d = AllocCounts::now().since(&before);
            own += d.own;
            model_allocs += d.model;
            if d.own > 0 {
                println!(
                    "frame {i}: {} own allocations ({} bytes)",
                    d.own, d.own_bytes
                );
            }
        }
        println!(
            "pipelined {pipelined}: 20 frames, {pairs} pairs: {own} own allocations, {model_allocs} in tract ({} per frame)",
            model_allocs / 20
        );
        assert!(pairs > 20, "the frames must exercise the relation model");
        assert!(model_allocs > 0, "the counter sees tract's allocations");
        assert_eq!(
            own, 0,
            "kith's own per-frame path allocated (pipelined: {pipelined})"
        );
    }
}
