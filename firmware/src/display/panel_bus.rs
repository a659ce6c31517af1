//! The 4-wire SPI link to a panel controller, as mipidsi's `Interface`: a command byte with the
//! DC line low, then its parameters or pixel data with DC high. It is mipidsi's `SpiInterface`
//! with an owned buffer (a display that lives as long as the session cannot borrow one) sized to
//! spidev's default transfer limit, and a count of the bytes sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use mipidsi::interface::{Interface, InterfaceKind};

/// Bytes per SPI write: spidev refuses longer transfers unless its `bufsiz` parameter is raised.
pub const TRANSFER_BYTES: usize = 4096;

/// What went wrong on the link.
#[derive(Debug)]
pub enum BusError<S, D> {
    Spi(S),
    Dc(D),
}

/// A panel's SPI device and DC line.
pub struct PanelBus<SPI, DC> {
    spi: SPI,
    dc: DC,
    buffer: Vec<u8>,
    sent: Arc<AtomicU64>,
}

impl<SPI: SpiDevice, DC: OutputPin> PanelBus<SPI, DC> {
    /// A link over `spi` and `dc`; `sent` counts every byte written.
    pub fn new(spi: SPI, dc: DC, sent: Arc<AtomicU64>) -> Self {
        PanelBus {
            spi,
            dc,
            buffer: vec![0; TRANSFER_BYTES],
            sent,
        }
    }

    fn write(&mut self, len: usize) -> Result<(), BusError<SPI::Error, DC::Error>> {
        self.spi.write(&self.buffer[..len]).map_err(BusError::Spi)?;
        self.sent.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl<SPI: SpiDevice, DC: OutputPin> Interface for PanelBus<SPI, DC> {
    type Word = u8;
    type Error = BusError<SPI::Error, DC::Error>;

    const KIND: InterfaceKind = InterfaceKind::Serial4Line;

    fn send_command(&mut self, command: u8, args: &[u8]) -> Result<(), Self::Error> {
        self.dc.set_low().map_err(BusError::Dc)?;
        self.buffer[0] = command;
        self.write(1)?;
        self.dc.set_high().map_err(BusError::Dc)?;
        // Parameters are a few bytes (at most 16 in DCS); chunk anyway.
        for chunk in args.chunks(TRANSFER_BYTES) {
            self.buffer[..chunk.len()].copy_from_slice(chunk);
            self.write(chunk.len())?;
        }
        Ok(())
    }

    fn send_pixels<const N: usize>(
        &mut self,
        pixels: impl IntoIterator<Item = [u8; N]>,
    ) -> Result<(), Self::Error> {
        let per_transfer = TRANSFER_BYTES / N * N;
        let mut len = 0;
        for pixel in pixels {
            self.buffer[len..len + N].copy_from_slice(&pixel);
            len += N;
            if len == per_transfer {
                self.write(len)?;
                len = 0;
            }
        }
        if len > 0 {
            self.write(len)?;
        }
        Ok(())
    }

    fn send_repeated_pixel<const N: usize>(
        &mut self,
        pixel: [u8; N],
        count: u32,
    ) -> Result<(), Self::Error> {
        self.send_pixels((0..count).map(|_| pixel))
    }
}
