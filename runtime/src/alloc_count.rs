//! A counting global allocator, so kith can prove and report what a frame allocates.
//!
//! A binary installs [`CountingAllocator`] as its `#[global_allocator]`. The pipeline wraps each
//! tract call in a [`ModelScope`]; allocations made while a scope is open (on any thread, tract's
//! workers included) are counted as the model's, all others as kith's own. The split is exact when
//! frames run on one thread; with the pipelined relation worker, kith's own allocations made while
//! a model runs on the other thread would be counted as the model's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Model calls under way (two when a pipelined relation model runs beside the detector).
static IN_MODEL: AtomicUsize = AtomicUsize::new(0);
static OWN_COUNT: AtomicU64 = AtomicU64::new(0);
static OWN_BYTES: AtomicU64 = AtomicU64::new(0);
static MODEL_COUNT: AtomicU64 = AtomicU64::new(0);
static MODEL_BYTES: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting allocations (and reallocations) and their bytes.
pub struct CountingAllocator;

impl CountingAllocator {
    fn count(size: usize) {
        INSTALLED.store(true, Relaxed);
        if IN_MODEL.load(Relaxed) > 0 {
            MODEL_COUNT.fetch_add(1, Relaxed);
            MODEL_BYTES.fetch_add(size as u64, Relaxed);
        } else {
            OWN_COUNT.fetch_add(1, Relaxed);
            OWN_BYTES.fetch_add(size as u64, Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting has no effect on the
// memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation counts since the start of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocCounts {
    /// Allocations by kith's own code.
    pub own: u64,
    pub own_bytes: u64,
    /// Allocations made inside model calls (tract).
    pub model: u64,
    pub model_bytes: u64,
}

impl AllocCounts {
    /// The counts now. All zero when no [`CountingAllocator`] is installed.
    pub fn now() -> Self {
        AllocCounts {
            own: OWN_COUNT.load(Relaxed),
            own_bytes: OWN_BYTES.load(Relaxed),
            model: MODEL_COUNT.load(Relaxed),
            model_bytes: MODEL_BYTES.load(Relaxed),
        }
    }

    /// What was allocated between `earlier` and `self`.
    pub fn since(&self, earlier: &AllocCounts) -> AllocCounts {
        AllocCounts {
            own: self.own - earlier.own,
            own_bytes: self.own_bytes - earlier.own_bytes,
            model: self.model - earlier.model,
            model_bytes: self.model_bytes - earlier.model_bytes,
        }
    }
}

/// Whether the process counts allocations (a [`CountingAllocator`] is installed and has seen one).
pub fn is_counting() -> bool {
    INSTALLED.load(Relaxed)
}

/// Marks the allocations made while it lives as the model's.
pub struct ModelScope(());

impl ModelScope {
    /// Opens a scope; it closes when dropped.
    pub fn enter() -> Self {
        IN_MODEL.fetch_add(1, Relaxed);
        ModelScope(())
    }
}

impl Drop for ModelScope {
    fn drop(&mut self) {
        IN_MODEL.fetch_sub(1, Relaxed);
    }
}
