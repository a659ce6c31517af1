//! Loading an ONNX model with tract, checking its inputs and outputs, and running it with input
//! tensors that are allocated once and refilled in place every frame.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::SimpleState;

use crate::alloc_count::ModelScope;
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

/// Keeps tract off a matmul kernel known to crash, unless the user chose an ISA with
/// `TRACT_CPU_ISA`. tract-linalg 0.23.9's AMX int8 kernel (`avx512amx_mmm_i32_8x8`) faults now and
/// then (SIGSEGV inside the kernel, caught in gdb while kith's INT8 test ran on a Xeon with AMX; see
/// docs/int8.md); without AMX tract takes its AVX-512 VNNI int8 kernels. Only x86_64 has AMX. Call it
/// first thing in `main`, while the process has one thread and before any model is loaded.
pub fn avoid_crashing_kernels() {
    if cfg!(target_arch = "x86_64") && std::env::var_os("TRACT_CPU_ISA").is_none() {
        std::env::set_var("TRACT_CPU_ISA", "-amx-int8");
    }
}

/// The last component of `path`, for messages and reports.
pub fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads, types and optimises an ONNX file as kith runs it, then applies kith's INT8 passes
/// ([`crate::int8`]). Errors name the file.
pub fn load_optimized(path: &Path) -> Result<(TypedModel, BTreeMap<String, String>)> {
    let load_err = |detail: String| Error::ModelLoad {
        path: path.to_owned(),
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| load_err(e.to_string()))?;
    if !meta.is_file() {
        return Err(load_err("not a file".into()));
    }
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| load_err(Error::one_line(&e)))?;
    let metadata = model
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
    let mut typed = model
        .into_optimized()
        .map_err(|e| load_err(Error::one_line(&e)))?;
    crate::int8::speed_up_quantisation(&mut typed)
        .and_then(|_| crate::int8::tabulate_dequantised_chains(&mut typed))
        .map_err(|e| load_err(Error::one_line(&e)))?;
    Ok((typed, metadata))
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
        .map_err(|e| contract(Error::one_line(&e)))?;
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
        let (typed, metadata) = load_optimized(path)?;
        let load_err = |detail: String| Error::ModelLoad {
            path: path.to_owned(),
            detail,
        };
        let inputs = typed
            .input_outlets()
            .map_err(|e| load_err(Error::one_line(&e)))?
            .iter()
            .map(|&o| fixed_shape(path, &typed, o))
            .collect::<Result<Vec<_>>>()?;
        let outputs = typed
            .output_outlets()
            .map_err(|e| load_err(Error::one_line(&e)))?
            .iter()
            .map(|&o| fixed_shape(path, &typed, o))
            .collect::<Result<Vec<_>>>()?;
        let mut options = RunOptions::default();
        if threads > 1 {
            options.executor = Some(multithread::Executor::multithread(threads));
        }
        let plan: Plan = typed
            .into_runnable_with_options(&options)
            .map_err(|e| load_err(Error::one_line(&e)))?;
        let state = plan.spawn().map_err(|e| load_err(Error::one_line(&e)))?;
        let input_tensors = inputs
            .iter()
            .map(|spec| Tensor::zero::<f32>(&spec.shape).map(Arc::new))
            .collect::<TractResult<Vec<_>>>()
            .map_err(|e| load_err(Error::one_line(&e)))?;
        Ok(ModelFile {
            path: path.to_owned(),
            state,
            inputs,
            outputs,
            input_tensors,
            metadata,
        })
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

    /// A `metadata_props` value of the ONNX file.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// All `metadata_props` of the ONNX file.
    pub fn all_metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// An error about this model's contract.
    pub fn contract_error(&self, detail: impl Into<String>) -> Error {
        Error::ModelContract {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// Index of the input called `name`, checking its shape when `shape` is given.
    pub fn input_index(&self, name: &str, shape: Option<&[usize]>) -> Result<usize> {
        Self::find(&self.inputs, name, shape).map_err(|d| self.contract_error(format!("input {d}")))
    }

    /// Index of the output called `name`, checking its shape when `shape` is given.
    pub fn output_index(&self, name: &str, shape: Option<&[usize]>) -> Result<usize> {
        Self::find(&self.outputs, name, shape)
            .map_err(|d| self.contract_error(format!("output {d}")))
    }

    fn find(specs: &[TensorSpec], name: &str, shape: Option<&[usize]>) -> Result<usize, String> {
        let ix = specs.iter().position(|s| s.name == name).ok_or_else(|| {
            let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
            format!("`{name}` is missing (the model has {names:?})")
        })?;
        match shape {
            Some(shape) if specs[ix].shape != shape => Err(format!(
                "`{name}` has shape {:?}, kith needs {shape:?}",
                specs[ix].shape
            )),
            _ => Ok(ix),
        }
    }

    /// The values of input `ix`, to be filled before [`ModelFile::run`].
    pub fn input_mut(&mut self, ix: usize) -> Result<&mut [f32]> {
        let model = &self.path;
        let tensor = Arc::make_mut(&mut self.input_tensors[ix]);
        let view = tensor
            .to_plain_array_view_mut::<f32>()
            .map_err(|e| Error::ModelRun {
                model: model.display().to_string(),
                detail: Error::one_line(&e),
            })?;
        view.into_slice().ok_or_else(|| Error::ModelRun {
            model: model.display().to_string(),
            detail: format!("input #{ix} is not contiguous"),
        })
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
        self.state.run(inputs).map_err(|e| Error::ModelRun {
            model: self.path.display().to_string(),
            detail: Error::one_line(&e),
        })
    }
}

/// Time spent in one node of the optimised graph over a profiled run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    pub name: String,
    /// The tract operator, e.g. `OptMatMul`, `Conv`, `Softmax`.
    pub op: String,
    pub time: std::time::Duration,
}

impl ModelFile {
    /// Runs the model `runs` times on its current inputs, timing every node of the optimised graph;
    /// returns the nodes that ran, with their total time, in plan order.
    pub fn profile_nodes(&mut self, runs: usize) -> Result<Vec<NodeTime>> {
        let nodes = self.state.model().nodes().len();
        let mut times = vec![std::time::Duration::ZERO; nodes];
        let mut ran = vec![false; nodes];
        for _ in 0..runs {
            let inputs: TVec<TValue> = self
                .input_tensors
                .iter()
                .map(|t| TValue::from_const(t.clone()))
                .collect();
            self.state
                .run_plan_with_eval(inputs, |ctx, op_state, node, values| {
                    let start = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, values);
                    times[node.id] += start.elapsed();
                    ran[node.id] = true;
                    out
                })
                .map_err(|e| Error::ModelRun {
                    model: self.path.display().to_string(),
                    detail: Error::one_line(&e),
                })?;
        }
        let model = self.state.model();
        Ok(model
            .nodes()
            .iter()
            .filter(|n| ran[n.id])
            .map(|n| NodeTime {
                name: n.name.clone(),
                op: n.op().name().into_owned(),
                time: times[n.id],
            })
            .collect())
    }
}

/// Reads output `ix` of a run as f32 values.
pub fn output_f32<'a>(model: &ModelFile, outputs: &'a [TValue], ix: usize) -> Result<&'a [f32]> {
    outputs
        .get(ix)
        .ok_or_else(|| model.contract_error(format!("run returned no output #{ix}")))?
        .try_as_plain_ram()
        .and_then(|view| view.as_slice::<f32>())
        .map_err(|e| model.contract_error(Error::one_line(&e)))
}
