//! MQTT against a real broker: mosquitto (Debian package `mosquitto`) started on a free loopback
//! port with a generated config, the real `kith` binary on the demo frames with an `[mqtt]`
//! section, and a subscriber with the same client crate. Each test prints why and passes when
//! mosquitto is not installed (CI installs it, so they run there).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// The mosquitto binary, or `None` (and why) when it is not installed.
fn mosquitto() -> Option<PathBuf> {
    let found = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        println!("skipped: mosquitto is not installed (apt-get install mosquitto)");
    }
    found
}

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto process with a config of the test's own, stopped and started again at will.
struct Broker {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts mosquitto with a plain loopback listener on a free port, `extra` config lines
    /// after it, and persistence in `dir` (so subscriptions survive a restart).
    fn start(binary: PathBuf, dir: &Path, extra: &str) -> Broker {
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!(
                "user root\npersistence true\npersistence_location {}/\nallow_anonymous true\nlistener {port} 127.0.0.1\n{extra}",
                dir.display()
            ),
        )
        .unwrap();
        let mut broker = Broker {
            binary,
            config,
            log: dir.join("mosquitto.log"),
            port,
            child: None,
        };
        broker.run();
        broker
    }

    /// Runs mosquitto and waits until its plain listener takes connections.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops mosquitto (SIGTERM: it saves its sessions) and waits for it to end.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, nix::sys::signal::Signal::SIGTERM);
            child.wait().unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// A message the subscriber received, and when.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    at: Instant,
}

