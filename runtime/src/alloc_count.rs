//! A counting global allocator, so kith can prove and report what a frame allocates.
//!
//! A binary installs [`CountingAllocator`] as its `#[global_allocator]`. The pipeline wraps each
//! tract call in a [`ModelScope`]; allocations made while a scope is open (on any thread, tract's
//! workers included) are counted as the model's, all others as kith's own. The split is exact when
//! frames run on one thread; with the pipelined relation worker, kith's own allocations made while
//! a model runs on the other thread would be counted as the model's.
//!
//! Under a model's [`crate::model_arena::ModelArena`], the requests of the thread that runs the
//! model are served from the arena's buffer once a run has been logged and laid out: almost none
//! reach the allocator underneath. [`AllocCounts::model_system`] counts the ones that still do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::model_arena;

/// Model calls under way (two when a pipelined relation model runs beside the detector).
static IN_MODEL: AtomicUsize = AtomicUsize::new(0);
static OWN_COUNT: AtomicU64 = AtomicU64::new(0);
static OWN_BYTES: AtomicU64 = AtomicU64::new(0);
static MODEL_COUNT: AtomicU64 = AtomicU64::new(0);
static MODEL_BYTES: AtomicU64 = AtomicU64::new(0);
static MODEL_SYSTEM_COUNT: AtomicU64 = AtomicU64::new(0);
static MODEL_SYSTEM_BYTES: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// An allocator `A` (the system's, or e.g. mimalloc), counting allocations (and reallocations)
/// and their bytes, and serving model runs from their arenas (`crate::model_arena`).
pub struct CountingOver<A>(pub A);

/// [`CountingOver`] the system allocator: `static A: CountingAllocator = CountingAllocator;`.
pub type CountingAllocator = CountingOver<System>;

/// The value of [`CountingAllocator`], named like the type, as a unit struct would be.
#[allow(non_upper_case_globals)]
pub const CountingAllocator: CountingAllocator = CountingOver(System);

impl<A> CountingOver<A> {
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

    /// Counts a model allocation that reached `A`.
    fn count_system(size: usize) {
        if IN_MODEL.load(Relaxed) > 0 {
            MODEL_SYSTEM_COUNT.fetch_add(1, Relaxed);
            MODEL_SYSTEM_BYTES.fetch_add(size as u64, Relaxed);
        }
    }

    /// A block of `layout` from `A`, counted as reaching it.
    ///
    /// # Safety
    /// `layout` has a non-zero size.
    unsafe fn alloc_underneath(&self, layout: Layout) -> *mut u8
    where
        A: GlobalAlloc,
    {
        Self::count_system(layout.size());
        // SAFETY: `layout` has a non-zero size (our contract).
        unsafe { self.0.alloc(layout) }
    }
}

// SAFETY: every block handed out comes from `A` with the layout asked for, or is a block of a
// model arena's buffer that no other live block overlaps (model_arena's plan); every block given
// back to `A` goes with the layout it was allocated with, and no arena block is given to `A`.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingOver<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY (both calls): our caller's layout has a non-zero size.
        model_arena::alloc(layout, || unsafe { self.alloc_underneath(layout) })
            .unwrap_or_else(|| unsafe { self.alloc_underneath(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: our caller's layout has a non-zero size.
        if let Some(block) = model_arena::alloc(layout, || unsafe { self.alloc_underneath(layout) })
        {
            if !block.is_null() {
                // SAFETY: the block holds `layout.size()` bytes and is ours alone.
                unsafe { block.write_bytes(0, layout.size()) };
            }
            return block;
        }
        Self::count_system(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if model_arena::dealloc(ptr) {
            return;
        }
        // SAFETY: same contract as our caller's; the block is not an arena's, so it came from
        // `A` with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !model_arena::active_here() && !model_arena::holds(ptr) {
            Self::count(new_size);
            Self::count_system(new_size);
            // SAFETY: same contract as our caller's.
            return unsafe { self.0.realloc(ptr, layout, new_size) };
        }
        // Inside an arena's run, or an arena's block: a new block and a free, so that the run's
        // requests are the same whether a block grows in place or not.
        // SAFETY: the caller guarantees `new_size`, rounded up to `layout.align()`, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: same contract as our caller's (new_size is non-zero).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least this long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: `ptr` is the caller's block of `layout`, no longer used.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
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
    /// Of those, the ones that reached the allocator underneath (the others came from a model
    /// arena).
    pub model_system: u64,
    pub model_system_bytes: u64,
}

impl AllocCounts {
    /// The counts now. All zero when no [`CountingAllocator`] is installed.
    pub fn now() -> Self {
        AllocCounts {
            own: OWN_COUNT.load(Relaxed),
            own_bytes: OWN_BYTES.load(Relaxed),
            model: MODEL_COUNT.load(Relaxed),
            model_bytes: MODEL_BYTES.load(Relaxed),
            model_system: MODEL_SYSTEM_COUNT.load(Relaxed),
            model_system_bytes: MODEL_SYSTEM_BYTES.load(Relaxed),
        }
    }

    /// What was allocated between `earlier` and `self`.
    pub fn since(&self, earlier: &AllocCounts) -> AllocCounts {
        AllocCounts {
            own: self.own - earlier.own,
            own_bytes: self.own_bytes - earlier.own_bytes,
            model: self.model - earlier.model,
            model_bytes: self.model_bytes - earlier.model_bytes,
            model_system: self.model_system - earlier.model_system,
            model_system_bytes: self.model_system_bytes - earlier.model_system_bytes,
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
