//! Model memory laid out from a logged run, as ONNX Runtime's memory patterns do.
//!
//! tract asks for about 3,000 blocks a frame (every op's output, a packed copy of each matmul's
//! dynamic operand) and frees nearly all of them before the run ends. The graph and its shapes are
//! fixed, so every run asks for nearly the same blocks in the same order. A [`ModelArena`] logs
//! each run on the thread that runs the plan: every request's layout and when its block was freed.
//! From a run's log it lays out every block that the run freed in one buffer, blocks alive at the
//! same time never sharing bytes (greedy by size, as TFLite's arena planner), and serves the next
//! runs' requests from it: no malloc, no free, no page faults. Blocks that outlived the logged run
//! (its outputs, what tract keeps) never go in the buffer.
//!
//! A run need not repeat the log exactly: the first runs of a model differ from the later ones,
//! and with a thread pool how many of a parallel op's small temporaries fall on the plan's thread
//! changes from run to run. So the n-th request of a layout is matched with the n-th logged
//! request of that layout (a count per layout, which the other layouts' strays do not shift), and
//! it gets that block's bytes only if no block of the buffer in use overlaps them; otherwise it
//! goes to the system allocator. A run that strays costs speed, never correctness. When a run
//! strays, the plan is laid out again from its log: at once after the first plan, then after twice
//! as many runs at each new plan (so a model whose runs always stray lays out less and less often).
//!
//! Some blocks of a served run are never freed (seen: four small ones of the relation model, made
//! on its first runs on the pipeline's worker thread). A new plan then goes in a new buffer; the
//! old one is retired: its pages other than those blocks' are given back to the kernel, and it is
//! freed with the last of them.
//!
//! The hooks run inside the global allocator ([`crate::alloc_count::CountingOver`]) and never
//! allocate: their lists are reserved beforehand and grown between runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Arenas that can exist at once (kith loads three models: the detector and both relation files).
const SLOTS: usize = 8;
/// Every block's offset is a multiple of this (or of its own larger alignment).
const BLOCK_ALIGN: usize = 64;
/// The buffer's alignment: a page, so that blocks aligned to a page stay so.
const BUFFER_ALIGN: usize = 4096;
/// Events reserved for the first log; a run with more is logged again with twice as many.
const FIRST_EVENTS: usize = 8192;
/// Blocks allocated and not yet freed that a log can follow; doubled the same way.
const FIRST_OPEN: usize = 1024;
/// The longest wait, in runs, between a run that strayed and a new plan.
const MAX_WAIT: u64 = 1 << 12;

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static ENABLED: AtomicBool = AtomicBool::new(true);

thread_local! {
    /// The slot whose run this thread is executing, plus one (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Whether model runs use their arenas (on by default). Only a counting global allocator
/// ([`crate::alloc_count::CountingAllocator`]) consults them.
pub fn plan_model_memory(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// One model's arena: a slot of the global table, claimed for the model's life.
#[derive(Debug)]
pub struct ModelArena {
    slot: Option<usize>,
}

/// What an arena has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Runs with no plan yet (all their blocks came from the system allocator).
    pub unplanned_runs: u64,
    /// Runs that got every planned block from the buffer.
    pub served_runs: u64,
    /// Runs that strayed from the plan: some planned blocks came from the system allocator.
    pub partial_runs: u64,
    /// Plans laid out.
    pub plans: u64,
    /// Blocks of a run that the buffer holds.
    pub planned_blocks: usize,
    /// Size of the buffer.
    pub buffer_bytes: usize,
}

/// One request or free of a logged run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Alloc(Layout),
    /// The block of the given request (its index among the run's requests) was freed.
    Free(u32),
}

/// A block of the buffer in use: its offsets, and the run and request that got it.
#[derive(Debug, Clone, Copy)]
struct InUse {
    start: usize,
    end: usize,
    run: u64,
    request: u32,
}