/// A subscriber to `<prefix>/#` (QoS 1, a persistent session) on its own thread, reconnecting
/// every 100 ms while the broker is away.
struct Subscriber {
    received: Arc<Mutex<Vec<Received>>>,
    subscribed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscriber {
    fn start(port: u16, prefix: &str) -> Subscriber {
        let mut options = MqttOptions::new(
            format!("test-{}", prefix.replace('/', "-")),
            "127.0.0.1",
            port,
        );
        options
            .set_clean_session(false)
            .set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut connection) = Client::new(options, 10);
        let received = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (received.clone(), subscribed.clone(), stop.clone());
        let filter = format!("{prefix}/#");
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match connection.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        client
                            .try_subscribe(filter.as_str(), QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => s.store(true, Ordering::Relaxed),
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        r.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                        })
                    }
                    Ok(Ok(_)) | Err(rumqttc::RecvTimeoutError::Timeout) => {}
                    Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
                    Err(rumqttc::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        let subscriber = Subscriber {
            received,
            subscribed,
            stop,
            thread: Some(thread),
        };
        subscriber.wait_for("the subscription", 10, |_| {
            subscriber.subscribed.load(Ordering::Relaxed)
        });
        subscriber
    }

    fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The payloads on `<prefix>/<name>`, in order of arrival.
    fn on(&self, name: &str) -> Vec<Received> {
        let suffix = format!("/{name}");
        self.messages()
            .into_iter()
            .filter(|m| m.topic.ends_with(&suffix))
            .collect()
    }

    /// Waits up to `secs` for `done` to hold over the messages so far.
    fn wait_for(&self, what: &str, secs: u64, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(&self.messages()) {
            assert!(Instant::now() < deadline, "no {what} within {secs} s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The demo board (INT8 relation model only), headless, with `loop` and an `[mqtt]` section.
fn board(dir: &Path, looped: bool, mqtt: &str) -> PathBuf {
    let demo = common::demo_board();
    let text = demo
        .replace("kind = \"png\"\nevery = 1", "kind = \"none\"")
        .replace("loop = false", &format!("loop = {looped}"));
    assert!(text.contains("kind = \"none\"") && text.contains(&format!("loop = {looped}")));
    let path = dir.join("board.toml");
    std::fs::write(&path, format!("{text}\n[mqtt]\n{mqtt}\n")).unwrap();
    path
}

/// Starts `kith run` on `board` into `dir/out`, stderr to `dir/kith.log`.
fn kith(board: &Path, dir: &Path, frames: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["run", "--frames", &frames.to_string(), "--board"])
        .arg(board)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("kith.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The whole lines of results.jsonl so far, without their newlines.
fn lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("out/results.jsonl")).unwrap_or_default();
    text.split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(str::to_owned)
        .collect()
}

fn frame_number(json: &[u8]) -> u64 {
    serde_json::from_slice::<Value>(json).unwrap()["frame"]
        .as_u64()
        .unwrap()
}

/// The relation changes the README documents, worked out from the JSON lines: per frame, the
/// pairs of tracks whose shown label differs from the previous frame's (new pairs included).
fn expected_changes(lines: &[String]) -> Vec<(u64, u64, u64, String, Option<String>)> {
    let mut previous: HashMap<(u64, u64), String> = HashMap::new();
    let mut changes = Vec::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let frame = v["frame"].as_u64().unwrap();
        let mut current = HashMap::new();
        for r in v["relations"].as_array().unwrap() {
            let pair = (
                r["tracks"][0].as_u64().unwrap(),
                r["tracks"][1].as_u64().unwrap(),
            );
            let label = r["shown"].as_str().unwrap().to_owned();
            let before = previous.get(&pair).cloned();
            if before.as_ref() != Some(&label) {
                changes.push((frame, pair.0, pair.1, label.clone(), before));
            }
            current.insert(pair, label);
        }
        previous = current;
    }
    changes
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_frame_and_relation_change_reaches_the_broker_with_the_documented_schema() {
    let Some(binary) = mosquitto() else { return };
    let dir = temp_dir("schema");
    let broker = Broker::start(binary, &dir, "");
    let prefix = format!("kith-test/{}/schema", std::process::id());
    let subscriber = Subscriber::start(broker.port, &prefix);
    let board = board(
        &dir,
        false,
        &format!(
            "host = \"127.0.0.1\"\nport = {}\ntopic_prefix = \"{prefix}\"",
            broker.port
        ),
    );
    let status = kith(&board, &dir, 16).wait().unwrap();
    let log = std::fs::read_to_string(dir.join("kith.log")).unwrap();
    assert!(status.success(), "{log}");
    subscriber.wait_for("offline after the run", 10, |m| {
        m.last()
            .is_some_and(|m| m.topic.ends_with("/availability") && m.payload == b"offline")
    });

    // Each frame's message is its results.jsonl line, byte for byte, in order, none missing.
    let lines = lines(&dir);
    assert_eq!(lines.len(), 16);
    let frames: Vec<Vec<u8>> = subscriber
        .on("frame")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    let expected: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
    assert_eq!(frames, expected);

    // The relations topic: exactly the changes worked out from the lines, with their fields.
    let mut changes = Vec::new();
    for m in subscriber.on("relations") {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        let keys: BTreeSet<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            BTreeSet::from(["frame".into(), "source".into(), "changes".into()])
        );
        assert!(v["source"].as_str().unwrap().ends_with(".jpg"), "{v}");
        for c in v["changes"].as_array().unwrap() {
            assert_eq!(c.as_object().unwrap().len(), 7, "{c}");
            assert!(c["coarse"].is_string() && c["score"].is_f64(), "{c}");
            assert!(c["a"].is_u64() && c["b"].is_u64(), "{c}");
            changes.push((
                v["frame"].as_u64().unwrap(),
                c["tracks"][0].as_u64().unwrap(),
                c["tracks"][1].as_u64().unwrap(),
                c["label"].as_str().unwrap().to_owned(),
                c["previous"].as_str().map(str::to_owned),
            ));
        }
    }
    assert!(!changes.is_empty(), "the demo frames have relations");
    assert_eq!(changes, expected_changes(&lines));

    // Availability: online first, offline last, and offline is what a newcomer finds (retained).
    let availability: Vec<Vec<u8>> = subscriber
        .on("availability")
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(availability, [b"online".to_vec(), b"offline".to_vec()]);
    let newcomer = Subscriber::start(broker.port, &format!("{prefix}/availability"));
    newcomer.wait_for("the retained availability", 5, |m| !m.is_empty());
    assert_eq!(newcomer.messages()[0].payload, b"offline");
    assert!(!log.contains("dropped"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn publishing_resumes_within_5_s_of_a_broker_restart_and_kith_loses_no_frame() {
    let Some(binary) = mosquitto() else { return };
    let dir = temp_dir("restart");
    let mut broker = Broker::start(binary, &dir, "");
    let prefix = format!("kith-test/{}/restart", std::process::id());
    let subscriber = Subscriber::start(broker.port, &prefix);
    let board = board(
        &dir,
        true,
        &format!(
            "host = \"127.0.0.1\"\nport = {}\ntopic_prefix = \"{prefix}\"",
            broker.port
        ),
    );
    let mut kith = kith(&board, &dir, 100_000);
    subscriber.wait_for("5 frames", 120, |m| {
        m.iter().filter(|m| m.topic.ends_with("/frame")).count() >= 5
    });

    // The broker goes away for 3 s: frames keep flowing into results.jsonl.
    broker.stop();
    let written_at_stop = lines(&dir).len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        lines(&dir).len() > written_at_stop,
        "no frame written while the broker was away"
    );
    broker.run();
    let back = Instant::now();
    subscriber.wait_for("a frame after the restart", 30, |m| {
        m.iter().any(|m| m.topic.ends_with("/frame") && m.at > back)
    });
    let first = subscriber
        .on("frame")
        .into_iter()
        .find(|m| m.at > back)
        .unwrap();
    let resumed = first.at - back;
    println!(
        "publishing resumed {:.2} s after the broker's return",
        resumed.as_secs_f64()
    );
    assert!(
        resumed < Duration::from_secs(5),
        "resumed after {resumed:?}"
    );
    let newest_at_stop = written_at_stop as u64;
    subscriber.wait_for("frames written after the restart", 60, |m| {
        m.iter()
            .any(|m| m.topic.ends_with("/frame") && frame_number(&m.payload) > newest_at_stop + 5)
    });

    // Killed without a goodbye: the broker publishes kith's last will.
    signal(&kith, nix::sys::signal::Signal::SIGKILL);
    kith.wait().unwrap();
    subscriber.wait_for("the last will", 10, |m| {
        m.last()
            .is_some_and(|m| m.topic.ends_with("/availability") && m.payload == b"offline")
    });

    // kith's own output has every frame (numbered from 0), and every frame message is one of
    // its lines.
    let lines = lines(&dir);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(frame_number(line.as_bytes()), i as u64);
    }
    let received: BTreeSet<u64> = subscriber
        .on("frame")
        .iter()
        .map(|m| {
            let n = frame_number(&m.payload);
            assert_eq!(m.payload, lines[n as usize].as_bytes());
            n
        })
        .collect();
    // Frames kith did not deliver are counted: the log's drop count covers every gap.
    let last = *received.last().unwrap();
    let missing = last + 1 - received.len() as u64;
    let log = std::fs::read_to_string(dir.join("kith.log")).unwrap();
    assert!(log.contains("reconnecting with back-off"), "{log}");
    let dropped: u64 = log
        .split(" messages dropped so far")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in the log: {log}"));
    println!(
        "{} of {} frames received, {missing} missing, {dropped} messages dropped",
        received.len(),
        last + 1
    );
    assert!(
        missing <= dropped,
        "{missing} frames missing, {dropped} dropped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// PEM files of a test CA and a certificate it signs for `names`.
struct Pki {
    ca: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap().pem();
        Pki {
            ca,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and its key for `names`, as PEM.
    fn sign(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[test]
fn tls_with_a_client_certificate_is_accepted_and_a_wrong_ca_is_refused() {
    let Some(binary) = mosquitto() else { return };
    let dir = temp_dir("tls");
    let pki = Pki::new("kith test CA");
    let (server, server_key) = pki.sign("broker", &["localhost", "127.0.0.1"]);
    let (client, client_key) = pki.sign("kith", &[]);
    let wrong = Pki::new("another CA");
    for (name, text) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &server),
        ("server.key", &server_key),
        ("client.pem", &client),
        ("client.key", &client_key),
        ("wrong-ca.pem", &wrong.ca),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let tls_port = free_port();
    let d = dir.display();
    let broker = Broker::start(
        binary,
        &dir,
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n"
        ),
    );
    let prefix = format!("kith-test/{}/tls", std::process::id());
    let subscriber = Subscriber::start(broker.port, &prefix);
    let mqtt = |ca: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {tls_port}\ntopic_prefix = \"{prefix}\"\nca_file = \"{d}/{ca}\"\ncert_file = \"{d}/client.pem\"\nkey_file = \"{d}/client.key\""
        )
    };

    // The right CA and a client certificate: both frames arrive over TLS.
    let status = kith(&board(&dir, false, &mqtt("ca.pem")), &dir, 2)
        .wait()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("kith.log")).unwrap();
    assert!(status.success(), "{log}");
    subscriber.wait_for("offline after the TLS run", 10, |m| {
        m.iter().any(|m| m.payload == b"offline")
    });
    assert_eq!(subscriber.on("frame").len(), 2);

    // A CA that did not sign the broker's certificate: refused, nothing published, and the run
    // goes on (both frames in results.jsonl).
    let before = subscriber.messages().len();
    let status = kith(&board(&dir, false, &mqtt("wrong-ca.pem")), &dir, 2)
        .wait()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("kith.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("certificate"), "{log}");
    // results.jsonl is appended to: the first run's 2 lines and this run's 2.
    assert_eq!(lines(&dir).len(), 4);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(subscriber.messages().len(), before);

    let _ = std::fs::remove_dir_all(&dir);
}
