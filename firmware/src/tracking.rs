//! The board config's `[tracking]` section: how persons keep their track ids and how the labels of
//! tracked pairs are smoothed (kith_runtime::track and kith_runtime::smooth). Every key is
//! optional; smoothing is on by default for cameras (v4l2, pipe) and off for replayed images.

use kith_runtime::{SmoothingSettings, TrackerSettings};
use serde::Deserialize;

use crate::camera::spec::CameraSpec;
use crate::config::FieldError;

/// Longest smoothing time constant accepted, in seconds.
const MAX_TIME_CONSTANT_S: f32 = 60.0;
/// Most frames a track may be kept without a detection.
const MAX_MISSED: u32 = 1000;

/// `[tracking]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Smooth the relation scores of tracked pairs; default: on for cameras, off for replay.
    smoothing: Option<bool>,
    /// Seconds for the smoothed scores to move 63% of the way to new evidence.
    time_constant_s: Option<f32>,
    /// How far (0..1) another label must pass the shown one, smoothed, to replace it.
    hysteresis: Option<f32>,
    /// Frames a person may go undetected and keep its track id.
    max_missed: Option<u32>,
    /// Mean change of the whole frame (0..1) above which every track ends (a scene cut).
    scene_cut: Option<f32>,
}

/// The tracker and smoother settings a validated `[tracking]` section asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackingSpec {
    pub tracker: TrackerSettings,
    pub smoothing: SmoothingSettings,
}

impl TrackingConfig {
    /// Checks every key; the defaults depend on the `camera`.
    pub fn into_spec(self, camera: &CameraSpec) -> Result<TrackingSpec, FieldError> {
        let (tracker, smoothing) = (TrackerSettings::default(), SmoothingSettings::default());
        let time_constant_s = self.time_constant_s.unwrap_or(smoothing.time_constant_s);
        if !(time_constant_s > 0.0 && time_constant_s <= MAX_TIME_CONSTANT_S) {
            return Err(FieldError::out_of_range(
                "tracking.time_constant_s",
                time_constant_s,
                format!("0 (excluded)..{MAX_TIME_CONSTANT_S}"),
            ));
        }
        let unit = |field, v: Option<f32>, default| match v.unwrap_or(default) {
            v if (0.0..=1.0).contains(&v) => Ok(v),
            v => Err(FieldError::out_of_range(field, v, "0..1")),
        };
        let hysteresis = unit("tracking.hysteresis", self.hysteresis, smoothing.hysteresis)?;
        let scene_cut = unit("tracking.scene_cut", self.scene_cut, tracker.scene_cut)?;
        let max_missed = self.max_missed.unwrap_or(tracker.max_missed);
        if max_missed > MAX_MISSED {
            return Err(FieldError::out_of_range(
                "tracking.max_missed",
                max_missed,
                format!("0..={MAX_MISSED}"),
            ));
        }
        let camera_default = !matches!(camera, CameraSpec::Replay { .. });
        Ok(TrackingSpec {
            tracker: TrackerSettings {
                max_missed,
                scene_cut,
            },
            smoothing: SmoothingSettings {
                enabled: self.smoothing.unwrap_or(camera_default),
                time_constant_s,
                hysteresis,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{assert_field_errors, parse, with_camera, GOOD, PIPE};

    #[test]
    fn smoothing_is_on_for_cameras_and_off_for_replay() {
        let replay = parse(GOOD).unwrap().tracking;
        assert!(!replay.smoothing.enabled);
        assert_eq!(replay.tracker.max_missed, 10);
        let pipe = parse(&with_camera(PIPE)).unwrap().tracking;
        assert!(pipe.smoothing.enabled);
        assert_eq!(pipe.smoothing.time_constant_s, 1.0);
        let set = parse(&format!(
            "{GOOD}[tracking]\nsmoothing = true\ntime_constant_s = 2.5\nhysteresis = 0.2\nmax_missed = 3\nscene_cut = 0.4\n"
        ))
        .unwrap()
        .tracking;
        assert!(set.smoothing.enabled);
        assert_eq!(set.smoothing.time_constant_s, 2.5);
        assert_eq!(set.smoothing.hysteresis, 0.2);
        assert_eq!(set.tracker.max_missed, 3);
        assert_eq!(set.tracker.scene_cut, 0.4);
    }

    #[test]
    fn errors_name_the_tracking_field() {
        let with = |line: &str| format!("{GOOD}[tracking]\n{line}\n");
        assert_field_errors(&[
            (with("time_constant_s = 0"), "`tracking.time_constant_s`"),
            (with("hysteresis = 1.5"), "`tracking.hysteresis`"),
            (with("scene_cut = -0.1"), "`tracking.scene_cut`"),
            (with("max_missed = 5000"), "`tracking.max_missed`"),
            (with("smooth = true"), "smooth"),
        ]);
    }
}
