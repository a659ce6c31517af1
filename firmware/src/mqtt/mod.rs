//! MQTT: each frame's JSON line, the relation changes and kith's availability, published to a
//! broker (`[mqtt]` of the board config, README "MQTT").
//!
//! Publishing never blocks the frame loop: [`Publisher::publish`] puts the messages in a bounded
//! queue that drops its oldest message when full (counted, [`Publisher::dropped`]). Two threads
//! of their own take it from there: one hands queued messages to the client (rumqttc over rustls)
//! while it is connected, the other drives the connection and reconnects with back-off when the
//! broker goes away. Messages the client had not delivered when the connection broke go back to
//! the head of the queue and are sent again after reconnecting.

pub mod relations;
pub mod spec;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kith_runtime::Scene;
use rumqttc::{
    Client, Connection, Event, LastWill, MqttOptions, Packet, QoS, Request, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use self::relations::RelationChanges;
use self::spec::{MqttSpec, TlsFiles};
use crate::output;

/// Messages the queue holds while the broker is slow or away (a frame line and a relations
/// message per frame: about 10 s of frames at 6 frames/s).
pub const QUEUE_CAPACITY: usize = 128;

/// The first wait before reconnecting, and the longest (so publishing resumes within about
/// 2 s of the broker's return).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long closing waits for the queue to be sent and the broker to say goodbye.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Largest message: a frame's JSON line is at most `JSON_LINE_CAPACITY` (16 KiB).
const MAX_PACKET: usize = 64 * 1024;

/// Messages the client's own channel holds between the sending thread and the connection.
const CLIENT_CHANNEL: usize = 16;

/// The availability topic's payloads (retained; the broker sends `offline` as kith's last will
/// when the connection drops without a goodbye).
const ONLINE: &[u8] = b"online";
const OFFLINE: &[u8] = b"offline";

/// Why MQTT could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt: {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mqtt: {}: no {what} in PEM form: {source}", path.display())]
    Pem {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("mqtt: {}: {problem}", path.display())]
    Credentials {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("mqtt: host \"{0}\" is neither a DNS name nor an IP address (TLS checks the broker's certificate against it)")]
    ServerName(String),
    #[error("mqtt: TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    #[error("mqtt: cannot start its threads: {0}")]
    Thread(#[source] std::io::Error),
    #[error("mqtt: cannot encode a message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl MqttError {
    /// Whether the error is in the config or the files it names (exit status 2).
    pub fn is_config(&self) -> bool {
        !matches!(self, MqttError::Thread(_) | MqttError::Encode(_))
    }
}

/// One message waiting to be published.
#[derive(Debug, Clone)]
struct Message {
    topic: Arc<str>,
    retain: bool,
    payload: Vec<u8>,
}

/// A bounded queue that makes room by dropping its oldest message.
#[derive(Debug)]
struct Queue {
    messages: VecDeque<Message>,
    capacity: usize,
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Queue {
            messages: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `message`; returns how many old messages were dropped for it (0 or 1).
    fn push_back(&mut self, message: Message) -> u64 {
        let dropped = self.make_room();
        self.messages.push_back(message);
        dropped
    }

    /// Puts `message` first (sent before the others); when full, the oldest other message goes.
    fn push_front(&mut self, message: Message) -> u64 {
        let dropped = self.make_room();
        self.messages.push_front(message);
        dropped
    }

    fn make_room(&mut self) -> u64 {
        if self.messages.len() < self.capacity {
            return 0;
        }
        self.messages.pop_front();
        1
    }
}

/// What the frame loop and the two threads share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the sending thread (messages, connected, closing) and a back-off wait (closing).
    wake: Condvar,
    dropped: AtomicU64,
}

struct State {
    queue: Queue,
    connected: bool,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked left the queue whole: every change to it is one call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `n` dropped messages; the first drop of the run is logged (the count is logged at
    /// each reconnection and at the end).
    fn count_dropped(&self, n: u64) {
        if n > 0 && self.dropped.fetch_add(n, Ordering::Relaxed) == 0 {
            log::warn!("mqtt: queue full, dropping the oldest messages");
        }
    }
}

/// The three topics under the prefix.
struct Topics {
    frame: Arc<str>,
    relations: Arc<str>,
    availability: Arc<str>,
}

impl Topics {
    fn new(prefix: &str) -> Self {
        Topics {
            frame: format!("{prefix}/frame").into(),
            relations: format!("{prefix}/relations").into(),
            availability: format!("{prefix}/availability").into(),
        }
    }
}

/// Publishes frames to the broker of an `[mqtt]` section; closing it (drop) publishes `offline`,
/// sends what is queued and disconnects.
pub struct Publisher {
    shared: Arc<Shared>,
    topics: Topics,
    relations: RelationChanges,
    /// The frame's JSON line, reused.
    line: Vec<u8>,
    /// Told when the connection thread has ended.
    ended: mpsc::Receiver<()>,
    address: String,
}

impl Publisher {
    /// Reads the TLS and credentials files, and starts connecting (in the background: a broker
    /// that is not up yet is retried with back-off while frames flow).
    pub fn start(spec: &MqttSpec) -> Result<Self, MqttError> {
        let topics = Topics::new(&spec.topic_prefix);
        let qos = qos(spec.qos);
        let mut options = MqttOptions::new(&spec.client_id, &spec.host, spec.port);
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_clean_session(true)
            .set_last_will(LastWill::new(&*topics.availability, OFFLINE, qos, true));
        if let Some(tls) = &spec.tls {
            options.set_transport(Transport::tls_with_config(tls_config(tls, &spec.host)?));
        }
        if let Some(path) = &spec.credentials_file {
            let (user, password) = credentials(path)?;
            options.set_credentials(user, password);
        }
        let (client, connection) = Client::new(options, CLIENT_CHANNEL);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Queue::new(QUEUE_CAPACITY),
                connected: false,
                closing: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        });
        let address = format!("{}:{}", spec.host, spec.port);
        let online = Message {
            topic: topics.availability.clone(),
            retain: true,
            payload: ONLINE.to_vec(),
        };
        let (ended_tx, ended) = mpsc::channel();
        let s = shared.clone();
        let a = address.clone();
        std::thread::Builder::new()
            .name("mqtt-connection".into())
            .spawn(move || {
                drive(connection, &s, &online, &a);
                let _ = ended_tx.send(());
            })
            .map_err(MqttError::Thread)?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("mqtt-send".into())
            .spawn(move || send(&s, &client, qos))
            .map_err(MqttError::Thread)?;
        log::info!("mqtt: publishing to {address} under {}/", spec.topic_prefix);
        Ok(Publisher {
            shared,
            topics,
            relations: RelationChanges::default(),
            line: Vec::new(),
            ended,
            address,
        })
    }

    /// Queues the frame's JSON line (the bytes of its line in results.jsonl, without the newline)
    /// on `<prefix>/frame`, and the relations that changed on `<prefix>/relations`. Never waits
    /// for the broker.
    pub fn publish(
        &mut self,
        scene: &Scene,
        weights: &str,
        relation_model: &str,
    ) -> Result<(), MqttError> {
        self.line.clear();
        output::write_line(scene, weights, relation_model, &mut self.line)?;
        let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        self.queue(Message {
            topic: self.topics.frame.clone(),
            retain: false,
            payload: line.to_vec(),
        });
        if let Some(payload) = self.relations.message(scene)? {
            self.queue(Message {
                topic: self.topics.relations.clone(),
                retain: false,
                payload,
            });
        }
        Ok(())
    }

    /// Messages dropped so far because the queue was full (the broker away or too slow).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn queue(&self, message: Message) {
        let mut state = self.shared.lock();
        let n = state.queue.push_back(message);
        self.shared.count_dropped(n);
        drop(state);
        self.shared.wake.notify_all();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.queue(Message {
            topic: self.topics.availability.clone(),
            retain: true,
            payload: OFFLINE.to_vec(),
        });
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
        if self.ended.recv_timeout(CLOSE_WAIT).is_err() {
            log::warn!(
                "mqtt: {}: not closed within {} s, leaving it",
                self.address,
                CLOSE_WAIT.as_secs()
            );
        }
        let dropped = self.dropped();
        if dropped > 0 {
            log::warn!("mqtt: {dropped} messages dropped in this run (queue full while the broker was away or slow)");
        }
    }
}

