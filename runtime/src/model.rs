//! Loading an ONNX model with tract, checking its inputs and outputs, and running it with input
//! tensors that are allocated once and refilled in place every frame.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::matmul::optimized::OptMatMul;
use tract_onnx::tract_core::plan::SimpleState;

use crate::alloc_count::ModelScope;
use crate::error::{LoadError, RunError};
use crate::model_arena::{ArenaStats, ModelArena};
use crate::{Error, Result};

type Plan = Arc<TypedRunnableModel>;

/// Name and fixed shape of one model input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A loaded, optimised model ready to run on its preallocated inputs.
pub struct ModelFile {
    path: PathBuf,
    state: SimpleState<TypedFact, Box<dyn TypedOp>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    input_tensors: Vec<Arc<Tensor>>,
    metadata: BTreeMap<String, String>,
    /// See [`LoadedGraph::narrowed_products`].
    narrowed_products: usize,
    /// The thread pool of tract's matrix products when `threads > 1`: the plan runs on one of its
    /// workers (see [`ModelFile::run`]).
    executor: Option<multithread::Executor>,
    /// Serves the run's requests from a buffer laid out from a logged run (see
    /// [`crate::model_arena`]).
    arena: ModelArena,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelFile")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// Metadata keys under which ONNX `metadata_props` appear in tract's model properties.
const METADATA_PREFIX: &str = "onnx.metadata_props.";

/// The instruction set tract-linalg detected on this CPU (after `TRACT_CPU_ISA`), as the start-up
/// banner and the tools name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TractIsa {
    /// The architecture, e.g. `aarch64` (`none` when tract knows none).
    pub arch: String,
    /// The detected features.
    pub isa: String,
    /// tract's one-word name of that level.
    pub level: String,
}

/// The instruction set tract-linalg uses on this machine.
pub fn tract_isa() -> TractIsa {
    let isa = tract_linalg::isa::native();
    TractIsa {
        arch: isa
            .arch()
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        isa: format!("{isa:?}"),
        level: isa.nickname().to_owned(),
    }
}

/// The last component of `path`, for messages and reports.
pub fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// An ONNX file's graph as kith runs it ([`load_optimized`]).
pub struct LoadedGraph {
    /// The optimised graph, kith's passes applied.
    pub model: TypedModel,
    /// The file's `metadata_props` under kith's prefix (`kith.labels`, ...).
    pub metadata: BTreeMap<String, String>,
    /// How many quantised products had their weights narrowed to 7 bits
    /// ([`crate::narrow_weights`]): 0 unless the file allows it and the CPU's int8 kernel gains.
    pub narrowed_products: usize,
}

/// The metadata key with which an INT8 file allows its weights to be narrowed to [-64, 64]
/// where that makes the int8 kernel faster ([`crate::narrow_weights`]): value `allowed`.
pub const NARROW_WEIGHTS_KEY: &str = "kith.int8_narrow_weights";

/// Loads, types and optimises an ONNX file as kith runs it, then applies kith's passes, which
/// swap tract ops for faster ones computing the same values ([`crate::int8`], [`crate::maxpool`],
/// [`crate::im2col`], [`crate::resize`]); the one pass that changes values,
/// [`crate::narrow_weights`], runs only where the file allows it. Errors name the file. A panic inside tract on a damaged
/// file is an error too: a model file is input, and input does not bring kith down.
pub fn load_optimized(path: &Path) -> Result<LoadedGraph> {
    let meta = std::fs::metadata(path).map_err(|e| Error::load(path, e))?;
    if !meta.is_file() {
        return Err(Error::load(path, LoadError::NotAFile));
    }
    quiet_loading_panics();
    LOADING.set(true);
    let loaded = std::panic::catch_unwind(|| optimise(path));
    LOADING.set(false);
    match loaded {
        Ok(loaded) => loaded.map_err(|cause| Error::load(path, cause)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Error::load(path, LoadError::Panicked(message)))
        }
    }
}

std::thread_local! {
    /// Set while this thread is inside tract's loading of a file ([`load_optimized`]).
    static LOADING: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the process's panic hook, once, so that it says nothing about a panic that
/// [`load_optimized`] turns into an error naming the file: the user sees that one line, not
/// tract's panic message before it. Every other panic reaches the hook that was there before.
fn quiet_loading_panics() {
    static WRAPPED: Once = Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !LOADING.get() {
                previous(info);
            }
        }));
    });
}

