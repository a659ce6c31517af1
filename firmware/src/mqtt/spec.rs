//! `[mqtt]` of the board config: the broker kith publishes to, as written and as validated.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{must_exist, resolve, FieldError};

/// The broker's port without TLS and with it (`ca_file` set).
const PLAIN_PORT: u16 = 1883;
const TLS_PORT: u16 = 8883;

/// `[mqtt]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    host: String,
    port: Option<u16>,
    client_id: Option<String>,
    topic_prefix: Option<String>,
    #[serde(default = "at_least_once")]
    qos: u8,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    credentials_file: Option<PathBuf>,
}

fn at_least_once() -> u8 {
    1
}

/// The broker a validated config publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// Topics are `<topic_prefix>/frame`, `/relations` and `/availability`.
    pub topic_prefix: String,
    /// 0, 1 or 2.
    pub qos: u8,
    /// TLS, when `ca_file` is given.
    pub tls: Option<TlsFiles>,
    /// Username on its first line, password on its second.
    pub credentials_file: Option<PathBuf>,
}

/// The PEM files of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA (or CAs) the broker's certificate must chain to; the only roots trusted.
    pub ca_file: PathBuf,
    /// kith's certificate chain and private key, for brokers that ask for a client certificate.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl MqttConfig {
    /// The spec, with file paths resolved against `base` (the config's folder) and the topic
    /// prefix defaulting to `kith/<board>`.
    pub fn into_spec(self, base: &Path, board: &str) -> Result<MqttSpec, FieldError> {
        if self.host.trim().is_empty() {
            return Err(FieldError::rule("mqtt.host", "is empty"));
        }
        if self.port == Some(0) {
            return Err(FieldError::out_of_range("mqtt.port", 0, "1..=65535"));
        }
        if self.qos > 2 {
            return Err(FieldError::out_of_range("mqtt.qos", self.qos, "0..=2"));
        }
        let client_id = match self.client_id {
            Some(id) if id.is_empty() => {
                return Err(FieldError::rule("mqtt.client_id", "is empty"))
            }
            Some(id) => id,
            None => format!("kith-{board}-{}", std::process::id()),
        };
        let topic_prefix = self
            .topic_prefix
            .unwrap_or_else(|| format!("kith/{board}"))
            .trim_end_matches('/')
            .to_owned();
        if topic_prefix.is_empty() || topic_prefix.contains(['+', '#', '\0']) {
            return Err(FieldError::rule(
                "mqtt.topic_prefix",
                format!("= \"{topic_prefix}\" must be a non-empty topic without `+`, `#` (set it when the board's name has them)"),
            ));
        }
        let file = |field: &'static str, path: Option<PathBuf>| {
            path.map(|p| {
                let p = resolve(base, p);
                must_exist(field, &p).map(|()| p)
            })
            .transpose()
        };
        let ca_file = file("mqtt.ca_file", self.ca_file)?;
        let cert_file = file("mqtt.cert_file", self.cert_file)?;
        let key_file = file("mqtt.key_file", self.key_file)?;
        let client = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(FieldError::rule("mqtt.cert_file", "needs `mqtt.key_file`"))
            }
            (None, Some(_)) => {
                return Err(FieldError::rule("mqtt.key_file", "needs `mqtt.cert_file`"))
            }
        };
        let tls = match (ca_file, client) {
            (Some(ca_file), client) => Some(TlsFiles { ca_file, client }),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(FieldError::rule(
                    "mqtt.cert_file",
                    "needs `mqtt.ca_file` (a client certificate is only sent over TLS)",
                ))
            }
        };
        Ok(MqttSpec {
            host: self.host,
            port: self
                .port
                .unwrap_or(if tls.is_some() { TLS_PORT } else { PLAIN_PORT }),
            client_id,
            topic_prefix,
            qos: self.qos,
            tls,
            credentials_file: file("mqtt.credentials_file", self.credentials_file)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<MqttSpec, FieldError> {
        let config: MqttConfig = toml::from_str(text).unwrap();
        config.into_spec(Path::new(env!("CARGO_MANIFEST_DIR")), "pi 5")
    }

    #[test]
    fn defaults_are_a_plain_port_at_least_once_and_the_board_prefix() {
        let s = spec("host = \"broker.lan\"").unwrap();
        assert_eq!(
            (s.port, s.qos, s.tls, s.credentials_file),
            (1883, 1, None, None)
        );
        assert_eq!(s.topic_prefix, "kith/pi 5");
        assert_eq!(s.client_id, format!("kith-pi 5-{}", std::process::id()));
        let s =
            spec("host = \"b\"\nca_file = \"Cargo.toml\"\ntopic_prefix = \"site/cam1/\"").unwrap();
        assert_eq!((s.port, s.topic_prefix.as_str()), (8883, "site/cam1"));
    }

    #[test]
    fn each_bad_field_is_named() {
        for (text, field) in [
            ("host = \" \"", "mqtt.host"),
            ("host = \"b\"\nport = 0", "mqtt.port"),
            ("host = \"b\"\nqos = 3", "mqtt.qos"),
            ("host = \"b\"\nclient_id = \"\"", "mqtt.client_id"),
            (
                "host = \"b\"\ntopic_prefix = \"a/+/b\"",
                "mqtt.topic_prefix",
            ),
            ("host = \"b\"\nca_file = \"no-such.pem\"", "mqtt.ca_file"),
            (
                "host = \"b\"\nca_file = \"Cargo.toml\"\ncert_file = \"Cargo.toml\"",
                "mqtt.cert_file",
            ),
            (
                "host = \"b\"\ncert_file = \"Cargo.toml\"\nkey_file = \"Cargo.toml\"",
                "mqtt.cert_file",
            ),
            (
                "host = \"b\"\ncredentials_file = \"none\"",
                "mqtt.credentials_file",
            ),
        ] {
            let e = spec(text).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{text}: {e}");
        }
    }

    #[test]
    fn credentials_cannot_be_written_inline() {
        let e = toml::from_str::<MqttConfig>("host = \"b\"\npassword = \"x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `password`"), "{e}");
    }
}
