//! MJPEG find + decode: the bytes of a pipe (a file here) played through kith's `PipeSource`,
//! which finds each JPEG by its markers and decodes it, under an allocator that refuses to hold
//! more than 128 MiB at once (an allocation failure aborts: libFuzzer reports it as a crash).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kith::camera::pipe::PipeSource;
use kith::camera::{CameraFormat, FrameSource, PipeSettings, Retry, SourceError};
use kith::service::StopFlag;
use libfuzzer_sys::fuzz_target;

/// Most bytes live at once: a 640x480 camera's frames need a few MB; a header claiming more is
/// refused before the decoder allocates.
const CAP: usize = 128 << 20;

/// The system allocator, failing any allocation that would take the live total past [`CAP`].
struct Capped;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only the bookkeeping is added.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > CAP {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fuzz_target!(|input: &[u8]| {
    let path = std::env::temp_dir().join(format!("kith-fuzz-mjpeg-{}", std::process::id()));
    std::fs::write(&path, input).expect("temp file");
    let settings = PipeSettings {
        path: path.clone(),
        format: CameraFormat::Mjpeg,
        width: 640,
        height: 480,
        retry: Retry {
            min: Duration::from_millis(1),
            max: Duration::from_millis(1),
        },
    };
    let mut source = PipeSource::open(&settings, StopFlag::new()).expect("open a file");
    for _ in 0..input.len() + 1 {
        match source.next_frame() {
            Ok(Some(captured)) => {
                let f = captured.frame;
                assert!(
                    f.width <= 640 && f.height <= 480,
                    "{}x{}",
                    f.width,
                    f.height
                );
                f.validate().expect("a decoded frame is whole");
            }
            Ok(None)
            | Err(
                SourceError::Fatal { .. } | SourceError::Lost(_) | SourceError::Unusable { .. },
            ) => break,
            Err(SourceError::Corrupt { detail, .. }) => assert!(!detail.contains('\n')),
        }
    }
    let _ = std::fs::remove_file(&path);
});
