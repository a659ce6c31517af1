use downcast_rs::{Downcast, impl_downcast};
use dyn_clone::DynClone;
use dyn_hash::DynHash;
use std::alloc::Layout;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;
use tract_data::dyn_eq::DynEq;
use tract_data::internal::*;

use crate::WeightType;

pub trait MMMInputFormat:
    Downcast + Debug + DynHash + DynEq + DynClone + Send + Sync + Display
{
    fn prepare_tensor(&self, t: &Tensor, k_axis: usize, mn_axis: usize) -> TractResult<Tensor>;
    /// Pack one matmul out of a possibly strided view — one batch of a batched input, which a
    /// `&Tensor` cannot name. A format whose input is not a strided array of numbers (block
    /// quant, lazy im2col) says so here rather than being silently unreachable.
    fn prepare_one_view(
        &self,
        t: &TensorView,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>>;
    fn prepare_one(
        &self,
        t: &Tensor,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>> {
        self.prepare_one_view(&t.view(), k_axis, mn_axis)
    }
    fn precursor(&self) -> WeightType;
    /// Round `tensor` through the numeric precision this format stores its data
    /// in, so a reference matmul can reproduce the kernel's pack-time precision
    /// loss. Default: identity, for formats that store inputs losslessly.
    fn simulate_precision_loss(&self, tensor: Tensor) -> TractResult<Tensor> {
        Ok(tensor)
    }
    /// The values this format can pack, when it takes only some of its type's (kith issue 13:
    /// `PackedI8K4Narrow`). Selection by type ([`crate::mmm::MmmDispatch::suitable`]) never picks
    /// such a packing; a caller that has checked its operand's values may. `None`: every value.
    fn value_range(&self) -> Option<std::ops::RangeInclusive<i32>> {
        None
    }
    fn r(&self) -> usize;
    fn k_alignment(&self) -> usize;
    fn merge_with<'o, 'a: 'o, 'b: 'o>(
        &'a self,
        other: &'b dyn MMMInputFormat,
    ) -> Option<&'o dyn MMMInputFormat> {
        if self.dyn_eq(other) { Some(other) } else { None }
    }
    fn mem_size(&self, k: TDim, mn: TDim) -> TDim;
    /// Size, alignment and panel stride of one packed `k` x `mn` operand, when this format can
    /// pack into a buffer it is given ([`MMMInputFormat::pack_view_into`]); None when it cannot.
    /// Lets the operands of a batch share one allocation ([`PackedBatchSlice`], kith issue 14).
    fn packed_layout(&self, _k: usize, _mn: usize) -> Option<PackedLayout> {
        None
    }
    /// Packs `t` into `dst`, a buffer of [`MMMInputFormat::packed_layout`]'s size and alignment
    /// for `t`'s K and MN: the same bytes [`MMMInputFormat::prepare_one_view`] would pack.
    fn pack_view_into(
        &self,
        _t: &TensorView,
        _k_axis: usize,
        _mn_axis: usize,
        _dst: &mut [u8],
    ) -> TractResult<()> {
        bail!("{self} does not pack into a given buffer")
    }
    fn extract_at_mn_f16(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f16],
    ) -> TractResult<()>;
    fn extract_at_mn_f32(
        &self,
        data: &EagerPackedInput,
        mn: usize,
        slice: &mut [f32],
    ) -> TractResult<()>;
}

dyn_clone::clone_trait_object!(MMMInputFormat);
impl_downcast!(MMMInputFormat);
dyn_hash::hash_trait_object!(MMMInputFormat);
tract_data::eq_trait_object!(MMMInputFormat);

pub trait MMMInputValue:
    DynClone + Debug + DynHash + DynEq + Send + Sync + Display + Downcast
{
    fn format(&self) -> &dyn MMMInputFormat;
    fn scratch_panel_buffer_layout(&self) -> Option<Layout>;
    fn panel_bytes(&self, i: usize, buffer: Option<*mut u8>) -> TractResult<*const u8>;
    fn panels_count(&self) -> usize {
        self.mn().divceil(self.format().r())
    }
    fn mn(&self) -> usize;
    fn k(&self) -> usize;
    fn exotic_fact(&self) -> &dyn ExoticFact;

    fn extract_at_mn_f16(&self, mn: usize, slice: &mut [f16]) -> TractResult<()>;
    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()>;
}
dyn_clone::clone_trait_object!(MMMInputValue);
impl_downcast!(MMMInputValue);
dyn_hash::hash_trait_object!(MMMInputValue);
tract_data::eq_trait_object!(MMMInputValue);

