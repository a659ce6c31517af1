//! The displays against emulated hardware that checks real bytes: a framebuffer emulated by a
//! plain file of the right geometry (read back pixel by pixel, padding included), the `kith`
//! binary drawing on such a file next to its PNG snapshots, and SPI panels driven into a
//! recorder whose MIPI DCS stream is decoded back into the controller's memory.

mod common;

use std::path::{Path, PathBuf};

use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use kith::display::fbdev::Framebuffer;
use kith::display::spec::{DisplaySpec, FbPixelFormat, FbdevSpec};
use kith::display::Display;
use kith_runtime::image::RgbImage;
use kith_runtime::overlay;
use kith_runtime::{Frame, Person, PixelFormat, Relation, Scene};

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("kith-display-{name}-{}", std::process::id()))
}

/// A camera frame with detail everywhere: a gradient with a grid.
fn camera_frame(width: usize, height: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let grid = if x % 16 == 0 || y % 16 == 0 { 80 } else { 0 };
            data.extend_from_slice(&[
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                ((x + y) % 256) as u8 ^ grid,
            ]);
        }
    }
    data
}

/// Two persons and their relation in a 320x240 frame; `shift` moves the second person.
fn scene(shift: f32) -> Scene {
    let mut s = Scene {
        width: 320,
        height: 240,
        ..Default::default()
    };
    for (id, bbox) in [
        (0, [20.0, 30.0, 110.0, 220.0]),
        (1, [180.0 + shift, 40.0, 280.0 + shift, 230.0]),
    ] {
        s.persons.push(Person::new(id, bbox, 0.9)).unwrap();
    }
    let mut probs = [0.02; 6];
    probs[1] = 0.9;
    s.relations.push(Relation::new(0, 1, probs)).unwrap();
    s
}

/// Draws what the pipeline's renderer draws: the frame scaled over the target, then the scene.
fn draw<D>(target: &mut D, frame: &[u8], scene: &Scene)
where
    D: DrawTarget<Color = Rgb888> + OriginDimensions,
    D::Error: std::fmt::Debug,
{
    let f = Frame::packed(320, 240, PixelFormat::Rgb, frame);
    overlay::draw_frame(target, &f).unwrap();
    overlay::draw_scene(target, scene, true, &Default::default()).unwrap();
}

/// The same drawing on an RGB canvas of `width` x `height`.
fn expected(width: usize, height: usize, frame: &[u8], scene: &Scene) -> RgbImage {
    let mut canvas = RgbImage::new(width, height);
    draw(&mut canvas, frame, scene);
    canvas
}

// ---------------------------------------------------------------------------------------------
// Framebuffer on a file

const PADDING: u8 = 0xa5;

fn fb_config(path: &Path, w: u32, h: u32, format: &str, line: Option<u32>) -> FbdevSpec {
    FbdevSpec {
        device: path.to_owned(),
        emulated: true,
        width: Some(w),
        height: Some(h),
        pixel_format: FbPixelFormat::parse(format),
        line_length: line,
    }
}

/// `value` scaled to `bits` bits, rounded (the framebuffer's documented conversion).
fn scale(value: u8, bits: u32) -> u32 {
    let max = (1 << bits) - 1;
    (u32::from(value) * max + 127) / 255
}

/// The pixel bytes of `rgb` in `format` (little-endian memory order).
fn fb_pixel(format: &str, [r, g, b]: [u8; 3]) -> Vec<u8> {
    match format {
        "rgb565" => {
            let v = scale(r, 5) << 11 | scale(g, 6) << 5 | scale(b, 5);
            (v as u16).to_le_bytes().to_vec()
        }
        _ => vec![b, g, r, 0],
    }
}

fn check_framebuffer(format: &str, w: u32, h: u32, line: Option<u32>) {
    let bpp = if format == "rgb565" { 2 } else { 4 };
    let line_length = line.unwrap_or(w * bpp) as usize;
    let path = temp_path(&format!("fb-{format}-{w}x{h}-{line_length}"));
    std::fs::write(&path, vec![PADDING; line_length * h as usize]).unwrap();
    let mut fb = Framebuffer::open(&fb_config(&path, w, h, format, line)).unwrap();
    assert_eq!(fb.size(), Size::new(w, h));
    let frame = camera_frame(320, 240);
    let scene = scene(0.0);
    draw(&mut fb, &frame, &scene);
    let before = std::fs::read(&path).unwrap();
    assert!(before.iter().all(|&b| b == PADDING), "drawn before present");
    fb.present();
    let bytes = std::fs::read(&path).unwrap();
    let want = expected(w as usize, h as usize, &frame, &scene);
    let row = w as usize * bpp as usize;
    for y in 0..h as usize {
        let line = &bytes[y * line_length..(y + 1) * line_length];
        for x in 0..w as usize {
            let got = &line[x * bpp as usize..(x + 1) * bpp as usize];
            let rgb = want.pixel(x, y).unwrap();
            assert_eq!(
                got,
                fb_pixel(format, rgb),
                "{format} pixel ({x}, {y}) of {rgb:?}"
            );
        }
        assert!(
            line[row..].iter().all(|&b| b == PADDING),
            "{format}: padding of line {y} touched"
        );
    }
}

