//! Frames from a pipe: raw I420 or YUYV frames of the configured size, or a stream of JPEG images
//! (MJPEG), on standard input, a named pipe or a file. `rpicam-vid --codec yuv420 -o - | kith run`
//! drives a Raspberry Pi camera module this way.
//!
//! Every read waits with `poll` in short slices, so a stop request is honoured and systemd's
//! watchdog fed even when no writer ever comes. A named pipe whose writer goes away is reported
//! lost, closed and reopened with back-off; standard input and files end the stream at their end.
//! A named pipe that is not there yet when kith starts is lost the same way until its writer
//! creates it. The frame buffer is allocated
//! when the source opens and reused for every frame.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::ops::Range;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use super::decode::FrameDecoder;
use super::format::CameraFormat;
use super::wait::{wait_readable, Wait};
use super::{CapturedFrame, FrameSource, Lost, Negotiated, PipeSettings, SourceError};
use crate::backoff::Backoff;
use crate::service::StopFlag;

/// Room the MJPEG stream buffer keeps beyond one uncompressed RGB frame.
const JPEG_SLACK: usize = 64 * 1024;

/// What the path turned out to be when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Stdin,
    Fifo,
    File,
}

/// What one read from the input gave.
enum ReadResult {
    Bytes(usize),
    End,
    Stopped,
}

/// What the next call found in the input.
enum Next {
    Frame(Range<usize>),
    End,
    Stopped,
}

/// Reads frames from standard input, a named pipe or a file.
pub struct PipeSource {
    settings: PipeSettings,
    name: String,
    kind: InputKind,
    input: Option<File>,
    /// Raw formats: one frame. MJPEG: the stream, unconsumed bytes in `start..end`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    decoder: FrameDecoder,
    backoff: Backoff,
    stop: StopFlag,
}

impl PipeSource {
    /// Opens the pipe (a named pipe opens at once, before any writer has come). A path that is
    /// not there yet is not an error: the source starts lost and opens it when it appears.
    pub fn open(settings: &PipeSettings, stop: StopFlag) -> Result<Self, SourceError> {
        let name = if is_stdin(&settings.path) {
            "stdin".to_owned()
        } else {
            settings.path.display().to_string()
        };
        let (w, h) = (settings.width as usize, settings.height as usize);
        let len = settings
            .format
            .packed_frame_len(w, h)
            .unwrap_or(w * h * 3 + JPEG_SLACK);
        if is_stdin(&settings.path) && stdin_is_null() {
            return Err(SourceError::Unusable {
                name,
                detail: "field `camera.path` = \"-\" but standard input is /dev/null (as under \
                         systemd): no frame can come; name a named pipe that the camera writes to"
                    .into(),
            });
        }
        let (kind, input) = if is_stdin(&settings.path) || settings.path.exists() {
            let (kind, input) = open_input(&settings.path).map_err(|e| SourceError::Fatal {
                name: name.clone(),
                detail: format!("cannot open: {e}"),
            })?;
            (kind, Some(input))
        } else {
            // Reopened like a named pipe whose writer went away.
            (InputKind::Fifo, None)
        };
        Ok(PipeSource {
            settings: settings.clone(),
            name,
            kind,
            input,
            buf: vec![0; len],
            start: 0,
            end: 0,
            decoder: FrameDecoder::with_capacity(w, h),
            backoff: Backoff::new(settings.retry),
            stop,
        })
    }

    /// The frame layout the config sets: a pipe has no driver to negotiate with.
    fn layout(&self) -> Negotiated {
        let s = &self.settings;
        let stride = s
            .format
            .pixel_format()
            .map_or(0, |p| p.packed_stride(s.width as usize));
        Negotiated {
            width: s.width,
            height: s.height,
            format: s.format,
            stride: u32::try_from(stride).unwrap_or(u32::MAX),
        }
    }

    /// The input went away: a named pipe is closed now and reopened later; standard input cannot
    /// come back.
    fn gone(&mut self, detail: String) -> SourceError {
        self.input = None;
        self.start = 0;
        self.end = 0;
        if self.kind == InputKind::Stdin {
            return SourceError::Fatal {
                name: self.name.clone(),
                detail,
            };
        }
        SourceError::Lost(Lost {
            name: self.name.clone(),
            detail,
            retry_in: self.backoff.schedule(),
        })
    }