#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Hash, Debug)]
pub struct PackedExoticFact {
    pub format: Box<dyn MMMInputFormat>,
    pub mn: TDim,
    pub k: usize,
}

impl Display for PackedExoticFact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Eager {} tensor (mn={} k={})", self.format, self.mn, self.k)
    }
}

impl ExoticFact for PackedExoticFact {
    fn buffer_sizes(&self) -> TVec<TDim> {
        tvec!(self.format.mem_size(self.k.to_dim(), self.mn.clone()))
    }
}

impl PartialEq for PackedExoticFact {
    fn eq(&self, other: &Self) -> bool {
        self.format == other.format && self.mn == other.mn && self.k == other.k
    }
}
impl Eq for PackedExoticFact {}

#[derive(Clone, Hash, PartialEq, Eq)]
pub struct EagerPackedInput {
    pub fact: PackedExoticFact,
    pub packed: Arc<Blob>,
    pub panel_bytes: usize,
    pub mn: usize,
}

impl EagerPackedInput {
    /// Packs `t` with `format` into a buffer of its own, through the format's
    /// [`MMMInputFormat::packed_layout`] and [`MMMInputFormat::pack_view_into`].
    pub fn pack_alone(
        format: &dyn MMMInputFormat,
        t: &TensorView,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Box<dyn MMMInputValue>> {
        ensure!(k_axis != mn_axis, "k_axis and mn_axis must differ (both are {k_axis})");
        let (k, mn) = (t.shape()[k_axis], t.shape()[mn_axis]);
        let layout = format
            .packed_layout(k, mn)
            .with_context(|| format!("{format} does not pack into a given buffer"))?;
        // SAFETY: `pack_view_into` writes every byte the kernels read.
        let mut packed = unsafe { Blob::new_for_size_and_align(layout.bytes, layout.align) };
        format.pack_view_into(t, k_axis, mn_axis, packed.as_bytes_mut())?;
        Ok(Box::new(EagerPackedInput {
            fact: PackedExoticFact { format: dyn_clone::clone_box(format), mn: mn.to_dim(), k },
            packed: Arc::new(packed),
            panel_bytes: layout.panel_bytes,
            mn,
        }))
    }
}

impl MMMInputValue for EagerPackedInput {
    fn scratch_panel_buffer_layout(&self) -> Option<Layout> {
        None
    }
    fn panel_bytes(&self, i: usize, _buffer: Option<*mut u8>) -> TractResult<*const u8> {
        unsafe { Ok(self.packed.as_ptr().add(i * self.panel_bytes)) }
    }
    fn k(&self) -> usize {
        self.fact.k
    }
    fn mn(&self) -> usize {
        self.mn
    }
    fn format(&self) -> &dyn MMMInputFormat {
        &*self.fact.format
    }
    fn exotic_fact(&self) -> &dyn ExoticFact {
        &self.fact
    }
    fn extract_at_mn_f16(&self, mn: usize, slice: &mut [f16]) -> TractResult<()> {
        ensure!(slice.len() == self.k());
        ensure!(mn < self.mn());
        self.fact.format.extract_at_mn_f16(self, mn, slice)
    }
    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()> {
        ensure!(slice.len() == self.k());
        ensure!(mn < self.mn());
        self.fact.format.extract_at_mn_f32(self, mn, slice)
    }
}

impl Display for EagerPackedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (&self.fact as &dyn Display).fmt(f)
    }
}

impl Debug for EagerPackedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        <Self as Display>::fmt(self, f)
    }
}

/// Where one packed operand lies in a buffer: see [`MMMInputFormat::packed_layout`].
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct PackedLayout {
    pub bytes: usize,
    pub align: usize,
    pub panel_bytes: usize,
}

/// The operands of one batch, packed one after the other into one buffer.
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct PackedBatch {
    fact: PackedExoticFact,
    packed: Blob,
    layout: PackedLayout,
    mn: usize,
}

