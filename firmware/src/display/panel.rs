//! SPI TFT panels (ST7789, ILI9341, ILI9486) through mipidsi.
//!
//! Frames are drawn into an RGB565 back buffer at the panel's on-screen size (width and height
//! swapped for rotation 90 and 270). [`SpiPanel::present`] compares it with what the panel shows
//! and pushes only what changed: per band of [`BAND_ROWS`] rows, the rectangle spanning its changed
//! pixels (one CASET/RASET/RAMWR window each, merged with the band above when the columns agree).
//! On an SPI link of tens of MHz a full 240x320 RGB565 frame takes about 30 ms, so a status screen
//! or an overlay over a still picture costs a fraction of that; live video changes every row and
//! is pushed whole.
//!
//! The driver is generic over the embedded-hal 1.0 traits, so the same code runs over spidev and
//! gpio-cdev on a board ([`super::spidev`]) and over a recorder in the tests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{IntoStorage, Rgb565, Rgb666, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use kith_runtime::canvas::pixel_index;
use mipidsi::models::{ILI9341Rgb565, ILI9486Rgb666, Model, ST7789};
use mipidsi::options::{ColorInversion, ColorOrder, Orientation, Rotation};
use mipidsi::{Builder, NoResetPin};

use super::panel_bus::PanelBus;
use super::spec::{Panel, SpiSpec};
use super::DisplayError;

/// Rows compared and pushed together by [`SpiPanel::present`].
pub const BAND_ROWS: usize = 8;

/// Bytes of the commands that open a window for RAMWR: CASET and RASET with 4 parameters each,
/// and RAMWR itself.
pub const WINDOW_COMMAND_BYTES: u64 = 5 + 5 + 1;

/// How long the reset line is held low, and how long the controller needs after it.
const RESET_LOW_US: u32 = 20;
const RESET_RECOVERY_US: u32 = 120_000;

/// The controller behind mipidsi, one variant per supported panel.
enum Controller<SPI: SpiDevice, DC: OutputPin> {
    St7789(mipidsi::Display<PanelBus<SPI, DC>, ST7789, NoResetPin>),
    Ili9341(mipidsi::Display<PanelBus<SPI, DC>, ILI9341Rgb565, NoResetPin>),
    /// mipidsi drives the ILI9486 over SPI in 18-bit colour only (3 bytes per pixel).
    Ili9486(mipidsi::Display<PanelBus<SPI, DC>, ILI9486Rgb666, NoResetPin>),
}

/// A rectangle of the back buffer, inclusive corners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

/// An SPI panel with its back buffer.
pub struct SpiPanel<SPI: SpiDevice, DC: OutputPin, P> {
    name: String,
    model: Panel,
    controller: Controller<SPI, DC>,
    /// Held for the panel's life so the reset line stays high and the backlight on.
    _lines: [Option<P>; 2],
    width: usize,
    height: usize,
    /// The next frame, RGB565.
    back: Vec<u16>,
    /// What the panel shows.
    shown: Vec<u16>,
    /// Nothing pushed yet: the panel's memory holds whatever it powered up with.
    fresh: bool,
    windows: Vec<Window>,
    sent: Arc<AtomicU64>,
    last_push: u64,
}

