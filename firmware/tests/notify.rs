//! `kith run` under systemd's notification protocol (`Type=notify` in packaging/kith.service): the
//! test binds the Unix datagram socket systemd would, passes it in NOTIFY_SOCKET, and reads what
//! kith sends: READY=1 once the models are loaded, WATCHDOG=1 from the frame loop when
//! WATCHDOG_USEC asks for pings, STOPPING=1 at the end.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs two demo frames with NOTIFY_SOCKET (and WATCHDOG_USEC when given) set; returns the
/// datagrams kith sent, in order.
fn notifications(name: &str, watchdog_usec: Option<&str>) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("kith-notify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .args(["run", "--frames", "2", "--board"])
        .arg(common::write_demo_board(&dir))
        .arg("--out")
        .arg(dir.join("out"))
        .current_dir(repo())
        .env("NOTIFY_SOCKET", &path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null());
    if let Some(usec) = watchdog_usec {
        command.env("WATCHDOG_USEC", usec);
    }
    let mut child = command.spawn().unwrap();
    let mut messages = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(status.success(), "kith exited with {status}");
                    // Whatever was sent before the exit is queued already.
                    socket.set_nonblocking(true).unwrap();
                    while let Ok(n) = socket.recv(&mut buf) {
                        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    break;
                }
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    println!("{name}: {messages:?}");
    messages
}

#[test]
fn run_sends_ready_then_watchdog_pings_then_stopping() {
    let messages = notifications("watchdog", Some("10000000"));
    assert_eq!(
        messages.first().map(String::as_str),
        Some("READY=1\nSTATUS=running board \"demo\"\n"),
        "{messages:?}"
    );
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    assert!(pings >= 1, "no WATCHDOG=1 after READY=1: {messages:?}");
    assert_eq!(
        messages.last().map(String::as_str),
        Some("STOPPING=1\n"),
        "{messages:?}"
    );
    // Besides those, only the status summary kith sends every 5 s (a slow run, e.g. under qemu).
    let summaries = messages.iter().filter(|m| is_summary(m)).count();
    assert_eq!(messages.len(), pings + summaries + 2, "{messages:?}");
}

/// Whether `message` is the periodic status summary: one `STATUS=` line naming the board.
fn is_summary(message: &str) -> bool {
    message.starts_with("STATUS=board \"demo\": ") && message.matches('\n').count() == 1
}

#[test]
fn run_sends_no_watchdog_pings_unless_asked() {
    let mut messages = notifications("ready-only", None);
    messages.retain(|m| !is_summary(m));
    assert_eq!(
        messages,
        [
            "READY=1\nSTATUS=running board \"demo\"\n".to_owned(),
            "STOPPING=1\n".to_owned()
        ]
    );
}