#[test]
fn framebuffer_rgb565_with_padded_lines() {
    check_framebuffer("rgb565", 160, 120, Some(160 * 2 + 24));
}

#[test]
fn framebuffer_xrgb8888_with_padded_lines() {
    check_framebuffer("xrgb8888", 200, 150, Some(200 * 4 + 64));
}

#[test]
fn framebuffer_packed_lines() {
    check_framebuffer("rgb565", 96, 64, None);
    check_framebuffer("xrgb8888", 96, 64, None);
}

#[test]
fn a_status_screen_reaches_the_framebuffer() {
    let path = temp_path("fb-status");
    std::fs::write(&path, vec![0u8; 64 * 4 * 48]).unwrap();
    let config = DisplaySpec::Fbdev(fb_config(&path, 64, 48, "xrgb8888", None));
    let mut display = Display::open(&config, None, Default::default()).unwrap();
    assert_eq!(display.resolution(), Some((64, 48)));
    display.show_status("camera lost").unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // The status background (dark red) in the corner, white text in the middle row.
    assert_eq!(&bytes[..4], &[0, 0, 40, 0]);
    let middle = &bytes[24 * 64 * 4..25 * 64 * 4];
    assert!(middle.chunks(4).any(|p| p == [255, 255, 255, 0]));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_file_too_small_for_its_geometry_is_refused() {
    let path = temp_path("fb-small");
    std::fs::write(&path, vec![0u8; 100]).unwrap();
    let e = Framebuffer::open(&fb_config(&path, 64, 48, "rgb565", None))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("100 bytes") && e.contains(&path.display().to_string()),
        "{e}"
    );
    std::fs::remove_file(&path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// `kith run` on a framebuffer file with --snapshots

#[test]
fn kith_run_draws_on_the_framebuffer_what_the_snapshots_show() {
    let dir = temp_path("run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h, line) = (320usize, 200usize, 320 * 2 + 32);
    let fb = dir.join("fb0");
    std::fs::write(&fb, vec![PADDING; line * h]).unwrap();
    let board = common::demo_board().replace(
        "kind = \"png\"\nevery = 1",
        &format!(
            "kind = \"fbdev\"\nemulated = true\ndevice = \"{}\"\nwidth = {w}\nheight = {h}\npixel_format = \"rgb565\"\nline_length = {line}",
            fb.display()
        ),
    );
    assert!(board.contains("fbdev"));
    std::fs::write(dir.join("board.toml"), board).unwrap();
    let out_dir = dir.join("out");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--board"])
        .arg(dir.join("board.toml"))
        .arg("--out")
        .arg(&out_dir)
        .args(["--frames", "2", "--snapshots", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Two frames, both snapshotted at the framebuffer's resolution; the file shows the last.
    let last = image::open(out_dir.join("frames/000001.png"))
        .unwrap()
        .to_rgb8();
    assert!(out_dir.join("frames/000000.png").is_file());
    assert_eq!(last.dimensions(), (w as u32, h as u32));
    // The snapshot and the framebuffer are drawn from the same scene at the same size, so the
    // framebuffer holds exactly the PNG's pixels converted to RGB565.
    let bytes = std::fs::read(&fb).unwrap();
    let mut differ = 0;
    for y in 0..h {
        let line = &bytes[y * line..(y + 1) * line];
        for x in 0..w {
            let png = last.get_pixel(x as u32, y as u32).0;
            if line[x * 2..x * 2 + 2] != fb_pixel("rgb565", png)[..] {
                differ += 1;
            }
        }
        assert!(
            line[w * 2..].iter().all(|&b| b == PADDING),
            "padding of line {y}"
        );
    }
    assert_eq!(differ, 0, "pixels differing from the PNG after conversion");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// SPI panels into a recorder

#[cfg(feature = "spi")]
mod spi {
    use super::*;

    use std::cell::{Cell, RefCell};
    use std::convert::Infallible;
    use std::rc::Rc;

    use embedded_graphics::pixelcolor::raw::RawU16;
    use embedded_graphics::pixelcolor::{IntoStorage, Rgb565, Rgb666};
    use embedded_hal::delay::DelayNs;
    use embedded_hal::digital::{self, OutputPin};
    use embedded_hal::spi::{self, Operation, SpiDevice};
    use kith::config::Devices;
    use kith::display::panel::SpiPanel;
    use kith::display::spec::{SpiConfig, SpiSpec};

    /// Everything sent over the wire: each byte with the DC level it was sent at.
    #[derive(Default)]
    struct Wire {
        dc: Cell<bool>,
        bytes: RefCell<Vec<(bool, u8)>>,
    }

    struct RecordingSpi(Rc<Wire>);

    impl spi::ErrorType for RecordingSpi {
        type Error = Infallible;
    }

    impl SpiDevice for RecordingSpi {
        fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Infallible> {
            let dc = self.0.dc.get();
            for op in operations {
                match op {
                    Operation::Write(bytes) => self
                        .0
                        .bytes
                        .borrow_mut()
                        .extend(bytes.iter().map(|&b| (dc, b))),
                    other => panic!("a display only writes, got {other:?}"),
                }
            }
            Ok(())
        }
    }

    struct DcPin(Rc<Wire>);

    impl digital::ErrorType for DcPin {
        type Error = Infallible;
    }

    impl OutputPin for DcPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.dc.set(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.dc.set(true);
            Ok(())
        }
    }

    /// A GPIO line that records its levels.
    #[derive(Clone, Default)]
    struct Line(Rc<RefCell<Vec<bool>>>);

    impl digital::ErrorType for Line {
        type Error = Infallible;
    }

    impl OutputPin for Line {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().push(false);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().push(true);
            Ok(())
        }
    }

    /// Adds up the delays asked for instead of sleeping.
    #[derive(Default)]
    struct Delay(u64);

    impl DelayNs for Delay {
        fn delay_ns(&mut self, ns: u32) {
            self.0 += u64::from(ns);
        }
    }

    const NEVER_WRITTEN: u32 = u32::MAX;

    /// A panel controller rebuilt from its DCS stream: its memory and its settings.
    struct Controller {
        columns: usize,
        rows: usize,
        /// Native orientation, row-major; 16-bit RGB565 or 18-bit RGB666 (packed r << 12 | g << 6 | b).
        ram: Vec<u32>,
        madctl: u8,
        colmod: u8,
        inverted: bool,
        awake: bool,
        on: bool,
        columns_window: (usize, usize),
        rows_window: (usize, usize),
        command: u8,
        params: Vec<u8>,
        cursor: (usize, usize),
        pixel: Vec<u8>,
    }

    impl Controller {
        fn new(columns: usize, rows: usize) -> Self {
            Controller {
                columns,
                rows,
                ram: vec![NEVER_WRITTEN; columns * rows],
                madctl: 0,
                colmod: 0x66,
                inverted: false,
                awake: false,
                on: false,
                columns_window: (0, 0),
                rows_window: (0, 0),
                command: 0,
                params: Vec::new(),
                cursor: (0, 0),
                pixel: Vec::new(),
            }
        }

        fn feed(&mut self, stream: &[(bool, u8)]) {
            for &(dc, byte) in stream {
                if dc {
                    self.data(byte);
                } else {
                    self.start(byte);
                }
            }
        }

        fn start(&mut self, command: u8) {
            self.command = command;
            self.params.clear();
            self.pixel.clear();
            match command {
                0x01 => *self = Controller::new(self.columns, self.rows),
                0x11 => self.awake = true,
                0x20 => self.inverted = false,
                0x21 => self.inverted = true,
                0x29 => self.on = true,
                0x2c => self.cursor = (self.columns_window.0, self.rows_window.0),
                _ => {}
            }
        }

        fn data(&mut self, byte: u8) {
            if self.command == 0x2c {
                return self.pixel_byte(byte);
            }
            self.params.push(byte);
            let p = &self.params;
            let pair = |i: usize| usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
            match (self.command, p.len()) {
                (0x2a, 4) => self.columns_window = (pair(0), pair(2)),
                (0x2b, 4) => self.rows_window = (pair(0), pair(2)),
                (0x36, 1) => self.madctl = byte,
                (0x3a, 1) => self.colmod = byte,
                _ => {}
            }
        }

        fn pixel_byte(&mut self, byte: u8) {
            self.pixel.push(byte);
            let value = match (self.colmod & 0x07, self.pixel.as_slice()) {
                (0x05, &[a, b]) => u32::from(u16::from_be_bytes([a, b])),
                (0x06, &[r, g, b]) => {
                    u32::from(r >> 2) << 12 | u32::from(g >> 2) << 6 | u32::from(b >> 2)
                }
                _ => return,
            };
            self.pixel.clear();
            let (x, y) = self.cursor;
            // MADCTL: MV exchanges the axes the column and page counters address; MX and MY
            // then reverse the native columns and rows.
            let (mut column, mut row) = if self.madctl & 0x20 != 0 {
                (y, x)
            } else {
                (x, y)
            };
            if self.madctl & 0x40 != 0 {
                column = self.columns - 1 - column;
            }
            if self.madctl & 0x80 != 0 {
                row = self.rows - 1 - row;
            }
            assert!(
                column < self.columns && row < self.rows,
                "write outside memory"
            );
            self.ram[row * self.columns + column] = value;
            self.cursor = if x < self.columns_window.1 {
                (x + 1, y)
            } else {
                (self.columns_window.0, y + 1)
            };
        }
    }

    struct Rig {
        panel: SpiPanel<RecordingSpi, DcPin, Line>,
        wire: Rc<Wire>,
        controller: Controller,
        reset: Line,
        backlight: Line,
        config: SpiSpec,
    }

    impl Rig {
        fn new(panel: &str, (columns, rows): (usize, usize), config: &str) -> Rig {
            let text = format!(
                "panel = \"{panel}\"\nspi = \"/dev/spidev0.0\"\ngpio_chip = \"/dev/gpiochip0\"\ndc = 25\nreset = 27\nbacklight = 18\n{config}"
            );
            let config: SpiConfig = toml::from_str(&text).unwrap();
            let config = config.into_spec(Path::new("/"), Devices::Skipped).unwrap();
            let wire = Rc::new(Wire::default());
            let (reset, backlight) = (Line::default(), Line::default());
            let mut delay = Delay::default();
            let panel = SpiPanel::new(
                "test panel",
                &config,
                RecordingSpi(Rc::clone(&wire)),
                DcPin(Rc::clone(&wire)),
                Some(reset.clone()),
                Some(backlight.clone()),
                &mut delay,
            )
            .unwrap();
            assert!(
                delay.0 >= 120_000_000,
                "the controller gets its start-up time"
            );
            let mut rig = Rig {
                panel,
                wire,
                controller: Controller::new(columns, rows),
                reset,
                backlight,
                config,
            };
            rig.drain();
            rig
        }

        /// Feeds what was sent since the last call to the controller; returns its byte count.
        fn drain(&mut self) -> usize {
            let bytes = std::mem::take(&mut *self.wire.bytes.borrow_mut());
            self.controller.feed(&bytes);
            bytes.len()
        }

        fn present(&mut self) -> usize {
            self.panel.present().unwrap();
            let sent = self.drain();
            assert_eq!(sent as u64, self.panel.last_push_bytes());
            sent
        }

        /// Whether the visible part of the controller's memory shows `canvas` the way the
        /// configured rotation turns it, and nothing outside it was written.
        fn check_shows(&self, canvas: &RgbImage, to_ram: impl Fn([u8; 3]) -> u32) {
            let c = &self.config;
            let (w, h) = (c.width as usize, c.height as usize);
            let (ox, oy) = (c.offset_x as usize, c.offset_y as usize);
            let ctl = &self.controller;
            for row in 0..ctl.rows {
                for column in 0..ctl.columns {
                    let got = ctl.ram[row * ctl.columns + column];
                    let (cx, ry) = (column.wrapping_sub(ox), row.wrapping_sub(oy));
                    if cx >= w || ry >= h {
                        assert_eq!(got, NEVER_WRITTEN, "outside the glass: ({column}, {row})");
                        continue;
                    }
                    // The on-screen pixel at native (cx, ry) for each rotation.
                    let (x, y) = match c.rotation {
                        0 => (cx, ry),
                        90 => (ry, w - 1 - cx),
                        180 => (w - 1 - cx, h - 1 - ry),
                        270 => (h - 1 - ry, cx),
                        r => panic!("rotation {r}"),
                    };
                    let want = to_ram(canvas.pixel(x, y).unwrap());
                    assert_eq!(
                        got, want,
                        "native ({column}, {row}) = screen ({x}, {y}), rotation {}",
                        c.rotation
                    );
                }
            }
        }
    }

    fn rgb565([r, g, b]: [u8; 3]) -> u32 {
        u32::from(Rgb565::from(Rgb888::new(r, g, b)).into_storage())
    }

    fn rgb666_of_565(rgb: [u8; 3]) -> u32 {
        let c = Rgb666::from(Rgb565::from(RawU16::new(rgb565(rgb) as u16)));
        u32::from(c.r()) << 12 | u32::from(c.g()) << 6 | u32::from(c.b())
    }

    /// First frame, a frame whose second person moved, the same again, and a status screen.
    fn run_frames(rig: &mut Rig, to_ram: impl Fn([u8; 3]) -> u32 + Copy) -> [usize; 4] {
        let size = rig.panel.size();
        let (w, h) = (size.width as usize, size.height as usize);
        let frame = camera_frame(320, 240);
        let mut sent = [0; 4];
        for (i, shift) in [0.0, 12.0, 12.0].into_iter().enumerate() {
            let scene = scene(shift);
            draw(&mut rig.panel, &frame, &scene);
            sent[i] = rig.present();
            rig.check_shows(&expected(w, h, &frame, &scene), to_ram);
        }
        overlay::draw_status(&mut rig.panel, "camera lost").unwrap();
        sent[3] = rig.present();
        let mut status = RgbImage::new(w, h);
        overlay::draw_status(&mut status, "camera lost").unwrap();
        rig.check_shows(&status, to_ram);
        sent
    }

    fn check_start_up(rig: &Rig, colmod: u8) {
        let ctl = &rig.controller;
        assert!(ctl.awake && ctl.on, "sleep out and display on");
        assert_eq!(ctl.colmod, colmod);
        assert_eq!(ctl.inverted, rig.config.invert_colors);
        assert_eq!(ctl.madctl & 0x08 != 0, rig.config.bgr, "MADCTL BGR bit");
        assert_eq!(*rig.reset.0.borrow(), [false, true], "reset pulsed");
        assert_eq!(*rig.backlight.0.borrow(), [true], "backlight on");
    }

    fn report(name: &str, rig: &Rig, sent: [usize; 4]) {
        eprintln!(
            "{name}: full frame {} bytes; bytes pushed: first frame {}, second person moved 12 px {}, unchanged {}, status screen {}",
            rig.panel.full_push_bytes(),
            sent[0],
            sent[1],
            sent[2],
            sent[3]
        );
        assert_eq!(
            sent[0] as u64,
            rig.panel.full_push_bytes(),
            "first push is whole"
        );
        assert!(sent[1] > 0 && (sent[1] as u64) < rig.panel.full_push_bytes() / 2);
        assert_eq!(sent[2], 0, "nothing changed, nothing sent");
    }

    #[test]
    fn st7789_240x240_with_offsets() {
        let mut rig = Rig::new(
            "st7789",
            (240, 320),
            "width = 240\nheight = 240\noffset_y = 80\ninvert_colors = true",
        );
        check_start_up(&rig, 0x55);
        let sent = run_frames(&mut rig, rgb565);
        report("st7789 240x240 offset_y 80", &rig, sent);
    }

    #[test]
    fn st7789_240x240_upside_down() {
        // Rotated 180 degrees the visible rows sit at the other end of the memory: the offset
        // is counted from there.
        let mut rig = Rig::new(
            "st7789",
            (240, 320),
            "width = 240\nheight = 240\nrotation = 180\noffset_y = 80",
        );
        check_start_up(&rig, 0x55);
        run_frames(&mut rig, rgb565);
    }

    #[test]
    fn ili9341_320x240_rotated() {
        let mut rig = Rig::new(
            "ili9341",
            (240, 320),
            "width = 240\nheight = 320\nrotation = 90\nbgr = true",
        );
        assert_eq!(rig.panel.size(), Size::new(320, 240));
        check_start_up(&rig, 0x55);
        let sent = run_frames(&mut rig, rgb565);
        report("ili9341 320x240 rotation 90", &rig, sent);
    }

    #[test]
    fn ili9486_18_bit_rotated_270() {
        let mut rig = Rig::new(
            "ili9486",
            (320, 480),
            "width = 320\nheight = 480\nrotation = 270",
        );
        assert_eq!(rig.panel.size(), Size::new(480, 320));
        check_start_up(&rig, 0x66);
        let sent = run_frames(&mut rig, rgb666_of_565);
        report("ili9486 480x320 rotation 270", &rig, sent);
    }
}