impl<SPI, DC, P> SpiPanel<SPI, DC, P>
where
    SPI: SpiDevice,
    DC: OutputPin,
    P: OutputPin,
{
    /// Resets (through `reset`, else by command) and initialises the panel `config` describes,
    /// then turns on `backlight`. `name` names the panel in errors.
    pub fn new<D: DelayNs>(
        name: &str,
        config: &SpiSpec,
        spi: SPI,
        dc: DC,
        mut reset: Option<P>,
        mut backlight: Option<P>,
        delay: &mut D,
    ) -> Result<Self, DisplayError> {
        let fail = |detail: String| DisplayError::Device {
            device: name.to_owned(),
            detail,
        };
        if let Some(pin) = reset.as_mut() {
            pin.set_low()
                .and_then(|()| {
                    delay.delay_us(RESET_LOW_US);
                    pin.set_high()
                })
                .map_err(|e| fail(format!("reset line: {e:?}")))?;
            delay.delay_us(RESET_RECOVERY_US);
        }
        let sent = Arc::new(AtomicU64::new(0));
        let bus = PanelBus::new(spi, dc, Arc::clone(&sent));
        let controller = match config.panel {
            Panel::St7789 => Controller::St7789(
                init(ST7789, bus, config, delay).map_err(|e| fail(e.to_string()))?,
            ),
            Panel::Ili9341 => Controller::Ili9341(
                init(ILI9341Rgb565, bus, config, delay).map_err(|e| fail(e.to_string()))?,
            ),
            Panel::Ili9486 => Controller::Ili9486(
                init(ILI9486Rgb666, bus, config, delay).map_err(|e| fail(e.to_string()))?,
            ),
        };
        if let Some(pin) = backlight.as_mut() {
            pin.set_high()
                .map_err(|e| fail(format!("backlight line: {e:?}")))?;
        }
        let (width, height) = match config.rotation {
            90 | 270 => (config.height as usize, config.width as usize),
            _ => (config.width as usize, config.height as usize),
        };
        Ok(SpiPanel {
            name: name.to_owned(),
            model: config.panel,
            controller,
            _lines: [reset, backlight],
            width,
            height,
            back: vec![0; width * height],
            shown: vec![0; width * height],
            fresh: true,
            windows: Vec::with_capacity(height.div_ceil(BAND_ROWS)),
            sent,
            last_push: 0,
        })
    }

    /// E.g. "ST7789 on /dev/spidev0.0".
    pub fn describe(&self) -> String {
        format!("{} on {}", self.model.name(), self.name)
    }

    /// Bytes the last [`SpiPanel::present`] sent over SPI (commands and pixels).
    pub fn last_push_bytes(&self) -> u64 {
        self.last_push
    }

    /// Bytes a push of the whole screen sends.
    pub fn full_push_bytes(&self) -> u64 {
        let per_pixel = match self.controller {
            Controller::Ili9486(_) => 3,
            _ => 2,
        };
        (self.width * self.height) as u64 * per_pixel + WINDOW_COMMAND_BYTES
    }

    /// Sends what changed in the back buffer since the last push to the panel.
    pub fn present(&mut self) -> Result<(), DisplayError> {
        let before = self.sent.load(Ordering::Relaxed);
        self.find_windows();
        for i in 0..self.windows.len() {
            let w = self.windows[i];
            self.push(w).map_err(|e| DisplayError::Device {
                device: self.name.clone(),
                detail: e.to_string(),
            })?;
        }
        self.fresh = false;
        self.last_push = self.sent.load(Ordering::Relaxed) - before;
        Ok(())
    }

    /// The windows that cover every changed pixel, into `self.windows`.
    fn find_windows(&mut self) {
        self.windows.clear();
        let w = self.width;
        for band in (0..self.height).step_by(BAND_ROWS) {
            // Columns and rows of the changed pixels in this band.
            let mut span: Option<Window> = None;
            for y in band..(band + BAND_ROWS).min(self.height) {
                let (new, old) = (&self.back[y * w..][..w], &self.shown[y * w..][..w]);
                let (x0, x1) = if self.fresh {
                    (0, w - 1)
                } else {
                    let Some(first) = new.iter().zip(old).position(|(a, b)| a != b) else {
                        continue;
                    };
                    let mut from_end = new.iter().rev().zip(old.iter().rev());
                    let last = w - 1 - from_end.position(|(a, b)| a != b).unwrap_or(0);
                    (first, last)
                };
                span = Some(match span {
                    None => Window {
                        x0,
                        y0: y,
                        x1,
                        y1: y,
                    },
                    Some(s) => Window {
                        x0: s.x0.min(x0),
                        x1: s.x1.max(x1),
                        y1: y,
                        ..s
                    },
                });
            }
            let Some(span) = span else { continue };
            match self.windows.last_mut() {
                Some(above)
                    if above.y1 + 1 == span.y0 && (above.x0, above.x1) == (span.x0, span.x1) =>
                {
                    above.y1 = span.y1;
                }
                _ => self.windows.push(span),
            }
        }
    }

    /// Sends one window of the back buffer and records it as shown.
    fn push(&mut self, win: Window) -> Result<(), PanelError> {
        let w = self.width;
        let back = &self.back;
        let pixels = (win.y0..=win.y1).flat_map(|y| {
            back[y * w + win.x0..=y * w + win.x1]
                .iter()
                .map(|&v| Rgb565::from(RawU16::new(v)))
        });
        let (x0, y0, x1, y1) = (win.x0 as u16, win.y0 as u16, win.x1 as u16, win.y1 as u16);
        let result = match &mut self.controller {
            Controller::St7789(d) => d.set_pixels(x0, y0, x1, y1, pixels),
            Controller::Ili9341(d) => d.set_pixels(x0, y0, x1, y1, pixels),
            Controller::Ili9486(d) => d.set_pixels(x0, y0, x1, y1, pixels.map(Rgb666::from)),
        };
        result.map_err(|e| PanelError::Write(format!("{e:?}")))?;
        for y in win.y0..=win.y1 {
            let row = y * w + win.x0..=y * w + win.x1;
            self.shown[row.clone()].copy_from_slice(&self.back[row]);
        }
        Ok(())
    }
}

