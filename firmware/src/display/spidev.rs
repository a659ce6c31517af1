//! An SPI panel on a Linux board: the spidev node for the SPI link (chip select by the kernel),
//! and gpio-cdev lines for DC, reset and backlight.

use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};

use super::panel::SpiPanel;
use super::spec::SpiSpec;
use super::DisplayError;

/// The panel driver over Linux devices.
pub type LinuxPanel = SpiPanel<SpidevDevice, CdevPin, CdevPin>;

/// The GPIO consumer label the lines carry (`gpioinfo` shows it).
const CONSUMER: &str = "kith";

/// Opens the spidev node and GPIO lines of a (validated) config and initialises the panel.
pub fn open(config: &SpiSpec) -> Result<LinuxPanel, DisplayError> {
    let fail = |path: &std::path::Path, detail: String| DisplayError::Device {
        device: path.display().to_string(),
        detail,
    };
    let mut spi = SpidevDevice::open(&config.spi)
        .map_err(|e| fail(&config.spi, format!("cannot open: {e}")))?;
    let mut options = SpidevOptions::new();
    options.bits_per_word(8).mode(SpiModeFlags::SPI_MODE_0);
    if let Some(hz) = config.speed_hz {
        options.max_speed_hz(hz);
    }
    spi.configure(&options.build())
        .map_err(|e| fail(&config.spi, format!("cannot configure: {e}")))?;
    let mut chip = Chip::new(&config.gpio_chip)
        .map_err(|e| fail(&config.gpio_chip, format!("cannot open: {e}")))?;
    let mut output = |field: &str, offset: u32, level: u8| {
        chip.get_line(offset)
            .and_then(|line| line.request(LineRequestFlags::OUTPUT, level, CONSUMER))
            .and_then(CdevPin::new)
            .map_err(|e| {
                fail(
                    &config.gpio_chip,
                    format!("line {offset} (`display.{field}`): {e}"),
                )
            })
    };
    let dc = output("dc", config.dc, 0)?;
    let reset = config.reset.map(|o| output("reset", o, 1)).transpose()?;
    let backlight = config
        .backlight
        .map(|o| output("backlight", o, 0))
        .transpose()?;
    SpiPanel::new(
        &config.spi.display().to_string(),
        config,
        spi,
        dc,
        reset,
        backlight,
        &mut Delay,
    )
}