struct State {
    /// Runs begun; the one under way, if any, is the last.
    runs: u64,
    /// Whether a run is under way.
    running: bool,
    /// The model is gone but blocks of its buffers are still in use: the last free of them
    /// releases the buffers and the slot.
    orphaned: bool,
    /// The run's log.
    events: Vec<Event>,
    /// The log did not fit in `events` or `open`: the run is not planned from.
    overflowed: bool,
    /// The run's blocks from the system allocator not yet freed, as (address, request index).
    open: Vec<(usize, u32)>,
    /// The run's requests so far.
    requests: u32,
    /// Blocks of the run served from the buffer.
    served: usize,
    /// Per request of the planned run: its offset in the buffer, or `None` (the system
    /// allocator); empty when there is no plan.
    offsets: Vec<Option<usize>>,
    /// The planned run's layouts, ordered by size and alignment, each with the range of
    /// `by_layout` that lists its requests.
    layouts: Vec<(Layout, Range<usize>)>,
    /// The planned run's requests (indices), grouped by layout in `layouts`' order, each group in
    /// the run's order.
    by_layout: Vec<u32>,
    /// Per entry of `layouts`: the requests of that layout the current run has made.
    taken: Vec<u32>,
    /// Runs that strayed from the plan since it was laid out.
    runs_on_plan: u64,
    /// Blocks of the buffer in use, in offset order.
    live: Vec<InUse>,
    /// Address and layout of the buffer (0 when none).
    buffer: usize,
    buffer_layout: Layout,
    /// Address, layout and blocks still in use of the retired buffer (0 when none).
    retired: usize,
    retired_layout: Layout,
    retired_in_use: usize,
    stats: ArenaStats,
}

struct Slot {
    claimed: AtomicBool,
    /// The buffer's address range, readable by a free on any thread without the lock.
    start: AtomicUsize,
    end: AtomicUsize,
    /// The same for the retired buffer.
    retired_start: AtomicUsize,
    retired_end: AtomicUsize,
    state: Mutex<State>,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            claimed: AtomicBool::new(false),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            retired_start: AtomicUsize::new(0),
            retired_end: AtomicUsize::new(0),
            state: Mutex::new(State {
                runs: 0,
                running: false,
                orphaned: false,
                events: Vec::new(),
                overflowed: false,
                open: Vec::new(),
                requests: 0,
                served: 0,
                offsets: Vec::new(),
                layouts: Vec::new(),
                by_layout: Vec::new(),
                taken: Vec::new(),
                runs_on_plan: 0,
                live: Vec::new(),
                buffer: 0,
                buffer_layout: Layout::new::<u8>(),
                retired: 0,
                retired_layout: Layout::new::<u8>(),
                retired_in_use: 0,
                stats: ArenaStats {
                    unplanned_runs: 0,
                    served_runs: 0,
                    partial_runs: 0,
                    plans: 0,
                    planned_blocks: 0,
                    buffer_bytes: 0,
                },
            }),
        }
    }

    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }

    fn holds(&self, addr: usize) -> bool {
        within(&self.start, &self.end, addr)
    }

    fn retired_holds(&self, addr: usize) -> bool {
        within(&self.retired_start, &self.retired_end, addr)
    }
}

/// Whether `addr` lies in the range `start..end` (none when `start` is 0).
fn within(start: &AtomicUsize, end: &AtomicUsize, addr: usize) -> bool {
    let start = start.load(Ordering::Acquire);
    start != 0 && addr >= start && addr < end.load(Ordering::Acquire)
}

