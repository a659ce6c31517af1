//! A counting global allocator, so kith can prove and report what a frame allocates.
//!
//! A binary installs [`CountingAllocator`] as its `#[global_allocator]`. The pipeline wraps each
//! tract call in a [`ModelScope`]; allocations made while a scope is open (on any thread, tract's
//! workers included) are counted as the model's, all others as kith's own. The split is exact when
//! frames run on one thread; with the pipelined relation worker, kith's own allocations made while
//! a model runs on the other thread would be counted as the model's.
//!
//! With [`recycle_model_memory`] on, blocks freed while a model runs are kept in a pool keyed by
//! their exact size and alignment and handed back to the next model allocation of that layout:
//! tract runs the same graph every frame, so after the first frame its requests are served from
//! the pool and almost none reach the system allocator (no malloc/free, no mmap/munmap of large
//! tensors, no page faults). [`AllocCounts::model_system`] counts the ones that still do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

/// Model calls under way (two when a pipelined relation model runs beside the detector).
static IN_MODEL: AtomicUsize = AtomicUsize::new(0);
static OWN_COUNT: AtomicU64 = AtomicU64::new(0);
static OWN_BYTES: AtomicU64 = AtomicU64::new(0);
static MODEL_COUNT: AtomicU64 = AtomicU64::new(0);
static MODEL_BYTES: AtomicU64 = AtomicU64::new(0);
static MODEL_SYSTEM_COUNT: AtomicU64 = AtomicU64::new(0);
static MODEL_SYSTEM_BYTES: AtomicU64 = AtomicU64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static RECYCLE: AtomicBool = AtomicBool::new(false);
static POOL: Mutex<Pool> = Mutex::new(Pool::EMPTY);

/// Layouts the pool can key (open addressing); a layout that finds no slot is not pooled.
const POOL_SLOTS: usize = 4096;
/// Probes before a layout gives up on a slot.
const POOL_PROBES: usize = 32;
/// Most memory the pool keeps; blocks freed beyond it go back to the system allocator.
const POOL_MAX_BYTES: usize = 512 << 20;

/// Free blocks of one layout: a list threaded through the blocks' first word.
#[derive(Clone, Copy)]
struct Slot {
    size: usize,
    align: usize,
    /// Address of the first free block, 0 when none.
    head: usize,
}

/// Freed model blocks by layout, and the bytes they hold.
struct Pool {
    slots: [Slot; POOL_SLOTS],
    bytes: usize,
}

impl Pool {
    const EMPTY: Pool = Pool {
        slots: [Slot {
            size: 0,
            align: 0,
            head: 0,
        }; POOL_SLOTS],
        bytes: 0,
    };

    /// The slot of `layout`, claiming a free one when `claim` (None when the table is full).
    fn slot(&mut self, layout: Layout, claim: bool) -> Option<&mut Slot> {
        let (size, align) = (layout.size(), layout.align());
        // Fibonacci hashing in 64 bits on every target (usize is 32 bits on armv7).
        let hash = (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ align as u64;
        let start = ((hash >> 7) % POOL_SLOTS as u64) as usize;
        let ix = (0..POOL_PROBES)
            .map(|p| (start + p) % POOL_SLOTS)
            .find(|&i| {
                let s = &self.slots[i];
                (s.size == size && s.align == align) || (claim && s.size == 0)
            })?;
        let slot = &mut self.slots[ix];
        if slot.size == 0 {
            *slot = Slot {
                size,
                align,
                head: 0,
            };
        }
        Some(slot)
    }

    /// A free block of `layout`, if the pool has one.
    fn take(&mut self, layout: Layout) -> Option<*mut u8> {
        let slot = self.slot(layout, false)?;
        let block = slot.head as *mut u8;
        if block.is_null() {
            return None;
        }
        // SAFETY: `block` is a free block of at least one word that `put` linked into this list.
        slot.head = unsafe { block.cast::<usize>().read_unaligned() };
        self.bytes -= layout.size();
        Some(block)
    }

    /// Keeps `block` of `layout` for reuse; false when it is not kept (the caller frees it).
    fn put(&mut self, block: *mut u8, layout: Layout) -> bool {
        if self.bytes + layout.size() > POOL_MAX_BYTES {
            return false;
        }
        let Some(slot) = self.slot(layout, true) else {
            return false;
        };
        // SAFETY: the caller hands over a block of `layout`, at least one word long; nothing
        // else uses it while it is in the list.
        unsafe { block.cast::<usize>().write_unaligned(slot.head) };
        slot.head = block as usize;
        self.bytes += layout.size();
        true
    }
}

/// Whether a block of `layout` may go through the pool: freed or allocated while a model runs,
/// recycling on, and large enough to hold the list link.
fn poolable(layout: Layout) -> bool {
    RECYCLE.load(Relaxed)
        && IN_MODEL.load(Relaxed) > 0
        && layout.size() >= std::mem::size_of::<usize>()
}

/// Recycles the blocks model calls free for later model calls (see the module notes). Takes
/// effect only with [`CountingAllocator`] installed; may be switched at any time.
pub fn recycle_model_memory(on: bool) {
    RECYCLE.store(on, Relaxed);
}

/// An allocator `A` (the system's, or e.g. mimalloc), counting allocations (and reallocations)
/// and their bytes, and recycling model memory when asked.
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