/// Why a panel could not be set up or written (the driver's errors are `Debug` only, kept as text).
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("rotation {0} is not a multiple of 90")]
    Rotation(u32),
    #[error("{0} pixels is too large")]
    TooLarge(u32),
    #[error("panel initialisation failed: {0}")]
    Init(String),
    #[error("SPI write failed: {0}")]
    Write(String),
}

/// Initialises controller `model` with the options of `config`.
fn init<M, SPI, DC, D>(
    model: M,
    bus: PanelBus<SPI, DC>,
    config: &SpiSpec,
    delay: &mut D,
) -> Result<mipidsi::Display<PanelBus<SPI, DC>, M, NoResetPin>, PanelError>
where
    M: Model,
    M::ColorFormat: mipidsi::interface::InterfacePixelFormat<u8>,
    SPI: SpiDevice,
    DC: OutputPin,
    D: DelayNs,
{
    let rotation = Rotation::try_from_degree(config.rotation as i32)
        .map_err(|_| PanelError::Rotation(config.rotation))?;
    let size = |v: u32| u16::try_from(v).map_err(|_| PanelError::TooLarge(v));
    Builder::new(model, bus)
        .display_size(size(config.width)?, size(config.height)?)
        .display_offset(size(config.offset_x)?, size(config.offset_y)?)
        .orientation(Orientation::new().rotate(rotation))
        .invert_colors(if config.invert_colors {
            ColorInversion::Inverted
        } else {
            ColorInversion::Normal
        })
        .color_order(if config.bgr {
            ColorOrder::Bgr
        } else {
            ColorOrder::Rgb
        })
        .init(delay)
        .map_err(|e| PanelError::Init(format!("{e:?}")))
}

impl<SPI: SpiDevice, DC: OutputPin, P> OriginDimensions for SpiPanel<SPI, DC, P> {
    fn size(&self) -> Size {
        Size::new(self.width as u32, self.height as u32)
    }
}

impl<SPI: SpiDevice, DC: OutputPin, P> DrawTarget for SpiPanel<SPI, DC, P> {
    type Color = Rgb888;
    type Error = Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if let Some(i) = pixel_index(p, self.width, self.height) {
                self.back[i] = rgb565(c);
            }
        }
        Ok(())
    }

    fn fill_solid(&mut self, area: &Rectangle, color: Self::Color) -> Result<(), Self::Error> {
        let area = area.intersection(&self.bounding_box());
        let Some(bottom_right) = area.bottom_right() else {
            return Ok(());
        };
        let v = rgb565(color);
        for y in area.top_left.y as usize..=bottom_right.y as usize {
            let row = y * self.width;
            self.back[row + area.top_left.x as usize..=row + bottom_right.x as usize].fill(v);
        }
        Ok(())
    }
}

/// `c` as a raw RGB565 value.
fn rgb565(c: Rgb888) -> u16 {
    Rgb565::from(c).into_storage()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panel_memory_sizes_are_mipidsi_s() {
        assert_eq!(Panel::St7789.memory_size(), widen(ST7789::FRAMEBUFFER_SIZE));
        assert_eq!(
            Panel::Ili9341.memory_size(),
            widen(ILI9341Rgb565::FRAMEBUFFER_SIZE)
        );
        assert_eq!(
            Panel::Ili9486.memory_size(),
            widen(ILI9486Rgb666::FRAMEBUFFER_SIZE)
        );
    }

    fn widen((w, h): (u16, u16)) -> (u32, u32) {
        (w.into(), h.into())
    }

    #[test]
    fn rgb565_packs_red_high() {
        assert_eq!(rgb565(Rgb888::new(255, 0, 0)), 0xf800);
        assert_eq!(rgb565(Rgb888::new(0, 255, 0)), 0x07e0);
        assert_eq!(rgb565(Rgb888::new(0, 0, 255)), 0x001f);
    }
}