impl ModelArena {
    /// Claims a slot; with none free (more than eight models at once), the model runs on the
    /// system allocator alone.
    pub fn new() -> Self {
        let slot = TABLE.iter().position(|s| {
            s.claimed
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        if let Some(ix) = slot {
            if let Some(mut state) = TABLE[ix].lock() {
                // A slot given back by an orphaned model keeps its lists, emptied.
                forget_plan(&mut state);
                state.events.reserve(FIRST_EVENTS);
                state.open.reserve(FIRST_OPEN);
                state.live.reserve(FIRST_OPEN);
            }
        }
        ModelArena { slot }
    }

    /// Opens a run on this thread: its requests are logged, and served from the buffer when
    /// there is a plan, until the guard drops. Call it on the thread that runs the plan.
    pub fn enter(&self) -> ArenaRun<'_> {
        let Some(ix) = self.slot.filter(|_| ENABLED.load(Ordering::Relaxed)) else {
            return ArenaRun::none();
        };
        let Some(mut state) = TABLE[ix].lock() else {
            return ArenaRun::none();
        };
        state.runs += 1;
        state.running = true;
        state.events.clear();
        state.open.clear();
        state.overflowed = false;
        state.requests = 0;
        state.served = 0;
        state.taken.iter_mut().for_each(|t| *t = 0);
        drop(state);
        CURRENT.with(|c| c.set(ix + 1));
        ArenaRun {
            slot: Some(ix),
            _model: PhantomData,
        }
    }

    /// What the arena has done so far.
    pub fn stats(&self) -> ArenaStats {
        self.slot
            .and_then(|ix| TABLE[ix].lock().map(|s| s.stats))
            .unwrap_or_default()
    }
}

impl Default for ModelArena {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ModelArena {
    fn drop(&mut self) {
        let Some(ix) = self.slot else { return };
        let slot = &TABLE[ix];
        let Some(mut state) = slot.lock() else { return };
        if !state.live.is_empty() || state.retired_in_use > 0 {
            // A block of a buffer is still in use (something kept it past the model's life, such
            // as a thread-local cache of tract's): the last free of one releases the slot.
            state.orphaned = true;
            forget_plan(&mut state);
            return;
        }
        release_buffer(slot, &mut state);
        let lists = (
            std::mem::take(&mut state.events),
            std::mem::take(&mut state.open),
            std::mem::take(&mut state.offsets),
            std::mem::take(&mut state.layouts),
            std::mem::take(&mut state.by_layout),
            std::mem::take(&mut state.taken),
            std::mem::take(&mut state.live),
        );
        state.running = false;
        state.stats = ArenaStats::default();
        drop(state);
        drop(lists);
        slot.claimed.store(false, Ordering::Release);
    }
}

/// A run under way on this thread (see [`ModelArena::enter`]); it stays on that thread.
pub struct ArenaRun<'a> {
    slot: Option<usize>,
    _model: PhantomData<(&'a ModelArena, *const ())>,
}

impl ArenaRun<'_> {
    fn none() -> Self {
        ArenaRun {
            slot: None,
            _model: PhantomData,
        }
    }
}

impl Drop for ArenaRun<'_> {
    fn drop(&mut self) {
        let Some(ix) = self.slot else { return };
        // From here on this thread's requests are its own again, so growing the lists and laying
        // out the plan below may allocate.
        CURRENT.with(|c| c.set(0));
        let slot = &TABLE[ix];
        let Some(mut state) = slot.lock() else { return };
        state.running = false;
        let planned = state.stats.planned_blocks;
        let lay_out_again = if state.offsets.is_empty() {
            state.stats.unplanned_runs += 1;
            true
        } else if state.served == planned {
            state.stats.served_runs += 1;
            false
        } else {
            state.stats.partial_runs += 1;
            state.runs_on_plan += 1;
            let plans = state.stats.plans.min(13) as u32;
            state.runs_on_plan >= (1u64 << plans.saturating_sub(1)).min(MAX_WAIT)
        };
        if state.overflowed {
            let (events, open) = (state.events.capacity(), state.open.capacity());
            state.events.reserve(events);
            state.open.reserve(open);
        } else if lay_out_again {
            plan(slot, &mut state);
        }
    }
}

/// Drops the plan, keeping its lists' memory: the next run is logged only.
fn forget_plan(state: &mut State) {
    state.offsets.clear();
    state.layouts.clear();
    state.by_layout.clear();
    state.taken.clear();
    state.stats.planned_blocks = 0;
}

/// Frees the slot's buffer (no block of it may be in use).
fn release_buffer(slot: &Slot, state: &mut State) {
    slot.start.store(0, Ordering::Release);
    slot.end.store(0, Ordering::Release);
    if state.buffer != 0 {
        // SAFETY: `buffer` came from `System.alloc(buffer_layout)` in `plan` and no block of it
        // is in use (`live` is empty).
        unsafe { System.dealloc(state.buffer as *mut u8, state.buffer_layout) };
    }
    state.buffer = 0;
    state.stats.buffer_bytes = 0;
}