    /// Counts a model allocation that the pool could not serve.
    fn count_system(size: usize) {
        if IN_MODEL.load(Relaxed) > 0 {
            MODEL_SYSTEM_COUNT.fetch_add(1, Relaxed);
            MODEL_SYSTEM_BYTES.fetch_add(size as u64, Relaxed);
        }
    }

    /// A recycled block of `layout`, when recycling applies and the pool has one.
    fn from_pool(layout: Layout) -> Option<*mut u8> {
        if !poolable(layout) {
            return None;
        }
        POOL.lock().ok()?.take(layout)
    }
}

// SAFETY: every block handed out comes from `A` with the layout asked for, directly or through the
// pool (which keeps `A`'s blocks by exact layout and hands each to one owner at a time); every
// block given back to `A` goes with the layout it was allocated with.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingOver<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        if let Some(block) = Self::from_pool(layout) {
            return block;
        }
        Self::count_system(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        if let Some(block) = Self::from_pool(layout) {
            // SAFETY: the pooled block holds `layout.size()` bytes and is ours alone.
            unsafe { block.write_bytes(0, layout.size()) };
            return block;
        }
        Self::count_system(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if poolable(layout) && POOL.lock().is_ok_and(|mut pool| pool.put(ptr, layout)) {
            return;
        }
        // SAFETY: same contract as our caller's; every block, pooled or not, came from `A`
        // with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !poolable(layout) {
            Self::count(new_size);
            Self::count_system(new_size);
            // SAFETY: same contract as our caller's.
            return unsafe { self.0.realloc(ptr, layout, new_size) };
        }
        // A block the pool may keep does not grow in place: it moves, through the pool.
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
    /// Of those, the ones that reached the system allocator (all of them unless
    /// [`recycle_model_memory`] is on).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_returns_a_block_only_for_its_own_layout_and_keeps_its_byte_count() {
        let mut pool = Pool::EMPTY;
        let a = Layout::from_size_align(4096, 64).unwrap();
        let b = Layout::from_size_align(4096, 16).unwrap();
        // SAFETY: non-zero sizes; every block goes back to System with its layout below.
        let (x, y) = unsafe { (System.alloc(a), System.alloc(a)) };
        assert!(!x.is_null() && !y.is_null());
        assert!(pool.put(x, a) && pool.put(y, a));
        assert_eq!(pool.bytes, 8192);
        assert_eq!(pool.take(b), None);
        assert_eq!(pool.take(a), Some(y));
        assert_eq!(pool.take(a), Some(x));
        assert_eq!(pool.take(a), None);
        assert_eq!(pool.bytes, 0);
        // SAFETY: both blocks came from System with layout `a` and are no longer in the pool.
        unsafe {
            System.dealloc(x, a);
            System.dealloc(y, a);
        }
    }

    #[test]
    fn the_pool_refuses_blocks_beyond_its_byte_limit() {
        let mut pool = Pool::EMPTY;
        pool.bytes = POOL_MAX_BYTES - 8;
        let small = Layout::from_size_align(8, 8).unwrap();
        let large = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero sizes; both blocks go back to System with their layouts below.
        let (s, l) = unsafe { (System.alloc(small), System.alloc(large)) };
        assert!(!pool.put(l, large));
        assert!(pool.put(s, small));
        assert_eq!(pool.bytes, POOL_MAX_BYTES);
        assert_eq!(pool.take(small), Some(s));
        // SAFETY: both blocks came from System with these layouts and are out of the pool.
        unsafe {
            System.dealloc(s, small);
            System.dealloc(l, large);
        }
    }
}