    fn corrupt(&self, detail: String) -> SourceError {
        SourceError::Corrupt {
            name: self.name.clone(),
            detail,
        }
    }

    /// One read into `buf[at..]`, after waiting for data.
    fn read_into(&mut self, at: usize) -> Result<ReadResult, SourceError> {
        let Some(input) = self.input.as_mut() else {
            return Ok(ReadResult::End);
        };
        let error = loop {
            match wait_readable(input.as_fd(), &self.stop, None) {
                Ok(Wait::Stopped) => return Ok(ReadResult::Stopped),
                Ok(_) => {}
                Err(e) => break e,
            }
            match input.read(&mut self.buf[at..]) {
                Ok(0) => return Ok(ReadResult::End),
                Ok(n) => return Ok(ReadResult::Bytes(n)),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => break e,
            }
        };
        Err(self.gone(format!("read failed: {error}")))
    }

    /// Reads one raw frame of the configured size.
    fn next_raw(&mut self) -> Result<Next, SourceError> {
        let len = self.buf.len();
        let mut filled = 0;
        while filled < len {
            match self.read_into(filled)? {
                ReadResult::Bytes(n) => filled += n,
                ReadResult::Stopped => return Ok(Next::Stopped),
                ReadResult::End if filled == 0 => return Ok(Next::End),
                ReadResult::End => {
                    return Err(self.corrupt(format!(
                        "truncated frame: the stream ended after {filled} of {len} bytes"
                    )))
                }
            }
        }
        Ok(Next::Frame(0..len))
    }

    /// Finds the next complete JPEG in the stream, reading more as needed.
    fn next_jpeg(&mut self) -> Result<Next, SourceError> {
        loop {
            match find_jpeg(&self.buf[self.start..self.end]) {
                Scan::Complete(r) => {
                    let frame = self.start + r.start..self.start + r.end;
                    self.start += r.end;
                    return Ok(Next::Frame(frame));
                }
                Scan::Incomplete { skip } => self.start += skip,
                Scan::Broken { skip, detail } => {
                    self.start += skip;
                    return Err(self.corrupt(detail));
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.end = 0;
                return Err(
                    self.corrupt(format!("no complete JPEG within {} bytes", self.buf.len()))
                );
            }
            match self.read_into(self.end)? {
                ReadResult::Bytes(n) => self.end += n,
                ReadResult::Stopped => return Ok(Next::Stopped),
                ReadResult::End if self.end == 0 => return Ok(Next::End),
                ReadResult::End => {
                    let pending = self.end;
                    self.end = 0;
                    return Err(self.corrupt(format!(
                        "truncated frame: the stream ended {pending} bytes into a JPEG"
                    )));
                }
            }
        }
    }
}

impl FrameSource for PipeSource {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, SourceError> {
        if self.input.is_none() {
            if !self.backoff.wait(&self.stop) {
                return Ok(None);
            }
            match open_input(&self.settings.path) {
                Ok((kind, input)) => {
                    self.kind = kind;
                    self.input = Some(input);
                }
                Err(e) => return Err(self.gone(format!("cannot reopen: {e}"))),
            }
        }
        let next = match self.settings.format {
            CameraFormat::Mjpeg => self.next_jpeg()?,
            _ => self.next_raw()?,
        };
        let range = match next {
            Next::Frame(range) => range,
            Next::Stopped => return Ok(None),
            Next::End if self.kind == InputKind::Fifo => {
                return Err(self.gone("the writer closed the pipe".into()))
            }
            Next::End => return Ok(None),
        };
        self.backoff.reset();
        let layout = self.layout();
        self.decoder
            .capture(layout, &self.name, &self.buf[range])
            .map(Some)
    }

