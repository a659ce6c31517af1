//! Displays: where annotated frames are drawn. [`Display`] is whichever the board config names
//! (or what a benchmark asks for). It is an embedded-graphics `DrawTarget<Color = Rgb888>` that
//! hands every call to its kind, so whoever renders a frame draws on it directly and then calls
//! [`Display::present`]; the display knows nothing of what drew on it.
//!
//! A framebuffer or panel whose device node is not there when kith starts (a display that comes
//! later) is [`Display::Absent`]: frames are shown nowhere until the node appears, which is looked
//! for with back-off at each frame.

pub mod fb_abi;
pub mod fbdev;
#[cfg(feature = "spi")]
pub mod panel;
#[cfg(feature = "spi")]
pub mod panel_bus;
pub mod png;
pub mod spec;
#[cfg(feature = "spi")]
pub mod spidev;

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use kith_runtime::image::RgbImage;
use kith_runtime::overlay;

use crate::backoff::{Backoff, Retry};
use crate::files::Fsync;
use crate::OutputError;
use fbdev::Framebuffer;
use png::PngSnapshots;
use spec::DisplaySpec;

/// A display could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    /// The device failed or is not what kith can drive.
    #[error("{device}: {detail}")]
    Device { device: String, detail: String },
    /// The config's geometry is not the device's (a board config error).
    #[error("{device}: {detail}")]
    Geometry { device: String, detail: String },
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// The display a session draws on.
pub enum Display {
    /// PNG snapshots at each frame's size ("png").
    Png(PngSnapshots),
    /// Every frame onto an in-memory canvas at its size, written nowhere (benchmarks).
    Memory(RgbImage),
    /// A Linux framebuffer ("fbdev").
    Framebuffer(Framebuffer),
    /// An SPI panel ("spi").
    #[cfg(feature = "spi")]
    Panel(Box<spidev::LinuxPanel>),
    /// Nothing is drawn ("none").
    None,
    /// A framebuffer or panel whose device node is not there yet; nothing is drawn until it is.
    Absent(Box<Absent>),
}

/// The first and the longest delay between two looks for a display that is not there.
const ABSENT_RETRY: Retry = Retry {
    min: Duration::from_millis(500),
    max: Duration::from_secs(5),
};

/// A display that could not be opened because its device node is missing, and when to try again.
pub struct Absent {
    spec: DisplaySpec,
    since: Instant,
    backoff: Backoff,
    /// Why the last attempt failed, logged when it changes.
    reason: String,
}

impl Absent {
    fn new(spec: &DisplaySpec, node: &Path) -> Self {
        let reason = format!("{} is not there", node.display());
        log::warn!("display lost: {reason}; kith runs without it and opens it when it appears");
        let mut backoff = Backoff::new(ABSENT_RETRY);
        backoff.schedule();
        Absent {
            spec: spec.clone(),
            since: Instant::now(),
            backoff,
            reason,
        }
    }

    /// The display, when the next attempt is due and it opens.
    fn reopen(&mut self) -> Option<Display> {
        if !self.backoff.due() {
            return None;
        }
        self.backoff.schedule();
        let reason = match self.spec.missing_node() {
            Some(node) => format!("{} is not there", node.display()),
            None => match Display::open(&self.spec, None, Fsync::Never) {
                Ok(Display::Absent(_)) => return None,
                Ok(display) => {
                    log::info!(
                        "display back after {:.1} s: {}",
                        self.since.elapsed().as_secs_f64(),
                        display.describe()
                    );
                    return Some(display);
                }
                // E.g. the node is there but udev has not given it its group yet.
                Err(e) => e.to_string(),
            },
        };
        if reason != self.reason {
            log::warn!("display still lost: {reason}; retrying");
            self.reason = reason;
        }
        None
    }
}

impl Display {
    /// Opens the display `spec` names; PNG snapshots go to `frames` (none without it), synced
    /// as `fsync` says. A framebuffer or panel whose device node is missing is
    /// [`Display::Absent`].
    pub fn open(
        spec: &DisplaySpec,
        frames: Option<&Path>,
        fsync: Fsync,
    ) -> Result<Self, DisplayError> {
        if let Some(node) = spec.missing_node() {
            return Ok(Display::Absent(Box::new(Absent::new(spec, node))));
        }
        Ok(match spec {
            DisplaySpec::Png { every } => match frames {
                Some(dir) => Display::Png(PngSnapshots::create(dir, *every, None, fsync)?),
                None => Display::None,
            },
            DisplaySpec::Memory => Display::Memory(RgbImage::default()),
            DisplaySpec::None => Display::None,
            DisplaySpec::Fbdev(fb) => Display::Framebuffer(Framebuffer::open(fb)?),
            #[cfg(feature = "spi")]
            DisplaySpec::Spi(spi) => Display::Panel(Box::new(spidev::open(spi)?)),
        })
    }

