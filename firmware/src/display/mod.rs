//! Displays: where annotated frames are drawn. [`Display`] is whichever the board config names
//! (or what a benchmark asks for); every kind is an embedded-graphics `DrawTarget<Color =
//! Rgb888>`, so the pipeline's renderer and the status screen draw on it directly.

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

use std::path::Path;

use kith_runtime::canvas::RgbCanvas;
use kith_runtime::{overlay, Pipeline};

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
    Memory(RgbCanvas),
    /// A Linux framebuffer ("fbdev").
    Framebuffer(Framebuffer),
    /// An SPI panel ("spi").
    #[cfg(feature = "spi")]
    Panel(Box<spidev::LinuxPanel>),
    /// Nothing is drawn ("none").
    None,
}

impl Display {
    /// Opens the display `config` names; PNG snapshots go to `frames` (none without it).
    pub fn open(config: &DisplaySpec, frames: Option<&Path>) -> Result<Self, DisplayError> {
        Ok(match config {
            DisplaySpec::Png { every } => match frames {
                Some(dir) => Display::Png(PngSnapshots::create(dir, *every, None)?),
                None => Display::None,
            },
            DisplaySpec::None => Display::None,
            DisplaySpec::Fbdev(fb) => Display::Framebuffer(Framebuffer::open(fb)?),
            #[cfg(feature = "spi")]
            DisplaySpec::Spi(spi) => Display::Panel(Box::new(spidev::open(spi)?)),
        })
    }

    /// Width and height of a display with a resolution of its own (a framebuffer or a panel).
    pub fn resolution(&self) -> Option<(usize, usize)> {
        use embedded_graphics::geometry::OriginDimensions;
        let size = match self {
            Display::Framebuffer(fb) => fb.size(),
            #[cfg(feature = "spi")]
            Display::Panel(panel) => panel.size(),
            Display::Png(_) | Display::Memory(_) | Display::None => return None,
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
        }
    }

    /// The PNG snapshots this display writes, if it is "png".
    pub fn png(&self) -> Option<&PngSnapshots> {
        match self {
            Display::Png(png) => Some(png),
            _ => None,
        }
    }

    /// Draws the pipeline's finished frame (scaled to the display) and shows it.
    pub fn show_frame(&mut self, pipeline: &mut Pipeline) -> Result<(), DisplayError> {
        match self {
            Display::Png(png) => png.show_frame(pipeline)?,
            Display::Memory(canvas) => {
                let scene = pipeline.scene();
                canvas.resize(scene.width, scene.height);
                let Ok(()) = pipeline.render(canvas);
            }
            Display::Framebuffer(fb) => {
                let Ok(()) = pipeline.render(fb);
                fb.present();
            }
            #[cfg(feature = "spi")]
            Display::Panel(panel) => {
                let Ok(()) = pipeline.render(panel.as_mut());
                panel.present()?;
            }
            Display::None => {}
        }
        Ok(())
    }

    /// Shows a full-screen status message (e.g. "camera lost") in place of frames, until the next
    /// frame. PNG snapshots record frames only, so "png" and "none" show nothing.
    pub fn show_status(&mut self, text: &str) -> Result<(), DisplayError> {
        match self {
            Display::Memory(canvas) => {
                let Ok(()) = overlay::draw_status(canvas, text);
            }
            Display::Framebuffer(fb) => {
                let Ok(()) = overlay::draw_status(fb, text);
                fb.present();
            }
            #[cfg(feature = "spi")]
            Display::Panel(panel) => {
                let Ok(()) = overlay::draw_status(panel.as_mut(), text);
                panel.present()?;
            }
            Display::Png(_) | Display::None => {}
        }
        Ok(())
    }
}
