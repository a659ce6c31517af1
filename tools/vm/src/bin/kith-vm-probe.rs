//! `kith-vm-probe`: the small tools the checks inside the test VM need and busybox lacks: the
//! formats a V4L2 device offers, a framebuffer's geometry (and setting its depth), a monotonic
//! clock in milliseconds, waiting for a file to say something, and timing how long a process
//! takes to stop after SIGTERM.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kith::camera::v4l2_abi::{self, FrameSize};

#[derive(Parser)]
#[command(name = "kith-vm-probe")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lists the pixel formats and frame sizes of a V4L2 capture device, one format a line.
    Formats { device: PathBuf },
    /// Prints a framebuffer's geometry as key=value lines.
    Fbinfo { device: PathBuf },
    /// Sets a framebuffer's depth (16 or 32 bits per pixel), then prints its geometry.
    Fbdepth { device: PathBuf, bits: u32 },
    /// Prints the monotonic clock in milliseconds.
    Now,
    /// Waits until FILE contains TEXT (or has LINES lines, or, with --exists, is there at all),
    /// printing the milliseconds waited (or since SINCE);
    /// prints "timeout" (or "exited" when PID ended first) and exits 1 otherwise.
    Wait {
        file: PathBuf,
        #[arg(long)]
        contains: Option<String>,
        /// Wait until FILE no longer contains the text instead.
        #[arg(long, requires = "contains")]
        absent: bool,
        #[arg(long)]
        lines: Option<usize>,
        /// Wait only until FILE exists (a device node coming back), without reading it.
        #[arg(long, conflicts_with_all = ["contains", "lines"])]
        exists: bool,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Give up as soon as this process has exited.
        #[arg(long)]
        pid: Option<i32>,
        /// Count the milliseconds from this monotonic time (`now`) instead of from the start.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Watches FILE until PID exits and prints the largest number of its lines that contained
    /// TEXT at any one time (e.g. the camera buffers mapped in /proc/PID/maps during a run).
    Peak {
        file: PathBuf,
        text: String,
        pid: i32,
    },
    /// Sends SIGTERM to PID and prints the milliseconds until it exited (is a zombie or gone);
    /// exits 1 if it still runs after TIMEOUT_MS.
    Term {
        pid: i32,
        #[arg(long, default_value_t = 5_000)]
        timeout_ms: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Formats { device } => formats(&device),
        Command::Fbinfo { device } => fbinfo(&device, None),
        Command::Fbdepth { device, bits } => fbinfo(&device, Some(bits)),
        Command::Now => {
            println!("{}", now_ms());
            Ok(())
        }
        Command::Wait {
            file,
            contains,
            absent,
            lines,
            exists,
            timeout_ms,
            pid,
            since,
        } => {
            let until = Until {
                contains: contains.as_deref(),
                absent,
                lines,
                exists,
            };
            wait(&file, &until, timeout_ms, pid, since.unwrap_or_else(now_ms))
        }
        Command::Peak { file, text, pid } => {
            println!("{}", peak(&file, &text, pid));
            Ok(())
        }
        Command::Term { pid, timeout_ms } => term(pid, timeout_ms),
    }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

fn fourcc(v: u32) -> String {
    v.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect()
}

fn formats(device: &Path) -> Result<()> {
    let file = File::open(device).with_context(|| format!("{}: cannot open", device.display()))?;
    for index in 0.. {
        let Ok(desc) = v4l2_abi::enum_capture_format(&file, index) else {
            break;
        };
        let mut sizes = Vec::new();
        for size_index in 0.. {
            let Ok(size) = v4l2_abi::enum_frame_size(&file, desc.pixelformat, size_index) else {
                break;
            };
            match size.size() {
                FrameSize::Discrete(d) => sizes.push(format!("{}x{}", d.width, d.height)),
                FrameSize::Stepwise(s) => {
                    sizes.push(format!(
                        "{}-{}x{}-{}",
                        s.min_width, s.max_width, s.min_height, s.max_height
                    ));
                    break;
                }
            }
        }
        println!(
            "{} \"{}\" sizes={}",
            fourcc(desc.pixelformat),
            desc.description(),
            sizes.join(",")
        );
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Bitfield {
    offset: u32,
    length: u32,
    msb_right: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct VarScreenInfo {
    xres: u32,
    yres: u32,
    xres_virtual: u32,
    yres_virtual: u32,
    xoffset: u32,
    yoffset: u32,
    bits_per_pixel: u32,
    grayscale: u32,
    red: Bitfield,
    green: Bitfield,
    blue: Bitfield,
    transp: Bitfield,
    nonstd: u32,
    activate: u32,
    rest: [u32; 18],
}

#[repr(C)]
struct FixScreenInfo {
    id: [u8; 16],
    smem_start: libc::c_ulong,
    smem_len: u32,
    kind: u32,
    type_aux: u32,
    visual: u32,
    xpanstep: u16,
    ypanstep: u16,
    ywrapstep: u16,
    line_length: u32,
    mmio_start: libc::c_ulong,
    mmio_len: u32,
    accel: u32,
    capabilities: u16,
    reserved: [u16; 2],
}

const FBIOGET_VSCREENINFO: u64 = 0x4600;
const FBIOPUT_VSCREENINFO: u64 = 0x4601;
const FBIOGET_FSCREENINFO: u64 = 0x4602;

fn fbinfo(device: &Path, depth: Option<u32>) -> Result<()> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(device)
        .with_context(|| format!("{}: cannot open", device.display()))?;
    let fd = file.as_raw_fd();
    // SAFETY: VarScreenInfo is plain old data; all-zero is a valid value.
    let mut var: VarScreenInfo = unsafe { std::mem::zeroed() };
    // SAFETY: FBIOGET_VSCREENINFO writes one fb_var_screeninfo, which VarScreenInfo lays out.
    if unsafe { libc::ioctl(fd, FBIOGET_VSCREENINFO as _, &mut var) } != 0 {
        bail!(
            "{}: FBIOGET_VSCREENINFO: {}",
            device.display(),
            std::io::Error::last_os_error()
        );
    }
    if let Some(bits) = depth {
        let (r, g, b) = match bits {
            16 => ((11, 5), (5, 6), (0, 5)),
            32 => ((16, 8), (8, 8), (0, 8)),
            _ => bail!("depth {bits} is neither 16 nor 32"),
        };
        let field = |(offset, length)| Bitfield {
            offset,
            length,
            msb_right: 0,
        };
        var.bits_per_pixel = bits;
        var.red = field(r);
        var.green = field(g);
        var.blue = field(b);
        var.transp = field((0, 0));
        // SAFETY: FBIOPUT_VSCREENINFO reads and writes back one fb_var_screeninfo.
        if unsafe { libc::ioctl(fd, FBIOPUT_VSCREENINFO as _, &mut var) } != 0 {
            bail!(
                "{}: FBIOPUT_VSCREENINFO {bits} bpp: {}",
                device.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    // SAFETY: FixScreenInfo is plain old data; all-zero is a valid value.
    let mut fix: FixScreenInfo = unsafe { std::mem::zeroed() };
    // SAFETY: FBIOGET_FSCREENINFO writes one fb_fix_screeninfo, which FixScreenInfo lays out.
    if unsafe { libc::ioctl(fd, FBIOGET_FSCREENINFO as _, &mut fix) } != 0 {
        bail!(
            "{}: FBIOGET_FSCREENINFO: {}",
            device.display(),
            std::io::Error::last_os_error()
        );
    }
    let id_len = fix.id.iter().position(|&b| b == 0).unwrap_or(16);
    println!("id={}", String::from_utf8_lossy(&fix.id[..id_len]));
    println!("width={}", var.xres);
    println!("height={}", var.yres);
    println!("virtual={}x{}", var.xres_virtual, var.yres_virtual);
    println!("offset={}x{}", var.xoffset, var.yoffset);
    println!("line_length={}", fix.line_length);
    println!("bits_per_pixel={}", var.bits_per_pixel);
    println!("red={}/{}", var.red.offset, var.red.length);
    println!("green={}/{}", var.green.offset, var.green.length);
    println!("blue={}/{}", var.blue.offset, var.blue.length);
    println!("transp={}/{}", var.transp.offset, var.transp.length);
    println!("smem_len={}", fix.smem_len);
    Ok(())
}

/// What `wait` waits for in a file.
struct Until<'a> {
    contains: Option<&'a str>,
    absent: bool,
    lines: Option<usize>,
    exists: bool,
}

impl Until<'_> {
    fn met(&self, file: &Path) -> bool {
        if self.exists {
            return file.exists();
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let has = self
            .contains
            .is_none_or(|t| text.contains(t) != self.absent);
        let enough = self.lines.is_none_or(|n| text.lines().count() >= n);
        has && enough
    }
}

fn wait(file: &Path, until: &Until, timeout_ms: u64, pid: Option<i32>, since: u64) -> Result<()> {
    let start = Instant::now();
    loop {
        // Looked at before the process check: it may have written the awaited line as it ended.
        if until.met(file) {
            println!("{}", now_ms().saturating_sub(since));
            return Ok(());
        }
        if pid.is_some_and(exited) && !until.met(file) {
            println!("exited");
            std::process::exit(1);
        }
        if start.elapsed() > Duration::from_millis(timeout_ms) {
            println!("timeout");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn peak(file: &Path, text: &str, pid: i32) -> usize {
    let mut most = 0;
    while !exited(pid) {
        let contents = std::fs::read_to_string(file).unwrap_or_default();
        most = most.max(contents.lines().filter(|l| l.contains(text)).count());
        std::thread::sleep(Duration::from_millis(5));
    }
    most
}

/// Whether PID has exited: its /proc entry is gone or it is a zombie (not yet reaped).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn term(pid: i32, timeout_ms: u64) -> Result<()> {
    if exited(pid) {
        bail!("process {pid} is not running");
    }
    let start = Instant::now();
    // SAFETY: kill has no memory effects; it sends a signal to a process we started.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!("kill {pid}: {}", std::io::Error::last_os_error());
    }
    while !exited(pid) {
        if start.elapsed() > Duration::from_millis(timeout_ms) {
            println!("timeout");
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("{}", start.elapsed().as_millis());
    Ok(())
}