/// One operand of a [`PackedBatch`], at `offset` in its buffer.
///
/// A batched product (attention heads times windows) packs hundreds of small operands a run;
/// packed one by one, each took a buffer, its `Arc`, a format box and a value box. Packed by
/// [`PackedBatchSlice::pack_batch`], the whole batch takes one buffer, one `Arc`, one format box
/// and the list of its slices (kith issue 14).
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct PackedBatchSlice {
    batch: Arc<PackedBatch>,
    offset: usize,
}

impl PackedBatchSlice {
    /// Packs `views` (`count` operands of the same K and MN) with `format` into one buffer;
    /// None when the format cannot pack into a given buffer (the caller packs them one by one).
    pub fn pack_batch<'v>(
        format: &dyn MMMInputFormat,
        k: usize,
        mn: usize,
        count: usize,
        views: impl Iterator<Item = TensorView<'v>>,
        k_axis: usize,
        mn_axis: usize,
    ) -> TractResult<Option<Vec<PackedBatchSlice>>> {
        let Some(layout) = format.packed_layout(k, mn) else { return Ok(None) };
        if layout.bytes == 0 || count == 0 {
            return Ok(None);
        }
        let stride = layout.bytes.next_multiple_of(layout.align);
        let len = stride.checked_mul(count).context("packed batch size overflows")?;
        // SAFETY: `pack_view_into` writes what the kernels read of each slice, as it would in
        // a buffer of the slice's own; the padding between slices is never read.
        let mut packed = unsafe { Blob::new_for_size_and_align(len, layout.align) };
        let mut packed_count = 0;
        for (dst, view) in packed.as_bytes_mut().chunks_exact_mut(stride).zip(views) {
            format.pack_view_into(&view, k_axis, mn_axis, &mut dst[..layout.bytes])?;
            packed_count += 1;
        }
        ensure!(packed_count == count, "packed {packed_count} operands of a batch of {count}");
        let fact = PackedExoticFact { format: dyn_clone::clone_box(format), mn: mn.to_dim(), k };
        let batch = Arc::new(PackedBatch { fact, packed, layout, mn });
        Ok(Some(
            (0..count)
                .map(|ix| PackedBatchSlice { batch: batch.clone(), offset: ix * stride })
                .collect(),
        ))
    }

    /// This operand alone, copied into a buffer of its own.
    pub fn to_eager(&self) -> TractResult<EagerPackedInput> {
        let batch = &*self.batch;
        let bytes = &batch.packed.as_bytes()[self.offset..][..batch.layout.bytes];
        Ok(EagerPackedInput {
            fact: batch.fact.clone(),
            packed: Arc::new(Blob::from_bytes_alignment(bytes, batch.layout.align)?),
            panel_bytes: batch.layout.panel_bytes,
            mn: batch.mn,
        })
    }
}

impl MMMInputValue for PackedBatchSlice {
    fn scratch_panel_buffer_layout(&self) -> Option<Layout> {
        None
    }
    fn panel_bytes(&self, i: usize, _buffer: Option<*mut u8>) -> TractResult<*const u8> {
        let batch = &*self.batch;
        // SAFETY: stays inside this slice's bytes for every panel the kernels ask for.
        unsafe { Ok(batch.packed.as_ptr().add(self.offset + i * batch.layout.panel_bytes)) }
    }
    fn k(&self) -> usize {
        self.batch.fact.k
    }
    fn mn(&self) -> usize {
        self.batch.mn
    }
    fn format(&self) -> &dyn MMMInputFormat {
        &*self.batch.fact.format
    }
    fn exotic_fact(&self) -> &dyn ExoticFact {
        &self.batch.fact
    }
    fn extract_at_mn_f16(&self, mn: usize, slice: &mut [f16]) -> TractResult<()> {
        self.to_eager()?.extract_at_mn_f16(mn, slice)
    }
    fn extract_at_mn_f32(&self, mn: usize, slice: &mut [f32]) -> TractResult<()> {
        self.to_eager()?.extract_at_mn_f32(mn, slice)
    }
}

impl Display for PackedBatchSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {} of a packed batch", self.batch.fact, self.offset)
    }
}

impl Debug for PackedBatchSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        <Self as Display>::fmt(self, f)
    }
}

#[cfg(test)]
pub mod view_check {
    use super::*;