/// Retires the slot's buffer, whose blocks in `live` something keeps: the pages they do not
/// touch go back to the kernel, and [`dealloc`] frees the buffer with the last of them.
fn retire_buffer(slot: &Slot, state: &mut State) {
    let page = BUFFER_ALIGN;
    let mut from = 0usize;
    let gaps = state.live.iter().map(|b| (b.start, b.end));
    for (until, next) in gaps.chain([(state.buffer_layout.size(), 0)]) {
        let (first, last) = (from.next_multiple_of(page), until / page * page);
        if last > first {
            // SAFETY: `first..last` lies inside the buffer, which stays allocated, and no block in
            // use overlaps it; dropping its pages only makes them read as zeros if touched again.
            unsafe {
                libc::madvise(
                    (state.buffer + first) as *mut libc::c_void,
                    last - first,
                    libc::MADV_DONTNEED,
                )
            };
        }
        from = next;
    }
    state.retired = state.buffer;
    state.retired_layout = state.buffer_layout;
    state.retired_in_use = state.live.len();
    state.live.clear();
    slot.retired_end
        .store(slot.end.load(Ordering::Acquire), Ordering::Release);
    slot.retired_start.store(state.buffer, Ordering::Release);
    slot.start.store(0, Ordering::Release);
    slot.end.store(0, Ordering::Release);
    state.buffer = 0;
    state.stats.buffer_bytes = 0;
}

/// Lays out the blocks that the logged run freed, and makes sure the buffer holds them. Keeps
/// the old plan when the buffer must grow while a block of it is in use, or cannot.
fn plan(slot: &Slot, state: &mut State) {
    let mut blocks: Vec<Block> = Vec::with_capacity(state.requests as usize);
    let mut layouts: Vec<Layout> = Vec::with_capacity(state.requests as usize);
    for (at, event) in state.events.iter().enumerate() {
        match *event {
            Event::Alloc(layout) => {
                layouts.push(layout);
                blocks.push(Block {
                    size: layout.size(),
                    align: layout.align().max(BLOCK_ALIGN),
                    start: at,
                    end: None,
                });
            }
            Event::Free(ix) => {
                if let Some(b) = blocks.get_mut(ix as usize) {
                    b.end = Some(at);
                }
            }
        }
    }
    let (offsets, size) = lay_out(&blocks);
    if size == 0 {
        return;
    }
    let fits = state.buffer != 0 && size <= state.buffer_layout.size();
    if !fits || !state.live.is_empty() {
        if !state.live.is_empty() && state.retired != 0 {
            // Blocks of both buffers are still in use: the old plan stays.
            return;
        }
        // The old plan points into the buffer given up here; until the new one is in place,
        // there is none.
        forget_plan(state);
        if state.live.is_empty() {
            release_buffer(slot, state);
        } else {
            retire_buffer(slot, state);
        }
        let Ok(layout) = Layout::from_size_align(size, BUFFER_ALIGN) else {
            return;
        };
        // SAFETY: `layout` has a non-zero size.
        let buffer = unsafe { System.alloc(layout) };
        if buffer.is_null() {
            return;
        }
        state.buffer = buffer as usize;
        state.buffer_layout = layout;
        state.stats.buffer_bytes = size;
        slot.start.store(buffer as usize, Ordering::Release);
        slot.end.store(buffer as usize + size, Ordering::Release);
    }
    let placed = offsets.iter().flatten().count();
    // A run may have every planned block in use at once, and a few of a run before.
    let room = placed + FIRST_OPEN;
    state.live.reserve(room.saturating_sub(state.live.len()));
    let mut order: Vec<u32> = (0..layouts.len() as u32).collect();
    order.sort_by_key(|&i| (layouts[i as usize].size(), layouts[i as usize].align(), i));
    let mut groups: Vec<(Layout, Range<usize>)> = Vec::new();
    for (at, &i) in order.iter().enumerate() {
        let layout = layouts[i as usize];
        match groups.last_mut() {
            Some((l, range)) if *l == layout => range.end = at + 1,
            _ => groups.push((layout, at..at + 1)),
        }
    }
    state.taken = vec![0; groups.len()];
    state.layouts = groups;
    state.by_layout = order;
    state.offsets = offsets;
    state.runs_on_plan = 0;
    state.stats.plans += 1;
    state.stats.planned_blocks = placed;
}

