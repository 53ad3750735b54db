//! The Docker client's configuration file, `config.json`, as far as it says
//! where credentials are: `auths` (inline credentials, as `docker login`
//! writes them without a store), `credHelpers` (a helper per registry) and
//! `credsStore` (the helper for every other registry).
//!
//! Keys are spelled many ways (`https://index.docker.io/v1/`,
//! `registry.example.com:5000`, `http://host/`); they are reduced to a host
//! and port, with Docker Hub's several names folded into `docker.io`, so
//! that a reference's domain finds its entry however `docker login` or a
//! person spelled it. Inline entries are decoded only when their registry
//! asks, so that a malformed entry troubles only its own registry.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;

use super::{BasicAuth, Credential, CredentialError, CredentialHelper, HelperSetting};

/// The name the reference grammar gives Docker Hub.
const DOCKER_HUB: &str = "docker.io";
/// The spelling the Docker client uses for Docker Hub in `auths` keys and
/// when it asks a credential helper.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// Docker Hub's other names.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    DOCKER_HUB,
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The credential settings of one Docker configuration file, keyed by
/// normalised host.
#[derive(Default)]
pub(super) struct Config {
    /// The file, for messages; `None` when there was none.
    path: Option<PathBuf>,
    auths: HashMap<String, AuthEntry>,
    helpers: HashMap<String, String>,
    store: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut auths: Vec<&String> = self.auths.keys().collect();
        auths.sort();
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("auths", &auths)
            .field("cred_helpers", &self.helpers)
            .field("creds_store", &self.store)
            .finish()
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry as written; deliberately without `Debug`.
#[derive(Deserialize, Default)]
struct AuthEntry {
    /// The key as written, for messages.
    #[serde(skip)]
    key: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl Config {
    /// Reads the configuration at `path`; a missing file is an empty
    /// configuration.
    pub(super) fn load(path: &Path) -> Result<Config, CredentialError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_path_buf(),
                    source: source.into(),
                });
            }
        };
        Config::parse(&text, path)
    }

    /// Parses the text of the configuration at `path`.
    pub(super) fn parse(text: &[u8], path: &Path) -> Result<Config, CredentialError> {
        let file: ConfigFile =
            serde_json::from_slice(text).map_err(|source| CredentialError::Parse {
                path: path.to_path_buf(),
                source: source.into(),
            })?;
        let mut auths = HashMap::new();
        for (key, mut entry) in file.auths {
            let host = normalize_host(&key);
            // Where two keys name one host, the spelling Docker itself
            // writes wins, as the Docker client looks that one up first.
            let is_canonical = key == server_url(&host);
            if is_canonical || !auths.contains_key(&host) {
                entry.key = key;
                auths.insert(host, entry);
            }
        }
        let helpers = file
            .cred_helpers
            .into_iter()
            .map(|(key, helper)| (normalize_host(&key), helper))
            .collect();
        Ok(Config {
            path: Some(path.to_path_buf()),
            auths,
            helpers,
            store: file.creds_store,
        })
    }

    /// Returns the helper that holds `host`'s credentials: its
    /// `credHelpers` entry, else `credsStore`. An empty `credHelpers`
    /// entry means the file's own `auths`, as it does for Docker.
    pub(super) fn helper_for(&self, host: &str) -> Option<CredentialHelper> {
        let (name, setting) = match self.helpers.get(host) {
            Some(name) => (name, HelperSetting::CredHelpers),
            None => (self.store.as_ref()?, HelperSetting::CredsStore),
        };
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        Some(CredentialHelper {
            program: format!("docker-credential-{name}"),
            setting,
            config: self.path.clone().unwrap_or_default(),
        })
    }

    /// Returns the credentials the `auths` entry for `host` holds itself.
    pub(super) fn inline(&self, host: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(entry) = self.auths.get(host) else {
            return Ok(None);
        };
        decode_entry(entry, self.path.as_deref().unwrap_or(Path::new("")))
    }
}

/// Decodes an `auths` entry: an identity token wins over a user and
/// password, as in the Docker client; an entry with neither (a
/// placeholder beside a credential store) holds nothing.
fn decode_entry(entry: &AuthEntry, path: &Path) -> Result<Option<Credential>, CredentialError> {
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(token.clone())));
    }
    if let Some(auth) = entry
        .auth
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        let bad = || CredentialError::BadAuth {
            registry: entry.key.clone(),
            path: path.to_path_buf(),
        };
        let decoded = STANDARD
            .decode(auth)
            .or_else(|_| STANDARD_NO_PAD.decode(auth))
            .map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = text.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credential::Basic(BasicAuth {
            username: username.to_string(),
            password: password.trim_end_matches('\0').to_string(),
        })));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Some(Credential::Basic(BasicAuth {
                username: username.clone(),
                password: password.clone(),
            })))
        }
        _ => Ok(None),
    }
}

/// Reduces an `auths` or `credHelpers` key, or a reference's domain, to
/// `host[:port]` in lower case, with Docker Hub's names folded into
/// `docker.io`.
pub(super) fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

