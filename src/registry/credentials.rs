//! Credentials from the Docker client configuration: the `auths` entries of
//! `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json` when
//! `DOCKER_CONFIG` is not set.
//!
//! Keys of `auths` are spelled many ways (`https://index.docker.io/v1/`,
//! `registry.example.com:5000`, `http://host/`); they are reduced to a host
//! and port, with Docker Hub's several names folded into `docker.io`, the
//! way the Docker client matches them. Secrets never appear in `Debug`
//! output or in logs.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password or personal access token.
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why the Docker configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The file exists but cannot be read.
    #[error("cannot read the Docker configuration `{}`", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("the Docker configuration `{}` is not valid JSON; fix it or point DOCKER_CONFIG elsewhere", path.display())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// An `auth` value is not base64 of `user:password`.
    #[error(
        "the `auths` entry for `{registry}` in `{}` is not base64 of `user:password`; \
         log in again to rewrite it", path.display()
    )]
    BadAuth {
        /// The key of the entry.
        registry: String,
        /// The configuration file.
        path: PathBuf,
    },
}

/// The credentials found in the Docker configuration, by registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, BasicAuth>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Credentials {
    /// Loads the credentials of the Docker configuration the environment
    /// names; a missing file means no credentials.
    pub fn from_env() -> Result<Credentials, CredentialError> {
        match config_path() {
            Some(path) => Credentials::from_file(&path),
            None => Ok(Credentials::default()),
        }
    }

    /// Loads the credentials of the Docker configuration at `path`.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Credentials::default());
            }
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let file: ConfigFile =
            serde_json::from_slice(&text).map_err(|source| CredentialError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let mut by_host = HashMap::new();
        for (key, entry) in file.auths {
            if let Some(auth) = decode_entry(&key, entry, path)? {
                by_host.insert(normalize_host(&key), auth);
            }
        }
        Ok(Credentials { by_host })
    }

    /// Returns the credentials for the registry `domain` (as a reference
    /// spells it: `docker.io`, `host:5000`).
    pub fn for_registry(&self, domain: &str) -> Option<&BasicAuth> {
        self.by_host.get(&normalize_host(domain))
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

fn decode_entry(
    key: &str,
    entry: AuthEntry,
    path: &Path,
) -> Result<Option<BasicAuth>, CredentialError> {
    let bad = || CredentialError::BadAuth {
        registry: key.to_string(),
        path: path.to_path_buf(),
    };
    if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(BasicAuth {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (entry.username, entry.password) {
        (Some(username), Some(password)) => Ok(Some(BasicAuth { username, password })),
        _ => Ok(None),
    }
}

/// Reduces an `auths` key or a reference's domain to `host[:port]`, with
/// Docker Hub's names folded into `docker.io`.
fn normalize_host(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<Credentials, CredentialError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        Credentials::from_file(&path)
    }

    #[test]
    fn matches_keys_however_they_are_spelled() {
        let alice = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let credentials = load(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{alice}"}},
                "http://localhost:5000/": {{"username": "bob", "password": "pw"}},
                "example.com": {{}}
            }}}}"#
        ))
        .unwrap();

        let hub = credentials.for_registry("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(
            credentials.for_registry("localhost:5000").unwrap().username,
            "bob"
        );
        assert!(credentials.for_registry("example.com").is_none());
        assert!(credentials.for_registry("localhost:5001").is_none());
    }

    #[test]
    fn reports_bad_files_and_entries() {
        assert!(matches!(load("{"), Err(CredentialError::Parse { .. })));
        let bad = r#"{"auths": {"example.com": {"auth": "not base64!"}}}"#;
        assert!(matches!(load(bad), Err(CredentialError::BadAuth { .. })));
    }

    #[test]
    fn never_shows_passwords_in_debug_output() {
        let auth = BasicAuth {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