/// One recorded request: its size, alignment in the buffer, and the event positions at which it
/// was allocated and freed (`None`: it outlived the run).
#[derive(Debug, Clone, Copy)]
struct Block {
    size: usize,
    align: usize,
    start: usize,
    end: Option<usize>,
}

/// Offsets for the blocks that were freed (`None` for the others), largest first, each at the
/// lowest aligned offset where it overlaps no placed block alive at the same time; and the buffer
/// size that holds them all.
fn lay_out(blocks: &[Block]) -> (Vec<Option<usize>>, usize) {
    let mut order: Vec<usize> = (0..blocks.len())
        .filter(|&i| blocks[i].end.is_some())
        .collect();
    order.sort_by(|&a, &b| blocks[b].size.cmp(&blocks[a].size).then(a.cmp(&b)));
    let mut offsets = vec![None; blocks.len()];
    // Placed blocks' bytes and the event positions they are alive over, in offset order.
    let mut placed: Vec<(Range<usize>, Range<usize>)> = Vec::with_capacity(order.len());
    let mut size = 0;
    for i in order {
        let b = blocks[i];
        let alive = b.start..b.end.unwrap_or(usize::MAX);
        let mut offset = 0usize;
        for (bytes, when) in &placed {
            if when.start >= alive.end || alive.start >= when.end {
                continue;
            }
            if offset.next_multiple_of(b.align) + b.size <= bytes.start {
                break;
            }
            offset = offset.max(bytes.end);
        }
        let offset = offset.next_multiple_of(b.align);
        offsets[i] = Some(offset);
        size = size.max(offset + b.size);
        let pos = placed.partition_point(|(r, _)| r.start <= offset);
        placed.insert(pos, (offset..offset + b.size, alive));
    }
    (offsets, size)
}

/// Serves `layout` for the run this thread is executing, if any, from the buffer or from `system`,
/// and logs the request. `None`: no run here.
pub(crate) fn alloc(layout: Layout, system: impl FnOnce() -> *mut u8) -> Option<*mut u8> {
    let ix = CURRENT.try_with(Cell::get).unwrap_or(0).checked_sub(1)?;
    let Some(mut state) = TABLE[ix].lock() else {
        return Some(system());
    };
    let state = &mut *state;
    let request = state.requests;
    state.requests += 1;
    log(state, Event::Alloc(layout));
    if let Some(block) = from_buffer(state, layout, request) {
        return Some(block);
    }
    let block = system();
    if block.is_null() {
        return Some(block);
    }
    if state.open.len() < state.open.capacity() {
        state.open.push((block as usize, request));
    } else {
        state.overflowed = true;
    }
    Some(block)
}

/// The planned block of the run's `request` (of `layout`), when no block in use overlaps it.
fn from_buffer(state: &mut State, layout: Layout, request: u32) -> Option<*mut u8> {
    let key = (layout.size(), layout.align());
    let kind = state
        .layouts
        .binary_search_by_key(&key, |(l, _)| (l.size(), l.align()))
        .ok()?;
    let taken = state.taken.get_mut(kind)?;
    let nth = *taken as usize;
    *taken += 1;
    let group = state.by_layout.get(state.layouts[kind].1.clone())?;
    let planned = *group.get(nth)?;
    let start = (*state.offsets.get(planned as usize)?)?;
    let end = start + layout.size();
    // The first block in use that ends after `start` must begin at or after `end`.
    let pos = state.live.partition_point(|b| b.end <= start);
    let free = state.live.get(pos).is_none_or(|b| b.start >= end);
    if !free || state.live.len() == state.live.capacity() {
        return None;
    }
    let run = state.runs;
    state.live.insert(
        pos,
        InUse {
            start,
            end,
            run,
            request,
        },
    );
    state.served += 1;
    Some((state.buffer + start) as *mut u8)
}