/// Returns the server URL a credential helper is asked for: the one the
/// Docker client stores Docker Hub's credentials under, and the bare host
/// for any other registry.
pub(super) fn server_url(host: &str) -> String {
    if host == DOCKER_HUB {
        DOCKER_HUB_SERVER_URL.to_string()
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, CredentialError> {
        Config::parse(json.as_bytes(), Path::new("config.json"))
    }

    fn basic(username: &str, password: &str) -> Option<Credential> {
        Some(Credential::Basic(BasicAuth {
            username: username.into(),
            password: password.into(),
        }))
    }

    #[test]
    fn normalizes_hosts_however_they_are_spelled() {
        let cases = [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("https://registry.hub.docker.com", "docker.io"),
            ("docker.io", "docker.io"),
            ("http://localhost:5000/", "localhost:5000"),
            ("https://Registry.Example.com/v2/", "registry.example.com"),
            ("ghcr.io", "ghcr.io"),
            (" 127.0.0.1:5000 ", "127.0.0.1:5000"),
            ("[::1]:5000", "[::1]:5000"),
        ];
        for (key, expected) in cases {
            assert_eq!(normalize_host(key), expected, "{key}");
        }
    }

    #[test]
    fn asks_helpers_with_the_spelling_docker_uses() {
        let cases = [
            ("docker.io", "https://index.docker.io/v1/"),
            ("ghcr.io", "ghcr.io"),
            ("localhost:5000", "localhost:5000"),
        ];
        for (host, expected) in cases {
            assert_eq!(server_url(host), expected, "{host}");
        }
    }

    #[test]
    fn decodes_every_kind_of_auths_entry() {
        let alice = STANDARD.encode("alice:s3:cret");
        let unpadded = STANDARD_NO_PAD.encode("carol:pw1");
        let empty_password = STANDARD.encode("dave:");
        let config = parse(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{alice}"}},
                "http://localhost:5000/": {{"username": "bob", "password": "pw"}},
                "unpadded.example": {{"auth": "{unpadded}"}},
                "token.example": {{"auth": "{empty_password}", "identitytoken": "refresh-1"}},
                "placeholder.example": {{}},
                "empty.example": {{"auth": ""}}
            }}}}"#
        ))
        .unwrap();

        let cases = [
            ("docker.io", basic("alice", "s3:cret")),
            ("localhost:5000", basic("bob", "pw")),
            ("unpadded.example", basic("carol", "pw1")),
            (
                "token.example",
                Some(Credential::IdentityToken("refresh-1".into())),
            ),
            ("placeholder.example", None),
            ("empty.example", None),
            ("localhost:5001", None),
        ];
        for (host, expected) in cases {
            assert_eq!(config.inline(host).unwrap(), expected, "{host}");
        }
    }

    #[test]
    fn prefers_the_key_docker_writes_when_two_name_one_host() {
        let old = STANDARD.encode("old:pw");
        let new = STANDARD.encode("new:pw");
        for order in [
            format!(
                r#""docker.io": {{"auth": "{old}"}}, "https://index.docker.io/v1/": {{"auth": "{new}"}}"#
            ),
            format!(
                r#""https://index.docker.io/v1/": {{"auth": "{new}"}}, "docker.io": {{"auth": "{old}"}}"#
            ),
        ] {
            let config = parse(&format!(r#"{{"auths": {{{order}}}}}"#)).unwrap();
            assert_eq!(config.inline("docker.io").unwrap(), basic("new", "pw"));
        }
    }

    #[test]
    fn picks_the_helper_per_registry_then_the_store() {
        let config = parse(
            r#"{
                "credsStore": "desktop",
                "credHelpers": {
                    "https://index.docker.io/v1/": "hub",
                    "gcr.io": "gcloud",
                    "inline.example": ""
                }
            }"#,
        )
        .unwrap();
        let cases = [
            (
                "docker.io",
                Some(("docker-credential-hub", HelperSetting::CredHelpers)),
            ),
            (
                "gcr.io",
                Some(("docker-credential-gcloud", HelperSetting::CredHelpers)),
            ),
            ("inline.example", None),
            (
                "ghcr.io",
                Some(("docker-credential-desktop", HelperSetting::CredsStore)),
            ),
        ];
        for (host, expected) in cases {
            let helper = config.helper_for(host);
            let found = helper.as_ref().map(|h| (h.program.as_str(), h.setting));
            assert_eq!(found, expected, "{host}");
        }

        let without_store = parse(r#"{"credsStore": "", "credHelpers": {}}"#).unwrap();
        assert!(without_store.helper_for("ghcr.io").is_none());
    }

    #[test]
    fn reports_bad_files_and_entries_by_path() {
        let cases = [
            ("{", "is not valid JSON"),
            (r#"{"auths": []}"#, "is not valid JSON"),
            (r#"{"credHelpers": {"a": 1}}"#, "is not valid JSON"),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err().to_string();
            assert!(
                error.contains(expected) && error.contains("config.json"),
                "{json}: {error}"
            );
        }

        let config = parse(
            r#"{"auths": {
                "bad.example": {"auth": "not base64!"},
                "nocolon.example": {"auth": "bm9jb2xvbg=="},
                "good.example": {"username": "u", "password": "p"}
            }}"#,
        )
        .unwrap();
        for host in ["bad.example", "nocolon.example"] {
            let error = config.inline(host).unwrap_err();
            assert!(matches!(error, CredentialError::BadAuth { .. }), "{host}");
            assert!(error.to_string().contains(host), "{error}");
        }
        assert_eq!(config.inline("good.example").unwrap(), basic("u", "p"));
    }

    #[test]
    fn never_shows_secrets_in_debug_output() {
        let auth = STANDARD.encode("alice:hunter2");
        let config = parse(&format!(
            r#"{{"auths": {{"a.example": {{"auth": "{auth}"}},
                "b.example": {{"identitytoken": "refresh-secret"}}}}}}"#
        ))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(shown.contains("a.example"), "{shown}");
        for secret in [auth.as_str(), "hunter2", "refresh-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