/// The sending thread: hands queued messages to the client while connected; when closing, sends
/// what is left and disconnects.
fn send(shared: &Shared, client: &Client, qos: QoS) {
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if state.connected {
                    if let Some(message) = state.queue.messages.pop_front() {
                        break Some(message);
                    }
                }
                if state.closing && (state.queue.messages.is_empty() || !state.connected) {
                    break None;
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Some(message) = next else {
            let _ = client.try_disconnect();
            return;
        };
        let Message {
            topic,
            retain,
            payload,
        } = message;
        // Fails only when the connection thread has ended.
        if client.publish(&*topic, qos, retain, payload).is_err() {
            return;
        }
    }
}

/// The connection thread: drives the client's event loop, marks the connection up and down,
/// puts undelivered messages back in the queue and reconnects with back-off.
fn drive(mut connection: Connection, shared: &Shared, online: &Message, address: &str) {
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u64;
    loop {
        // Err: every client is gone (the sending thread ended).
        let Ok(event) = connection.recv() else { return };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if failures > 0 {
                    log::info!(
                        "mqtt: {address}: connected after {failures} failed attempts ({} messages dropped so far)",
                        shared.dropped.load(Ordering::Relaxed)
                    );
                } else {
                    log::debug!("mqtt: {address}: connected");
                }
                (backoff, failures) = (MIN_BACKOFF, 0);
                let mut state = shared.lock();
                state.connected = true;
                let n = state.queue.push_front(online.clone());
                shared.count_dropped(n);
                drop(state);
                shared.wake.notify_all();
            }
            Ok(_) => {}
            Err(e) => {
                let mut state = shared.lock();
                let was_connected = std::mem::replace(&mut state.connected, false);
                requeue(&mut connection, shared, &mut state, &online.topic);
                if state.closing {
                    return;
                }
                if was_connected || failures == 0 {
                    log::warn!("mqtt: {address}: {e}; reconnecting with back-off");
                } else {
                    log::debug!("mqtt: {address}: {e}");
                }
                failures += 1;
                // Wakes early when kith closes.
                let (state, _) = shared
                    .wake
                    .wait_timeout_while(state, backoff, |s| !s.closing)
                    .unwrap_or_else(PoisonError::into_inner);
                if state.closing {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Puts the messages the client had not delivered when the connection broke (unacknowledged or
/// still in its channel) back at the head of the queue, in their order; availability messages
/// are left out (the next connection publishes `online` first).
fn requeue(connection: &mut Connection, shared: &Shared, state: &mut State, availability: &str) {
    let undelivered: Vec<Message> = connection
        .eventloop
        .pending
        .drain(..)
        .filter_map(|request| match request {
            Request::Publish(p) if p.topic != availability => Some(Message {
                topic: p.topic.into(),
                retain: p.retain,
                payload: p.payload.to_vec(),
            }),
            _ => None,
        })
        .collect();
    for message in undelivered.into_iter().rev() {
        let n = state.queue.push_front(message);
        shared.count_dropped(n);
    }
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The TLS client config: only the CA file's certificates are trusted, and kith's certificate
/// is sent when the config names one. ring is the crypto (no C library to link).
fn tls_config(files: &TlsFiles, host: &str) -> Result<TlsConfiguration, MqttError> {
    ServerName::try_from(host).map_err(|_| MqttError::ServerName(host.to_owned()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&files.ca_file)? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &files.client {
        Some((cert_file, key_file)) => {
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| pem(key_file, "private key", e))?;
            builder.with_client_auth_cert(certificates(cert_file)?, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(pem(
            path,
            "certificate",
            rustls::pki_types::pem::Error::NoItemsFound,
        ));
    }
    Ok(certs)
}

fn pem(path: &Path, what: &'static str, source: rustls::pki_types::pem::Error) -> MqttError {
    match source {
        rustls::pki_types::pem::Error::Io(source) => MqttError::Read {
            path: path.to_owned(),
            source,
        },
        source => MqttError::Pem {
            path: path.to_owned(),
            what,
            source,
        },
    }
}

/// The username (first line) and password (second line) of a credentials file.
fn credentials(path: &Path) -> Result<(String, String), MqttError> {
    let text = std::fs::read_to_string(path).map_err(|source| MqttError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(user), Some(password)) if !user.is_empty() => {
            Ok((user.to_owned(), password.to_owned()))
        }
        _ => Err(MqttError::Credentials {
            path: path.to_owned(),
            problem: "needs the username on its first line and the password on its second",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> Message {
        Message {
            topic: "t".into(),
            retain: false,
            payload: vec![n],
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_message() {
        let mut queue = Queue::new(3);
        let dropped: u64 = (1..=5).map(|n| queue.push_back(message(n))).sum();
        assert_eq!(dropped, 2);
        let left: Vec<u8> = queue.messages.iter().map(|m| m.payload[0]).collect();
        assert_eq!(left, [3, 4, 5]);
        assert_eq!(queue.push_front(message(9)), 1);
        let left: Vec<u8> = queue.messages.iter().map(|m| m.payload[0]).collect();
        assert_eq!(left, [9, 4, 5]);
    }

    #[test]
    fn credentials_need_two_lines() {
        let dir =
            std::env::temp_dir().join(format!("kith-mqtt-credentials-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(&file, "kith\ns3cret: with spaces \n").unwrap();
        assert_eq!(
            credentials(&file).unwrap(),
            ("kith".into(), "s3cret: with spaces ".into())
        );
        std::fs::write(&file, "kith-only\n").unwrap();
        let e = credentials(&file).unwrap_err().to_string();
        assert!(e.contains("first line") && e.contains("credentials"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
