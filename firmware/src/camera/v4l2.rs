//! V4L2 cameras (USB webcams, CSI bridges with a V4L2 capture node) by standard mmap streaming:
//! VIDIOC_QUERYCAP, VIDIOC_S_FMT, VIDIOC_REQBUFS + QUERYBUF + mmap, QBUF / DQBUF, STREAMON, with
//! `poll` in short slices so a stop request or the dequeue timeout is never missed.
//!
//! The ioctls and their structs are kith's own copies of linux/videodev2.h ([`super::v4l2_abi`]),
//! the buffer mappings memmap2's; the streaming loop waits with a timeout and can wait again
//! without re-queueing a buffer it never got back.
//!
//! A frame is handed out straight from the mmap buffer (the pipeline converts it into its own
//! buffer); the buffer goes back to the driver at the next call. A device that vanishes, reports an
//! error or delivers nothing within the timeout is reported lost; its file and mappings are closed
//! at once and it is reopened with back-off on the following calls. A device node that is not
//! there yet when kith starts (a USB camera still enumerating) is lost the same way from the
//! start.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use memmap2::{MmapMut, MmapOptions};

use super::decode::FrameDecoder;
use super::format::{fourcc_text, CameraFormat};
use super::v4l2_abi::{self as abi, V4l2PixFormat};
use super::wait::{wait_readable, Wait};
use super::{CapturedFrame, FrameSource, Lost, Negotiated, SourceError, V4l2Settings};
use crate::backoff::Backoff;
use crate::service::StopFlag;

/// Fewest mmap buffers streaming works with: one held by kith, one filled by the driver.
const MIN_BUFFERS: u32 = 2;

/// Frames from a V4L2 capture device.
pub struct V4l2Source {
    settings: V4l2Settings,
    name: String,
    stream: Option<Stream>,
    /// What the driver agreed to when the device was last opened (`None`: never opened yet).
    negotiated: Option<Negotiated>,
    decoder: FrameDecoder,
    backoff: Backoff,
    stop: StopFlag,
}

impl V4l2Source {
    /// Opens the device, negotiates the format and starts streaming. Errors are one line naming
    /// the device. A device node that is not there yet is not an error: the source starts lost
    /// and opens the device when it appears.
    pub fn open(settings: &V4l2Settings, stop: StopFlag) -> Result<Self, SourceError> {
        let name = settings.device.display().to_string();
        let stream = if settings.device.exists() {
            Some(Stream::open(settings).map_err(|e| SourceError::Fatal {
                name: name.clone(),
                detail: e.to_string(),
            })?)
        } else {
            None
        };
        let negotiated = stream.as_ref().map(|s| s.negotiated);
        let (width, height) =
            negotiated.map_or((settings.width, settings.height), |n| (n.width, n.height));
        Ok(V4l2Source {
            settings: settings.clone(),
            name,
            stream,
            negotiated,
            decoder: FrameDecoder::with_capacity(width as usize, height as usize),
            backoff: Backoff::new(settings.retry),
            stop,
        })
    }