/// [`load_optimized`]'s work with tract: parse, read kith's metadata, optimise, kith's passes.
fn optimise(path: &Path) -> TractResult<LoadedGraph> {
    let model = tract_onnx::onnx().model_for_path(path)?;
    let metadata: BTreeMap<String, String> = model
        .properties
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(METADATA_PREFIX)?;
            let value = v
                .try_as_plain_ram()
                .ok()?
                .to_scalar::<String>()
                .ok()?
                .clone();
            Some((key.to_owned(), value))
        })
        .collect();
    let mut typed = model.into_typed()?.into_decluttered()?;
    crate::pointwise::merge_pointwise_rows(&mut typed)?;
    let allowed = metadata.get(NARROW_WEIGHTS_KEY).map(String::as_str) == Some("allowed");
    let narrowed_products = match crate::narrow_weights::narrow_weight_range() {
        Some(range) if allowed => crate::narrow_weights::narrow_weights(&mut typed, &range)?,
        _ => 0,
    };
    typed.optimize()?;
    crate::int8::speed_up_quantisation(&mut typed)?;
    crate::int8::tabulate_dequantised_chains(&mut typed)?;
    crate::int8::requantise_tables(&mut typed)?;
    crate::int8::fuse_dequantised_adds(&mut typed)?;
    crate::maxpool::speed_up_max_pool(&mut typed)?;
    crate::im2col::speed_up_im2col(&mut typed)?;
    crate::resize::speed_up_resize(&mut typed)?;
    crate::softmax::speed_up_softmax(&mut typed)?;
    crate::layernorm::fuse_layer_norms(&mut typed)?;
    Ok(LoadedGraph {
        model: typed,
        metadata,
        narrowed_products,
    })
}

fn fixed_shape(path: &Path, model: &TypedModel, outlet: OutletId) -> Result<TensorSpec> {
    let contract = |detail: String| Error::ModelContract {
        path: path.to_owned(),
        detail,
    };
    let name = model
        .outlet_label(outlet)
        .unwrap_or(&model.node(outlet.node).name)
        .to_owned();
    let fact = model
        .outlet_fact(outlet)
        .map_err(|e| Error::load(path, e))?;
    if fact.datum_type != f32::datum_type() {
        return Err(contract(format!(
            "`{name}` is {:?}, kith feeds and reads f32",
            fact.datum_type
        )));
    }
    let shape = fact
        .shape
        .as_concrete()
        .ok_or_else(|| contract(format!("`{name}` has no fixed shape ({:?})", fact.shape)))?
        .to_vec();
    Ok(TensorSpec { name, shape })
}