/// Takes back `ptr` if it is a block of an arena's buffer (true: the caller must not free it), and
/// logs the free of a block of the run under way on this thread.
pub(crate) fn dealloc(ptr: *mut u8) -> bool {
    let addr = ptr as usize;
    let here = CURRENT.try_with(Cell::get).unwrap_or(0).checked_sub(1);
    if let Some(ix) = TABLE.iter().position(|s| s.holds(addr)) {
        if let Some(mut state) = TABLE[ix].lock() {
            let state = &mut *state;
            let start = addr - state.buffer;
            let pos = state.live.partition_point(|b| b.start < start);
            if state.live.get(pos).is_some_and(|b| b.start == start) {
                let block = state.live.remove(pos);
                if here == Some(ix) && state.running && block.run == state.runs {
                    log(state, Event::Free(block.request));
                }
            }
            release_if_orphaned(&TABLE[ix], state);
        }
        // With the lock poisoned the block is leaked, never handed to the system allocator.
        return true;
    }
    if let Some(slot) = TABLE.iter().find(|s| s.retired_holds(addr)) {
        if let Some(mut state) = slot.lock() {
            let state = &mut *state;
            state.retired_in_use = state.retired_in_use.saturating_sub(1);
            if state.retired_in_use == 0 {
                slot.retired_start.store(0, Ordering::Release);
                slot.retired_end.store(0, Ordering::Release);
                // SAFETY: the retired buffer came from `System.alloc(retired_layout)` in `plan`,
                // and this was the last of its blocks in use.
                unsafe { System.dealloc(state.retired as *mut u8, state.retired_layout) };
                state.retired = 0;
            }
            release_if_orphaned(slot, state);
        }
        return true;
    }
    let Some(ix) = here else { return false };
    if let Some(mut state) = TABLE[ix].lock() {
        let state = &mut *state;
        if let Some(pos) = state.open.iter().rposition(|&(a, _)| a == addr) {
            let (_, request) = state.open.swap_remove(pos);
            log(state, Event::Free(request));
        }
    }
    false
}

/// Once the last block of an orphaned slot's buffers is freed: frees the buffer and gives the slot
/// back (its lists stay reserved for the next model).
fn release_if_orphaned(slot: &Slot, state: &mut State) {
    if state.orphaned && state.live.is_empty() && state.retired_in_use == 0 {
        release_buffer(slot, state);
        state.orphaned = false;
        state.stats = ArenaStats::default();
        slot.claimed.store(false, Ordering::Release);
    }
}

/// Adds `event` to the run's log, or marks the log overflowed (it never grows inside the hooks).
fn log(state: &mut State, event: Event) {
    if state.events.len() < state.events.capacity() {
        state.events.push(event);
    } else {
        state.overflowed = true;
    }
}

/// Whether `ptr` is a block of an arena's buffer (current or retired).
pub(crate) fn holds(ptr: *mut u8) -> bool {
    let addr = ptr as usize;
    TABLE.iter().any(|s| s.holds(addr) || s.retired_holds(addr))
}

