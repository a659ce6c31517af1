//! A global allocator for test binaries that run the models: every allocation aligned to 16
//! bytes or more (tract's tensors and packed matrix operands, kith's im2col output; not the
//! graph's vectors and strings) gets a mapping of its own whose last byte is the last byte
//! before an inaccessible page. A kernel that reads past the end of its operand then faults at
//! once instead of reading whatever the heap holds there, which crashes only when the block
//! happens to end a mapping. Blocks start at their alignment below that end, so a read of more
//! than `align` bytes past the end always faults. Found with it: tract-linalg's AMX int8
//! kernels read up to 60 x 16 bytes past their packed activations (docs/int8.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::null_mut;

pub struct GuardPageAllocator;

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the process; it allocates nothing.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn guarded(layout: &Layout) -> bool {
    layout.align() >= 16 && layout.size() > 0 && layout.align() <= page_size()
}

unsafe impl GlobalAlloc for GuardPageAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !guarded(&layout) {
            // SAFETY: the caller's contract for `alloc`, passed on.
            return unsafe { System.alloc(layout) };
        }
        let page = page_size();
        let data = layout.size().div_ceil(page) * page;
        // SAFETY: a new private anonymous mapping at an address the kernel picks; nothing else
        // refers to it.
        let base = unsafe {
            libc::mmap(
                null_mut(),
                data + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return null_mut();
        }
        let guard = base as usize + data;
        // SAFETY: the last page of the mapping just made, which nothing uses.
        if unsafe { libc::mprotect(guard as *mut libc::c_void, page, libc::PROT_NONE) } != 0 {
            // SAFETY: the whole mapping just made, unused.
            unsafe { libc::munmap(base, data + page) };
            return null_mut();
        }
        // `base` is page-aligned, so this stays inside the mapping.
        ((guard - layout.size()) & !(layout.align() - 1)) as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !guarded(&layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout (`alloc` above).
            return unsafe { System.dealloc(ptr, layout) };
        }
        let page = page_size();
        let data = layout.size().div_ceil(page) * page;
        let guard = (ptr as usize + layout.size()).next_multiple_of(page);
        // SAFETY: the mapping `alloc` made for this block: it ends one page past `guard`.
        unsafe { libc::munmap((guard - data) as *mut libc::c_void, data + page) };
    }
}
