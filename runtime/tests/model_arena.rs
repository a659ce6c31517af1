//! The model arena (`kith_runtime::model_arena`) on the shipped models: runs served from its
//! buffer give bit for bit the outputs of runs on the system allocator, and once it has a plan
//! almost none of tract's requests reach the system allocator. One test only: the arena switch
//! and the allocation counts are the process's.

mod common;

use common::model;
use kith_runtime::alloc_count::{AllocCounts, CountingAllocator};
use kith_runtime::model::{output_f32, ModelFile};
use kith_runtime::model_arena::plan_model_memory;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Loads `file` and fills its inputs with the same values every time.
fn loaded(file: &str, threads: usize) -> ModelFile {
    let mut m = ModelFile::load(&model(file), threads).unwrap();
    for ix in 0..m.inputs().len() {
        for (i, v) in m.input_mut(ix).unwrap().iter_mut().enumerate() {
            *v = 0.5 + 0.5 * (i as f32 * 0.37).sin();
        }
    }
    m
}

/// One run's outputs, as bits.
fn run_bits(m: &mut ModelFile) -> Vec<Vec<u32>> {
    let out = m.run().unwrap();
    (0..m.outputs().len())
        .map(|ix| {
            output_f32(m, &out, ix)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

#[test]
fn served_runs_give_the_system_allocators_outputs_and_reach_it_rarely() {
    const RUNS: usize = 10;
    for (file, threads) in [
        ("person-detector.int8.onnx", 1),
        ("gritv2-s.int8.onnx", 1),
        ("gritv2-s.fp32.onnx", 1),
        // With a thread pool the plan's thread makes a varying share of the small requests.
        ("gritv2-s.int8.onnx", 2),
    ] {
        plan_model_memory(false);
        let mut plain = loaded(file, threads);
        let expected = run_bits(&mut plain);
        drop(plain);

        plan_model_memory(true);
        let mut m = loaded(file, threads);
        let (mut requests, mut reached, mut bytes, mut bytes_reached) = (0, 0, 0, 0);
        for run in 0..RUNS {
            let before = AllocCounts::now();
            let got = run_bits(&mut m);
            let d = AllocCounts::now().since(&before);
            assert!(
                got == expected,
                "{file}, {threads} thread(s): run {run} differs"
            );
            if run >= RUNS / 2 {
                requests += d.model;
                reached += d.model_system;
                bytes += d.model_bytes;
                bytes_reached += d.model_system_bytes;
            }
        }
        let stats = m.arena_stats();
        println!(
            "{file}, {threads} thread(s): {stats:?}; last {} runs: {requests} requests ({bytes} bytes), {reached} ({bytes_reached} bytes) reached the system allocator",
            RUNS - RUNS / 2
        );
        assert!(
            stats.plans >= 1 && stats.buffer_bytes > 0,
            "{file}: no plan"
        );
        assert!(
            bytes_reached * 10 < bytes,
            "{file}, {threads} thread(s): {bytes_reached} of {bytes} bytes reached the system allocator"
        );
        // With a pool, the plan's thread makes a share of a parallel op's small requests that
        // changes from run to run; those strays go to the system allocator.
        let share = if threads == 1 { 10 } else { 4 };
        assert!(
            reached * share < requests,
            "{file}, {threads} thread(s): {reached} of {requests} requests reached the system allocator"
        );
        if threads == 1 {
            assert!(stats.served_runs >= 3, "{file}: {stats:?}");
        }
    }
    plan_model_memory(true);
}