/// Whether this thread is executing a run with an arena.
pub(crate) fn active_here() -> bool {
    CURRENT.try_with(Cell::get).unwrap_or(0) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(size: usize, start: usize, end: Option<usize>) -> Block {
        Block {
            size,
            align: BLOCK_ALIGN,
            start,
            end,
        }
    }

    /// A request through the hooks, as the counting allocator makes it.
    fn request(layout: Layout) -> *mut u8 {
        // SAFETY: the test layouts have non-zero sizes.
        alloc(layout, || unsafe { System.alloc(layout) }).expect("a run is open on this thread")
    }

    /// A free through the hooks, as the counting allocator makes it.
    fn free(ptr: *mut u8, layout: Layout) {
        if !dealloc(ptr) {
            // SAFETY: not a buffer's block, so `request` got it from `System` with `layout`.
            unsafe { System.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn runs_are_served_from_the_buffer_and_blocks_kept_past_the_model_free_its_slot() {
        let a = Layout::from_size_align(1000, 8).unwrap();
        let b = Layout::from_size_align(24, 8).unwrap();
        let arena = ModelArena::new();
        let ix = arena.slot.expect("a free slot");
        // x and z are never alive together, y lives beside both; z outlives runs 3 and 4
        // when `keep_z`.
        let run = |keep_z: bool| {
            let _run = arena.enter();
            let x = request(a);
            let y = request(b);
            free(x, a);
            let z = request(a);
            if !keep_z {
                free(z, a);
            }
            free(y, b);
            (x, y, z)
        };
        let (x, _, _) = run(false);
        assert!(!holds(x), "the first run is only logged");
        let (x, y, z) = run(false);
        assert!(holds(x) && holds(y) && holds(z));
        assert_eq!(x, z, "x and z share bytes");
        assert_eq!(
            y as usize - x as usize,
            1024,
            "y after them, 64-byte aligned"
        );
        assert_eq!(arena.stats().served_runs, 1);
        let (_, _, kept) = run(true);
        assert!(holds(kept));
        // The next run's x and z would overlap the kept block: the system allocator serves them.
        let (x, y, z) = run(false);
        assert!(!holds(x) && holds(y) && !holds(z));
        let stats = arena.stats();
        assert_eq!(
            (stats.served_runs, stats.partial_runs, stats.plans),
            (2, 1, 2)
        );
        // That run was laid out anew in a new buffer; the kept block's retired with it.
        assert!(holds(kept));
        let (x, _, _) = run(false);
        assert!(holds(x) && x != kept);
        drop(arena);
        assert!(
            TABLE[ix].claimed.load(Ordering::Acquire),
            "a block is still in use"
        );
        free(kept, a);
        assert!(!holds(kept));
        assert!(
            !TABLE[ix].claimed.load(Ordering::Acquire),
            "the last free gave the slot back"
        );
    }

    /// Blocks alive at the same time never share a byte; offsets keep their alignment.
    fn check(blocks: &[Block], offsets: &[Option<usize>], size: usize) {
        for (i, a) in blocks.iter().enumerate() {
            let Some(oa) = offsets[i] else {
                assert!(a.end.is_none(), "block {i} was freed but not placed");
                continue;
            };
            assert_eq!(oa % a.align, 0, "block {i} misaligned");
            assert!(oa + a.size <= size);
            for (j, b) in blocks.iter().enumerate().skip(i + 1) {
                let Some(ob) = offsets[j] else { continue };
                let alive_together = a.start < b.end.unwrap() && b.start < a.end.unwrap();
                let share_bytes = oa < ob + b.size && ob < oa + a.size;
                assert!(
                    !(alive_together && share_bytes),
                    "blocks {i} and {j} overlap"
                );
            }
        }
    }

    #[test]
    fn blocks_alive_together_get_disjoint_bytes_and_later_ones_reuse_them() {
        // a and b live together; c starts after both are freed; d outlives the run.
        let blocks = [
            block(1000, 0, Some(3)),
            block(500, 1, Some(4)),
            block(1400, 5, Some(6)),
            block(64, 2, None),
        ];
        let (offsets, size) = lay_out(&blocks);
        check(&blocks, &offsets, size);
        assert_eq!(offsets[3], None);
        assert_eq!(offsets[2], Some(0), "c reuses the bytes of a and b");
        assert_eq!(size, 1524, "a at 0, b after it at 1024");
    }

    #[test]
    fn random_lifetimes_never_overlap_and_stay_near_the_peak_of_live_bytes() {
        // A xorshift generator: the same cases on every run.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for _ in 0..50 {
            let n = 1 + next(300);
            let blocks: Vec<Block> = (0..n)
                .map(|i| {
                    let start = 2 * i;
                    let end = (next(10) > 0).then(|| start + 1 + next(40));
                    Block {
                        size: 1 + next(100_000),
                        align: [64, 128, 4096][next(3)],
                        start,
                        end,
                    }
                })
                .collect();
            let (offsets, size) = lay_out(&blocks);
            check(&blocks, &offsets, size);
            let peak = (0..2 * n + 40)
                .map(|t| {
                    blocks
                        .iter()
                        .filter(|b| b.end.is_some_and(|e| b.start <= t && t < e))
                        .map(|b| b.size)
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(0);
            assert!(size >= peak);
            assert!(size <= 2 * peak + 8192, "{size} bytes for a peak of {peak}");
        }
    }
}