    /// Width and height of a display with a resolution of its own (a framebuffer or a panel).
    pub fn resolution(&self) -> Option<(usize, usize)> {
        let size = match self {
            Display::Framebuffer(fb) => fb.size(),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.size(),
            Display::Png(_) | Display::Memory(_) | Display::None | Display::Absent(_) => {
                return None
            }
        };
        Some((size.width as usize, size.height as usize))
    }

    /// What the display is, for the start-up banner: kind, device, resolution.
    pub fn describe(&self) -> String {
        let resolution = self
            .resolution()
            .map(|(w, h)| format!(" {w}x{h}"))
            .unwrap_or_default();
        match self {
            Display::Png(png) => format!("PNG snapshots in {}", png.dir().display()),
            Display::Memory(_) => "in memory".into(),
            Display::Framebuffer(fb) => format!("framebuffer{resolution} on {}", fb.describe()),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => format!("SPI panel{resolution}, {}", panel.describe()),
            Display::None => "none".into(),
            Display::Absent(absent) => {
                format!("display lost ({}); opened when it appears", absent.reason)
            }
        }
    }

    /// The PNG snapshots this display writes, if it is "png".
    pub fn png(&self) -> Option<&PngSnapshots> {
        match self {
            Display::Png(png) => Some(png),
            _ => None,
        }
    }

    /// Gets ready to show frame number `n` of `width` x `height` pixels: the displays drawn at
    /// each frame's size take it. `false` when this display does not show the frame (PNG
    /// snapshots write every Nth; "none" shows nothing), so it need not be drawn. An absent
    /// display is opened here when it has appeared.
    pub fn begin_frame(&mut self, n: u64, width: usize, height: usize) -> bool {
        match self {
            Display::Absent(absent) => match absent.reopen() {
                Some(display) => {
                    *self = display;
                    self.begin_frame(n, width, height)
                }
                None => false,
            },
            Display::Png(png) => png.begin_frame(n, width, height),
            Display::Memory(canvas) => {
                canvas.set_size(width, height);
                true
            }
            Display::Framebuffer(_) => true,
            #[cfg(feature = "spi")]
            Display::Panel(_) => true,
            Display::None => false,
        }
    }

    /// Shows what was drawn since the last call: copies it to the screen, sends it to the panel
    /// or writes the PNG.
    pub fn present(&mut self) -> Result<(), DisplayError> {
        match self {
            Display::Png(png) => png.present()?,
            Display::Framebuffer(fb) => fb.present(),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.present()?,
            Display::Memory(_) | Display::None | Display::Absent(_) => {}
        }
        Ok(())
    }

    /// Shows a full-screen status message (e.g. "camera lost") in place of frames, until the next
    /// frame. PNG snapshots record frames only, so "png" and "none" show nothing.
    pub fn show_status(&mut self, text: &str) -> Result<(), DisplayError> {
        // While no frame comes (a lost camera) this is where an absent display is looked for.
        if let Display::Absent(absent) = self {
            match absent.reopen() {
                Some(display) => *self = display,
                None => return Ok(()),
            }
        }
        if matches!(self, Display::Png(_) | Display::None | Display::Absent(_)) {
            return Ok(());
        }
        let Ok(()) = overlay::draw_status(self, text);
        self.present()
    }
}

impl OriginDimensions for Display {
    fn size(&self) -> Size {
        match self {
            Display::Png(png) => png.size(),
            Display::Memory(canvas) => canvas.size(),
            Display::Framebuffer(fb) => fb.size(),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.size(),
            Display::None | Display::Absent(_) => Size::zero(),
        }
    }
}

/// Every drawing call goes to the display's kind, fast paths included.
impl DrawTarget for Display {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        match self {
            Display::Png(png) => png.draw_iter(pixels),
            Display::Memory(canvas) => canvas.draw_iter(pixels),
            Display::Framebuffer(fb) => fb.draw_iter(pixels),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.draw_iter(pixels),
            Display::None | Display::Absent(_) => Ok(()),
        }
    }

    fn fill_contiguous<I>(&mut self, area: &Rectangle, colors: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Self::Color>,
    {
        match self {
            Display::Png(png) => png.fill_contiguous(area, colors),
            Display::Memory(canvas) => canvas.fill_contiguous(area, colors),
            Display::Framebuffer(fb) => fb.fill_contiguous(area, colors),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.fill_contiguous(area, colors),
            Display::None | Display::Absent(_) => Ok(()),
        }
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        match self {
            Display::Png(png) => png.fill_solid(area, color),
            Display::Memory(canvas) => canvas.fill_solid(area, color),
            Display::Framebuffer(fb) => fb.fill_solid(area, color),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.fill_solid(area, color),
            Display::None | Display::Absent(_) => Ok(()),
        }
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        match self {
            Display::Png(png) => png.clear(color),
            Display::Memory(canvas) => canvas.clear(color),
            Display::Framebuffer(fb) => fb.clear(color),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.clear(color),
            Display::None | Display::Absent(_) => Ok(()),
        }
    }
}
