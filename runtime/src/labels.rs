//! PISC relation classes: the fine labels GRITv2-S predicts and the coarse group of each.

/// Number of PISC fine relation classes.
pub const NUM_FINE: usize = 6;

/// PISC fine relation labels, in the order of the model's logits.
pub const FINE_LABELS: [&str; NUM_FINE] = [
    "friends",
    "family",
    "couple",
    "professional",
    "commercial",
    "no relation",
];

/// The PISC coarse label of each fine label (same order as [`FINE_LABELS`]).
pub const COARSE_OF_FINE: [&str; NUM_FINE] = [
    "intimate",
    "intimate",
    "intimate",
    "non-intimate",
    "non-intimate",
    "no relation",
];

/// Joins labels with commas, as the models' `kith.labels` metadata writes them.
pub fn joined(labels: &[&str]) -> String {
    labels.join(",")
}