    fn negotiated(&self) -> Option<Negotiated> {
        Some(self.layout())
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Whether standard input is /dev/null (systemd's default for a service): nothing will ever come.
fn stdin_is_null() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(null) = std::fs::metadata("/dev/null") else {
        return false;
    };
    let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|stdin| stdin.file_type().is_char_device() && stdin.rdev() == null.rdev())
}

/// Opens `path` for reading; a named pipe opens non-blocking, so no writer is needed yet.
fn open_input(path: &Path) -> io::Result<(InputKind, File)> {
    if is_stdin(path) {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        return Ok((InputKind::Stdin, File::from(fd)));
    }
    if std::fs::metadata(path)?.file_type().is_fifo() {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        return Ok((InputKind::Fifo, file));
    }
    Ok((InputKind::File, File::open(path)?))
}

/// Where the next JPEG image lies in a stream of bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// A whole image, from its SOI to its EOI marker.
    Complete(Range<usize>),
    /// No whole image yet; the first `skip` bytes come before any image and can be dropped.
    Incomplete { skip: usize },
    /// The bytes from an SOI on are not a JPEG; drop `skip` bytes and look again.
    Broken { skip: usize, detail: String },
}

/// Walks the JPEG marker structure (lengths of the header segments, the entropy-coded data after
/// each SOS up to the next marker) from the first SOI marker to the EOI marker.
pub(super) fn find_jpeg(d: &[u8]) -> Scan {
    let Some(soi) = d.windows(2).position(|w| w == [0xFF, 0xD8]) else {
        // A last 0xFF may be the first byte of the next SOI.
        let keep = usize::from(d.last() == Some(&0xFF));
        return Scan::Incomplete {
            skip: d.len() - keep,
        };
    };
    let incomplete = Scan::Incomplete { skip: soi };
    let broken = |at: usize, detail: String| Scan::Broken {
        skip: at.max(soi + 2),
        detail,
    };
    let mut i = soi + 2;
    loop {
        match d.get(i) {
            None => return incomplete,
            Some(0xFF) => {}
            Some(_) => {
                return broken(
                    i,
                    format!("bad JPEG: no marker {} bytes into the image", i - soi),
                )
            }
        }
        // Markers may be preceded by any number of 0xFF fill bytes.
        while d.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = d.get(i) else {
            return incomplete;
        };
        i += 1;
        match marker {
            0xD9 => return Scan::Complete(soi..i),
            0xD8 => {
                return broken(
                    i - 2,
                    "bad JPEG: an image ended before its EOI marker".into(),
                )
            }
            0x01 | 0xD0..=0xD7 => continue,
            0x00 => return broken(i, "bad JPEG: stuffed byte outside entropy data".into()),
            _ => {}
        }
        let Some(len) = d
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            return incomplete;
        };
        if len < 2 {
            return broken(i, format!("bad JPEG: segment length {len}"));
        }
        i += len;
        if marker == 0xDA {
            // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart.
            loop {
                match (d.get(i), d.get(i + 1)) {
                    (Some(0xFF), Some(&next)) if next != 0x00 && !(0xD0..=0xD7).contains(&next) => {
                        break
                    }
                    (Some(_), Some(_)) => i += 1,
                    _ => return incomplete,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal marker skeleton: SOI, one segment, SOS with entropy data holding a stuffed byte
    /// and a restart marker, EOI.
    fn skeleton() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 1, 2];
        v.extend([0xFF, 0xDA, 0x00, 0x03, 9]);
        v.extend([1, 2, 0xFF, 0x00, 3, 0xFF, 0xD3, 4]);
        v.extend([0xFF, 0xD9]);
        v
    }

    #[test]
    fn finds_whole_images_after_garbage() {
        let jpeg = skeleton();
        let mut stream = vec![7, 7, 7];
        stream.extend(&jpeg);
        stream.extend(&jpeg);
        assert_eq!(find_jpeg(&stream), Scan::Complete(3..3 + jpeg.len()));
        let rest = &stream[3 + jpeg.len()..];
        assert_eq!(find_jpeg(rest), Scan::Complete(0..jpeg.len()));
    }

    #[test]
    fn every_prefix_of_an_image_is_incomplete() {
        let jpeg = skeleton();
        for n in 0..jpeg.len() {
            match find_jpeg(&jpeg[..n]) {
                Scan::Incomplete { skip } => assert_eq!(skip, 0, "prefix {n}"),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
        assert_eq!(find_jpeg(&[1, 2, 0xFF]), Scan::Incomplete { skip: 2 });
    }

    #[test]
    fn a_cut_image_followed_by_a_new_one_is_broken_then_found() {
        let jpeg = skeleton();
        let mut stream = jpeg[..9].to_vec();
        stream.extend(&jpeg);
        let Scan::Broken { skip, .. } = find_jpeg(&stream) else {
            panic!("{:?}", find_jpeg(&stream));
        };
        assert_eq!(find_jpeg(&stream[skip..]), Scan::Complete(0..jpeg.len()));
    }
}