    /// Packing one batch of a batched tensor through a strided view must give the same bytes as
    /// packing that batch alone: what a dynamic packing op relies on, and what an unimplemented
    /// [`MMMInputFormat::prepare_one_view`] used to break.
    pub fn view_matches_tensor(
        format: &dyn MMMInputFormat,
        k: usize,
        mn: usize,
    ) -> TractResult<()> {
        let WeightType::Plain(dt) = format.precursor() else {
            bail!("{format} does not pack a plain tensor")
        };
        let mut parent = Tensor::zero_dt(dt, &[2, k, mn])?;
        parent.as_bytes_mut().iter_mut().enumerate().for_each(|(ix, b)| *b = (ix % 101) as u8 + 1);
        let batch = parent.slice(0, 1, 2)?.into_shape(&[k, mn])?;
        let from_tensor = format.prepare_one(&batch, 0, 1)?;
        let offset = parent.strides()[0] * dt.size_of() as isize;
        let view =
            unsafe { TensorView::from_bytes(&parent, offset, parent.shape(), parent.strides()) };
        let from_view = format.prepare_one_view(&view, 1, 2)?;
        let bytes = |v: &dyn MMMInputValue| -> TractResult<Arc<Blob>> {
            Ok(v.downcast_ref::<EagerPackedInput>()
                .with_context(|| format!("{format} did not pack to an EagerPackedInput"))?
                .packed
                .clone())
        };
        ensure!(
            *bytes(&*from_tensor)? == *bytes(&*from_view)?,
            "{format}: packing k={k} mn={mn} from a view differs from packing it from a tensor"
        );
        Ok(())
    }

    /// Packing the operands of a batch into one buffer ([`PackedBatchSlice::pack_batch`]) must
    /// give each operand the panels packing it alone gives, with K inner and with MN inner.
    pub fn batch_matches_one_by_one(
        format: &dyn MMMInputFormat,
        k: usize,
        mn: usize,
    ) -> TractResult<()> {
        let WeightType::Plain(dt) = format.precursor() else {
            bail!("{format} does not pack a plain tensor")
        };
        for k_inner in [false, true] {
            let (shape, k_axis, mn_axis) =
                if k_inner { ([3, mn, k], 2, 1) } else { ([3, k, mn], 1, 2) };
            let mut parent = Tensor::zero_dt(dt, &shape)?;
            parent
                .as_bytes_mut()
                .iter_mut()
                .enumerate()
                .for_each(|(ix, b)| *b = (ix % 61) as u8 + 1);
            let view_at = |batch: usize| unsafe {
                let offset = batch as isize * parent.strides()[0] * dt.size_of() as isize;
                TensorView::from_bytes(&parent, offset, parent.shape(), parent.strides())
            };
            let slices = PackedBatchSlice::pack_batch(
                format,
                k,
                mn,
                3,
                (0..3).map(view_at),
                k_axis,
                mn_axis,
            )?
            .with_context(|| format!("{format} does not pack batches"))?;
            ensure!(slices.len() == 3);
            for (batch, slice) in slices.iter().enumerate() {
                let alone = format.prepare_one_view(&view_at(batch), k_axis, mn_axis)?;
                let alone = alone
                    .downcast_ref::<EagerPackedInput>()
                    .with_context(|| format!("{format} did not pack to an EagerPackedInput"))?;
                ensure!(slice.k() == alone.k() && slice.mn() == alone.mn());
                ensure!(slice.panels_count() == alone.panels_count());
                // What the kernels read of a panel: K records of `r` items (a PackedFormat
                // leaves its end padding unwritten outside debug builds).
                let read = format.r() * k * dt.size_of();
                for panel in 0..alone.panels_count() {
                    let ours = unsafe {
                        std::slice::from_raw_parts(slice.panel_bytes(panel, None)?, read)
                    };
                    let theirs = unsafe {
                        std::slice::from_raw_parts(alone.panel_bytes(panel, None)?, read)
                    };
                    ensure!(
                        ours == theirs,
                        "{format}: batch {batch} panel {panel} (k={k} mn={mn}, K inner: \
                         {k_inner}) differs from packing the operand alone"
                    );
                }
                ensure!(
                    slice.to_eager()?.packed.as_bytes()[..read] == alone.packed.as_bytes()[..read],
                    "{format}: a batch slice copied out differs from packing it alone"
                );
            }
        }
        Ok(())
    }
}