    /// Closes the device (buffers, mappings, file) and schedules the next attempt to reopen it.
    fn lost(&mut self, detail: String) -> SourceError {
        self.stream = None;
        SourceError::Lost(Lost {
            name: self.name.clone(),
            detail,
            retry_in: self.backoff.schedule(),
        })
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, SourceError> {
        if self.stream.is_none() {
            if !self.backoff.wait(&self.stop) {
                return Ok(None);
            }
            match Stream::open(&self.settings) {
                Ok(stream) => {
                    self.negotiated = Some(stream.negotiated);
                    self.stream = Some(stream);
                }
                Err(e) => return Err(self.lost(e.to_string())),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        let (index, used) = match stream.capture(&self.stop, self.settings.timeout) {
            Ok(Some(captured)) => captured,
            Ok(None) => return Ok(None),
            Err(CaptureError::Corrupt(detail)) => {
                return Err(SourceError::Corrupt {
                    name: self.name.clone(),
                    detail,
                })
            }
            Err(CaptureError::Lost(detail)) => return Err(self.lost(detail)),
        };
        self.backoff.reset();
        let Some(stream) = self.stream.as_ref() else {
            return Ok(None);
        };
        let bytes = &stream.maps[index][..used];
        self.decoder
            .capture(stream.negotiated, &self.name, bytes)
            .map(Some)
    }

    fn negotiated(&self) -> Option<Negotiated> {
        self.negotiated
    }
}

/// Why a capture gave no frame.
enum CaptureError {
    /// This frame is bad; the next may be fine.
    Corrupt(String),
    /// The device is gone or silent.
    Lost(String),
}

/// Why a device could not be opened and set streaming. The text is the detail of
/// [`SourceError::Fatal`] or of a lost camera; the ioctl's own error is kept as the source.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    #[error("not a V4L2 device (VIDIOC_QUERYCAP: {0})")]
    NotV4l2(#[source] io::Error),
    #[error(
        "\"{0}\" is a multi-planar capture device, which kith does not read \
         (on a Raspberry Pi use `rpicam-vid --codec yuv420 -o - | kith run` with a pipe camera)"
    )]
    MultiPlanar(String),
    #[error("\"{0}\" is not a video capture device")]
    NotCapture(String),
    #[error("\"{0}\" does not support streaming I/O")]
    NoStreaming(String),
    #[error("VIDIOC_S_FMT {width}x{height} {format} failed: {source}")]
    SetFormat {
        width: u32,
        height: u32,
        format: String,
        #[source]
        source: io::Error,
    },
    #[error("asked for {asked}, the driver gave {given}, which kith cannot read")]
    UnreadableFormat { asked: String, given: String },
    #[error("the driver set an empty {0}x{1} frame")]
    EmptyFrame(u32, u32),
    #[error("VIDIOC_REQBUFS ({0} mmap buffers) failed: {1}")]
    RequestBuffers(u32, #[source] io::Error),
    #[error("the driver granted {0} mmap buffers, at least {MIN_BUFFERS} are needed")]
    TooFewBuffers(u32),
    #[error("VIDIOC_QUERYBUF {0} failed: {1}")]
    QueryBuffer(u32, #[source] io::Error),
    #[error("mmap of buffer {0} failed: {1}")]
    Map(u32, #[source] io::Error),
    #[error("VIDIOC_QBUF failed: {0}")]
    Queue(#[source] io::Error),
    #[error("VIDIOC_STREAMON failed: {0}")]
    StreamOn(#[source] io::Error),
}

/// An open, streaming capture device. Dropping it stops streaming, unmaps and frees the buffers
/// and closes the file, in that order.
struct Stream {
    /// The driver's buffers, mapped; each is unmapped when dropped.
    maps: Vec<MmapMut>,
    /// Index of the buffer kith holds (handed out last), queued again at the next capture.
    held: Option<usize>,
    requested: bool,
    streaming: bool,
    negotiated: Negotiated,
    file: File,
}

impl Stream {
    fn open(settings: &V4l2Settings) -> Result<Stream, SetupError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&settings.device)
            .map_err(SetupError::Open)?;
        check_capabilities(&file)?;
        let negotiated = set_format(&file, settings)?;
        let mut stream = Stream {
            maps: Vec::new(),
            held: None,
            requested: false,
            streaming: false,
            negotiated,
            file,
        };
        stream.map_buffers(settings.buffers)?;
        for index in 0..stream.maps.len() {
            stream.queue(index).map_err(SetupError::Queue)?;
        }
        abi::stream_on(&stream.file).map_err(SetupError::StreamOn)?;
        stream.streaming = true;
        Ok(stream)
    }

    /// Asks for `count` mmap buffers and maps every one the driver grants.
    fn map_buffers(&mut self, count: u32) -> Result<(), SetupError> {
        let granted = abi::request_mmap_buffers(&self.file, count)
            .map_err(|e| SetupError::RequestBuffers(count, e))?;
        self.requested = true;
        if granted < MIN_BUFFERS {
            return Err(SetupError::TooFewBuffers(granted));
        }
        for index in 0..granted {
            let buf = abi::query_buffer(&self.file, index)
                .map_err(|e| SetupError::QueryBuffer(index, e))?;
            // SAFETY: a shared mapping of the `length` bytes the driver gave this buffer at its
            // mmap offset. The driver writes the buffer only while it is queued and kith reads
            // only the dequeued buffer it holds (`Stream::held`); the mapping lives in the
            // `Stream`, whose drop unmaps it before the buffers are freed.
            let map = unsafe {
                MmapOptions::new()
                    .offset(u64::from(buf.offset()))
                    .len(buf.length as usize)
                    .map_mut(&self.file)
            }
            .map_err(|e| SetupError::Map(index, e))?;
            self.maps.push(map);
        }
        Ok(())
    }

    fn queue(&mut self, index: usize) -> io::Result<()> {
        abi::queue_buffer(&self.file, index as u32)
    }

    /// Gives the held buffer back to the driver and waits for the next filled one, at most
    /// `timeout`. Returns its index and the bytes used, or `None` on a stop request.
    fn capture(
        &mut self,
        stop: &StopFlag,
        timeout: Duration,
    ) -> Result<Option<(usize, usize)>, CaptureError> {
        if let Some(index) = self.held.take() {
            self.queue(index)
                .map_err(|e| CaptureError::Lost(format!("VIDIOC_QBUF failed: {e}")))?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_readable(self.file.as_fd(), stop, Some(left)) {
                Ok(Wait::Ready) => {}
                Ok(Wait::Stopped) => return Ok(None),
                Ok(Wait::TimedOut) => {
                    return Err(CaptureError::Lost(format!(
                        "no frame within {} ms",
                        timeout.as_millis()
                    )))
                }
                Ok(Wait::Error) => {
                    return Err(CaptureError::Lost(
                        "the device reported an error (unplugged?)".into(),
                    ))
                }
                Err(e) => return Err(CaptureError::Lost(format!("poll failed: {e}"))),
            }
            let buf = match abi::dequeue_buffer(&self.file) {
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CaptureError::Lost(format!("VIDIOC_DQBUF failed: {e}"))),
            };
            let index = buf.index as usize;
            let Some(map) = self.maps.get(index) else {
                return Err(CaptureError::Lost(format!(
                    "the driver returned buffer {index} of {}",
                    self.maps.len()
                )));
            };
            let used = match buf.bytesused as usize {
                0 => map.len(),
                n => n.min(map.len()),
            };
            self.held = Some(index);
            if buf.flags & abi::V4L2_BUF_FLAG_ERROR != 0 {
                return Err(CaptureError::Corrupt(
                    "the driver marked the frame as corrupt".into(),
                ));
            }
            return Ok(Some((index, used)));
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Errors are ignored: the device may be gone, and the file is closed regardless.
        if self.streaming {
            let _ = abi::stream_off(&self.file);
        }
        self.maps.clear();
        if self.requested {
            // A count of 0 frees the (now unmapped) buffers.
            let _ = abi::request_mmap_buffers(&self.file, 0);
        }
    }
}

/// Checks that the device captures video by streaming I/O, single-planar.
fn check_capabilities(file: &File) -> Result<(), SetupError> {
    let cap = abi::query_capabilities(file).map_err(SetupError::NotV4l2)?;
    let caps = cap.node_caps();
    let card = cap.card();
    if caps & abi::V4L2_CAP_VIDEO_CAPTURE == 0 {
        return Err(if caps & abi::V4L2_CAP_VIDEO_CAPTURE_MPLANE != 0 {
            SetupError::MultiPlanar(card.to_string())
        } else {
            SetupError::NotCapture(card.to_string())
        });
    }
    if caps & abi::V4L2_CAP_STREAMING == 0 {
        return Err(SetupError::NoStreaming(card.to_string()));
    }
    Ok(())
}

/// Asks for the configured size and format (VIDIOC_S_FMT) and returns what the driver set.
fn set_format(file: &File, settings: &V4l2Settings) -> Result<Negotiated, SetupError> {
    let asked = settings.format;
    let wanted = V4l2PixFormat {
        width: settings.width,
        height: settings.height,
        pixelformat: u32::from_le_bytes(asked.fourcc()),
        field: abi::V4L2_FIELD_NONE,
        ..V4l2PixFormat::default()
    };
    let pix = abi::set_capture_format(file, wanted).map_err(|source| SetupError::SetFormat {
        width: settings.width,
        height: settings.height,
        format: fourcc_text(asked.fourcc()),
        source,
    })?;
    let code = pix.pixelformat.to_le_bytes();
    let format = CameraFormat::from_fourcc(code)
        .filter(|f| CameraFormat::V4L2.contains(f))
        .ok_or_else(|| SetupError::UnreadableFormat {
            asked: format!(
                "{}x{} {}",
                settings.width,
                settings.height,
                fourcc_text(asked.fourcc())
            ),
            given: format!("{}x{} {}", pix.width, pix.height, fourcc_text(code)),
        })?;
    if pix.width == 0 || pix.height == 0 {
        return Err(SetupError::EmptyFrame(pix.width, pix.height));
    }
    let stride = match format.pixel_format() {
        Some(p) => pix
            .bytesperline
            .max(u32::try_from(p.packed_stride(pix.width as usize)).unwrap_or(u32::MAX)),
        None => 0,
    };
    Ok(Negotiated {
        width: pix.width,
        height: pix.height,
        format,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::Retry;
    use std::path::PathBuf;

    fn settings(device: &str) -> V4l2Settings {
        V4l2Settings {
            device: PathBuf::from(device),
            format: CameraFormat::Yuyv,
            width: 640,
            height: 480,
            buffers: 4,
            timeout: Duration::from_millis(2000),
            retry: Retry {
                min: Duration::from_millis(250),
                max: Duration::from_millis(4000),
            },
        }
    }

    fn open_error(device: &str) -> String {
        match V4l2Source::open(&settings(device), StopFlag::new()) {
            Ok(_) => panic!("{device} opened as a camera"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_missing_device_is_a_lost_camera_naming_it() {
        // It may come later (a USB camera still enumerating): the source opens, and its first
        // frame is "camera lost" with the reason, retried with back-off.
        let mut source =
            V4l2Source::open(&settings("/dev/video-kith-missing"), StopFlag::new()).unwrap();
        assert_eq!(source.negotiated(), None);
        let e = match source.next_frame() {
            Err(e @ SourceError::Lost(_)) => e.to_string(),
            other => panic!("{:?}", other.map(|f| f.map(|f| f.name.to_owned()))),
        };
        assert!(
            e.starts_with("/dev/video-kith-missing: camera lost: cannot open"),
            "{e}"
        );
        assert!(
            e.contains("No such file") && e.contains("retrying in 250 ms"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_video_device_fails_cleanly() {
        let e = open_error("/dev/null");
        assert!(e.starts_with("/dev/null: not a V4L2 device"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let file = std::env::temp_dir().join(format!("kith-not-video-{}", std::process::id()));
        std::fs::write(&file, b"plain file").unwrap();
        let e = open_error(file.to_str().unwrap());
        assert!(e.contains("not a V4L2 device"), "{e}");
        std::fs::remove_file(&file).unwrap();
    }
}