impl ModelFile {
    /// Loads `path` and prepares it to run with `threads` threads for its matrix products.
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        let start = Instant::now();
        let LoadedGraph {
            model: typed,
            metadata,
            narrowed_products,
        } = load_optimized(path)?;
        log::debug!(
            "{}: loaded and optimised in {:.0} ms",
            path.display(),
            start.elapsed().as_secs_f64() * 1e3
        );
        let load_err = |cause: TractError| Error::load(path, cause);
        let inputs = typed
            .input_outlets()
            .map_err(load_err)?
            .iter()
            .map(|&o| fixed_shape(path, &typed, o))
            .collect::<Result<Vec<_>>>()?;
        let outputs = typed
            .output_outlets()
            .map_err(load_err)?
            .iter()
            .map(|&o| fixed_shape(path, &typed, o))
            .collect::<Result<Vec<_>>>()?;
        let mut options = RunOptions::default();
        if threads > 1 {
            options.executor = Some(multithread::Executor::multithread(threads));
        }
        let executor = options.executor.clone();
        let plan: Plan = typed
            .into_runnable_with_options(&options)
            .map_err(load_err)?;
        let state = plan.spawn().map_err(load_err)?;
        let input_tensors = inputs
            .iter()
            .map(|spec| Tensor::zero::<f32>(&spec.shape).map(Arc::new))
            .collect::<TractResult<Vec<_>>>()
            .map_err(load_err)?;
        Ok(ModelFile {
            path: path.to_owned(),
            state,
            inputs,
            outputs,
            input_tensors,
            metadata,
            narrowed_products,
            executor,
            arena: ModelArena::new(),
        })
    }

    /// What the model's arena has done so far.
    pub fn arena_stats(&self) -> ArenaStats {
        self.arena.stats()
    }

    /// The file this model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, for messages and reports.
    pub fn file_name(&self) -> String {
        file_name_of(&self.path)
    }

    /// The model's inputs, in order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// The model's outputs, in order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// How many quantised products run with weights narrowed to 7 bits on this CPU
    /// ([`crate::narrow_weights`]); 0 for exact INT8 weights.
    pub fn narrowed_products(&self) -> usize {
        self.narrowed_products
    }

    /// A `metadata_props` value of the ONNX file.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// The tract-linalg matrix-product kernels the optimised plan runs on this CPU, each once, in
    /// name order (e.g. `arm64simd_mmm_f32_16x4_gen`): what a latency profile was measured on.
    pub fn matmul_kernels(&self) -> Vec<String> {
        let kernels: BTreeSet<String> = self
            .state
            .model()
            .nodes()
            .iter()
            .filter_map(|node| node.op_as::<OptMatMul>())
            .flat_map(|op| op.mmm.iter().map(|k| k.name().to_owned()))
            .collect();
        kernels.into_iter().collect()
    }

    /// An error about this model's contract.
    pub(crate) fn contract_error(&self, detail: impl Into<String>) -> Error {
        Error::ModelContract {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// Index of the input called `name`, checking its shape when `shape` is given.
    pub fn input_index(&self, name: &str, shape: Option<&[usize]>) -> Result<usize> {
        self.find("input", &self.inputs, name, shape)
    }

    /// Index of the output called `name`, checking its shape when `shape` is given.
    pub fn output_index(&self, name: &str, shape: Option<&[usize]>) -> Result<usize> {
        self.find("output", &self.outputs, name, shape)
    }

    /// Index of `name` among `specs` (the model's inputs or outputs, as `kind` says).
    fn find(
        &self,
        kind: &str,
        specs: &[TensorSpec],
        name: &str,
        shape: Option<&[usize]>,
    ) -> Result<usize> {
        let ix = specs.iter().position(|s| s.name == name).ok_or_else(|| {
            let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
            self.contract_error(format!(
                "{kind} `{name}` is missing (the model has {names:?})"
            ))
        })?;
        match shape {
            Some(shape) if specs[ix].shape != shape => Err(self.contract_error(format!(
                "{kind} `{name}` has shape {:?}, kith needs {shape:?}",
                specs[ix].shape
            ))),
            _ => Ok(ix),
        }
    }

    /// The values of input `ix`, to be filled before [`ModelFile::run`].
    pub fn input_mut(&mut self, ix: usize) -> Result<&mut [f32]> {
        let model = &self.path;
        let tensor = Arc::make_mut(&mut self.input_tensors[ix]);
        let view = tensor
            .to_plain_array_view_mut::<f32>()
            .map_err(|e| Error::run(model.display(), e))?;
        view.into_slice()
            .ok_or_else(|| Error::run(model.display(), RunError::NotContiguous(ix)))
    }

    /// Runs the model on its inputs. The returned values are tract's; every allocation made here is
    /// counted as the model's.
    pub fn run(&mut self) -> Result<TVec<TValue>> {
        let _scope = ModelScope::enter();
        let inputs: TVec<TValue> = self
            .input_tensors
            .iter()
            .map(|t| TValue::from_const(t.clone()))
            .collect();
        let state = &mut self.state;
        let arena = &self.arena;
        let result = match &self.executor {
            // On a worker of the pool, tract's per-op `install` runs inline: each split product or
            // element-wise op wakes the other worker only, not a worker and then this thread again
            // (kith issue 13, docs/int8.md "Threads"). The arena follows the plan's thread.
            Some(multithread::Executor::MultiThread(pool)) => pool.install(|| {
                let _arena = arena.enter();
                state.run(inputs)
            }),
            _ => {
                let _arena = arena.enter();
                state.run(inputs)
            }
        };
        result.map_err(|e| Error::run(self.path.display(), e))
    }
}

impl ModelFile {
    /// The optimised graph the model runs (for the tools that inspect it).
    pub fn graph(&self) -> &TypedModel {
        self.state.model()
    }

    /// Runs the model once on its current inputs and tells `on_node` how long each node of
    /// [`ModelFile::graph`] took, in plan order (for per-node profiling).
    pub fn run_timing_nodes(
        &mut self,
        mut on_node: impl FnMut(&TypedNode, Duration),
    ) -> Result<()> {
        let inputs: TVec<TValue> = self
            .input_tensors
            .iter()
            .map(|t| TValue::from_const(t.clone()))
            .collect();
        let _arena = self.arena.enter();
        self.state
            .run_plan_with_eval(inputs, |ctx, op_state, node, values| {
                let start = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, values);
                on_node(node, start.elapsed());
                out
            })
            .map(drop)
            .map_err(|e| Error::run(self.path.display(), e))
    }
}

/// Reads output `ix` of a run as f32 values.
pub fn output_f32<'a>(model: &ModelFile, outputs: &'a [TValue], ix: usize) -> Result<&'a [f32]> {
    outputs
        .get(ix)
        .ok_or_else(|| model.contract_error(format!("run returned no output #{ix}")))?
        .try_as_plain_ram()
        .and_then(|view| view.as_slice::<f32>())
        .map_err(|e| Error::run(model.path.display(), e))
}
