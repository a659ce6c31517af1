//! RelationModel: GRITv2-S through tract. Persons in, the PISC relation of every pair out.

use std::path::Path;

use heapless::Vec as HVec;

use crate::image::{resize_into_chw, Frame, Resize};
use crate::labels::{joined, FINE_LABELS, NUM_FINE};
use crate::limits::{MAX_PAIRS, MAX_PERSONS};
use crate::model::{output_f32, ModelFile};
use crate::scene::{Person, Relation};
use crate::Result;

/// The `kith.weights` value of seeded weights that were never trained on PISC.
pub const UNTRAINED: &str = "untrained-demo";

/// Recognises the social relation of each pair of persons with a GRITv2-S model.
#[derive(Debug)]
pub struct RelationModel {
    model: ModelFile,
    image: usize,
    boxes: usize,
    mask: usize,
    logits: usize,
    size: usize,
    weights: String,
}

impl RelationModel {
    /// Loads a GRITv2-S file and checks its inputs, output and metadata.
    pub fn load(path: &Path, threads: usize) -> Result<Self> {
        Self::from_model(ModelFile::load(path, threads)?)
    }

    /// Wraps an already loaded model.
    pub fn from_model(model: ModelFile) -> Result<Self> {
        let image = model.input_index("image", None)?;
        let size = match model.inputs()[image].shape[..] {
            [1, 3, h, w] if h == w => h,
            ref s => {
                return Err(model.contract_error(format!(
                    "input `image` has shape {s:?}, kith needs [1, 3, S, S]"
                )))
            }
        };
        let boxes = model.input_index("boxes", Some(&[1, MAX_PERSONS, 4]))?;
        let mask = model.input_index("mask", Some(&[1, MAX_PERSONS]))?;
        let logits =
            model.output_index("logits", Some(&[1, MAX_PERSONS, MAX_PERSONS, NUM_FINE]))?;
        let expected = joined(&FINE_LABELS);
        match model.metadata("kith.labels") {
            Some(l) if l == expected => {}
            Some(l) => {
                return Err(model.contract_error(format!(
                    "metadata kith.labels is `{l}`, kith reads `{expected}`"
                )))
            }
            None => {
                return Err(model
                    .contract_error("metadata kith.labels is missing: the label order is unknown"))
            }
        }
        let weights = model
            .metadata("kith.weights")
            .ok_or_else(|| model.contract_error("metadata kith.weights is missing: kith cannot tell whether its labels were trained"))?
            .to_owned();
        Ok(RelationModel {
            model,
            image,
            boxes,
            mask,
            logits,
            size,
            weights,
        })
    }

    /// The model this runs.
    pub fn model(&self) -> &ModelFile {
        &self.model
    }

    /// The model, mutable (to profile it on its last input).
    pub fn model_mut(&mut self) -> &mut ModelFile {
        &mut self.model
    }

    /// What the weights are: [`UNTRAINED`] or a trained model's name/version.
    pub fn weights(&self) -> &str {
        &self.weights
    }

    /// Whether the weights were never trained on PISC (labels are then not recognition).
    pub fn is_untrained(&self) -> bool {
        self.weights.starts_with("untrained")
    }

    /// Fills the image input from an RGB frame: the whole frame stretched to the model's size.
    pub fn prepare_image(&mut self, frame: &Frame) -> Result<()> {
        let size = self.size;
        let input = self.model.input_mut(self.image)?;
        resize_into_chw(frame, input, size, size, Resize::Stretch)?;
        Ok(())
    }

    /// Runs the model for `persons` (boxes in pixels of a `frame_w` x `frame_h` frame) and writes
    /// one relation per unordered pair. Fewer than two persons need no model run.
    pub fn relate(
        &mut self,
        persons: &[Person],
        frame_w: usize,
        frame_h: usize,
        relations: &mut HVec<Relation, MAX_PAIRS>,
    ) -> Result<()> {
        relations.clear();
        let n = persons.len().min(MAX_PERSONS);
        if n < 2 {
            return Ok(());
        }
        let (fw, fh) = (frame_w as f32, frame_h as f32);
        let boxes = self.model.input_mut(self.boxes)?;
        boxes.fill(0.0);
        for (slot, p) in boxes.chunks_exact_mut(4).zip(&persons[..n]) {
            slot.copy_from_slice(&[
                p.bbox[0] / fw,
                p.bbox[1] / fh,
                p.bbox[2] / fw,
                p.bbox[3] / fh,
            ]);
        }
        let mask = self.model.input_mut(self.mask)?;
        for (i, m) in mask.iter_mut().enumerate() {
            *m = if i < n { 1.0 } else { 0.0 };
        }
        let outputs = self.model.run()?;
        let logits = output_f32(&self.model, &outputs, self.logits)?;
        let at = |i: usize, j: usize, k: usize| logits[(i * MAX_PERSONS + j) * NUM_FINE + k];
        for a in 0..n {
            for b in a + 1..n {
                let mut probs = [0f32; NUM_FINE];
                for (k, p) in probs.iter_mut().enumerate() {
                    *p = (at(a, b, k) + at(b, a, k)) / 2.0;
                }
                softmax(&mut probs);
                // Cannot fail: n <= MAX_PERSONS gives at most MAX_PAIRS pairs.
                let _ = relations.push(Relation::new(a as u8, b as u8, probs));
            }
        }
        Ok(())
    }
}

/// In-place softmax, stable for large logits.
pub fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::softmax;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut v = [1000.0, 1001.0, 999.0, 0.0, -5.0, 1001.0];
        softmax(&mut v);
        assert!((v.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(v[1] > v[0] && v[0] > v[2] && v[1] == v[5]);
    }
}
