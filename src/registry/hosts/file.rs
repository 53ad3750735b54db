//! One registry's host directory: containerd's `hosts.toml` and Docker's
//! certificate files (`*.crt` CAs, `NAME.cert` with `NAME.key` client
//! pairs), read into [`HostDir`] as written, before any default applies.
//!
//! The format is containerd's (its `docs/hosts.md`): a top level that
//! describes the upstream (`server`, `capabilities`, `ca`, `client`,
//! `skip_verify`, `override_path`, `header`, `dial_timeout`, `proxy`) and
//! `[host."URL"]` tables with the same keys for the hosts tried before it,
//! in the order the file lists them. Relative paths are relative to the
//! directory. Unknown keys are ignored with a warning, as containerd ignores
//! them; a value of the wrong shape or an unknown capability is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::{Capabilities, HostsError};

/// The file containerd reads in a host directory.
pub(super) const HOSTS_FILE: &str = "hosts.toml";

/// One host as a host directory describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct HostEntry {
    /// The URL as written; `None` for a `server` the file does not name.
    pub url: Option<String>,
    /// What the host may be asked for.
    pub capabilities: Capabilities,
    /// Extra certificate authorities to trust, besides the system's.
    pub ca: Vec<PathBuf>,
    /// Client certificates: a certificate file and its key file, or
    /// `None` when the key is in the certificate file.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
    /// Whether to skip verifying the host's certificate.
    pub skip_verify: Option<bool>,
    /// Whether the URL's path is the API root as it is, without `/v2`.
    pub override_path: bool,
    /// Headers sent with every request to the host.
    pub headers: Vec<(String, String)>,
    /// How long connecting may take.
    pub dial_timeout: Option<Duration>,
    /// A proxy for this host, instead of the environment's.
    pub proxy: Option<String>,
}

impl HostEntry {
    /// Tells whether the entry configures TLS: an extra CA, a client
    /// certificate or skipping verification.
    pub(super) fn has_tls_material(&self) -> bool {
        !self.ca.is_empty() || !self.client.is_empty() || self.skip_verify == Some(true)
    }
}

/// A registry's host directory, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HostDir {
    /// The directory.
    pub path: PathBuf,
    /// The `[host."URL"]` entries, in the file's order.
    pub hosts: Vec<HostEntry>,
    /// The upstream, with Docker's certificate files added.
    pub server: HostEntry,
}

/// Reads a host directory: its `hosts.toml` if there is one, and Docker's
/// certificate files, which apply to the upstream (containerd reads them
/// only without `hosts.toml`; here a mirror's file does not take the
/// registry's own CA away).
pub(super) fn load(dir: &Path) -> Result<HostDir, HostsError> {
    let file = dir.join(HOSTS_FILE);
    let mut host_dir = match std::fs::read_to_string(&file) {
        Ok(text) => parse(&text, dir, &file)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostDir {
            path: dir.to_path_buf(),
            hosts: Vec::new(),
            server: HostEntry {
                capabilities: Capabilities::ALL,
                ..HostEntry::default()
            },
        },
        Err(source) => return Err(HostsError::Read { path: file, source }),
    };
    add_docker_files(dir, &mut host_dir.server)?;
    Ok(host_dir)
}

/// Parses the text of `hosts.toml` (at `file`, in `dir`).
pub(super) fn parse(text: &str, dir: &Path, file: &Path) -> Result<HostDir, HostsError> {
    let table: Table = text.parse().map_err(|source| HostsError::Syntax {
        path: file.to_path_buf(),
        source: Box::new(source),
    })?;
    let invalid = |detail: String| HostsError::Invalid {
        path: file.to_path_buf(),
        detail,
    };
    let server_url = match table.get("server") {
        None => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(other) => return Err(invalid(wrong_type("server", "a string", other))),
    };
    let mut server = section(&table, dir).map_err(&invalid)?;
    server.url = server_url;

    let mut hosts = Vec::new();
    match table.get("host") {
        None => {}
        Some(Value::Table(entries)) => {
            for (url, value) in entries {
                let Value::Table(entry) = value else {
                    return Err(invalid(wrong_type(
                        &format!("host.\"{url}\""),
                        "a table",
                        value,
                    )));
                };
                let mut host = section(entry, dir)
                    .map_err(|detail| invalid(format!("host \"{url}\": {detail}")))?;
                host.url = Some(url.clone());
                for key in entry.keys().filter(|k| !is_known_key(k, false)) {
                    tracing::warn!(
                        "{}: host \"{url}\": ignoring unknown key `{key}`",
                        file.display()
                    );
                }
                hosts.push(host);
            }
        }
        Some(other) => return Err(invalid(wrong_type("host", "a table", other))),
    }
    for key in table.keys().filter(|k| !is_known_key(k, true)) {
        tracing::warn!("{}: ignoring unknown key `{key}`", file.display());
    }
    Ok(HostDir {
        path: dir.to_path_buf(),
        hosts,
        server,
    })
}

/// Tells whether `key` means something in a section (the top level too
/// has `server` and `host`).
fn is_known_key(key: &str, is_top: bool) -> bool {
    const SECTION_KEYS: [&str; 8] = [
        "capabilities",
        "ca",
        "client",
        "skip_verify",
        "override_path",
        "header",
        "dial_timeout",
        "proxy",
    ];
    SECTION_KEYS.contains(&key) || (is_top && matches!(key, "server" | "host"))
}

/// Reads the keys a host section and the top level share.
fn section(table: &Table, dir: &Path) -> Result<HostEntry, String> {
    let mut entry = HostEntry {
        capabilities: match table.get("capabilities") {
            None => Capabilities::ALL,
            Some(value) => capabilities(value)?,
        },
        ca: match table.get("ca") {
            None => Vec::new(),
            Some(value) => strings("ca", value)?
                .iter()
                .map(|p| resolve(dir, p))
                .collect(),
        },
        client: match table.get("client") {
            None => Vec::new(),
            Some(value) => client_pairs(value, dir)?,
        },
        skip_verify: optional_bool(table, "skip_verify")?,
        override_path: optional_bool(table, "override_path")?.unwrap_or(false),
        headers: match table.get("header") {
            None => Vec::new(),
            Some(value) => headers(value)?,
        },
        ..HostEntry::default()
    };
    entry.dial_timeout = match table.get("dial_timeout") {
        None => None,
        Some(Value::String(text)) => Some(
            parse_duration(text)
                .ok_or_else(|| format!("`dial_timeout` `{text}` is no duration"))?,
        ),
        Some(other) => return Err(wrong_type("dial_timeout", "a string", other)),
    };
    entry.proxy = match table.get("proxy") {
        None => None,
        Some(Value::String(url)) => Some(url.clone()),
        Some(other) => return Err(wrong_type("proxy", "a string", other)),
    };
    Ok(entry)
}

fn capabilities(value: &Value) -> Result<Capabilities, String> {
    let mut capabilities = Capabilities::default();
    for name in strings("capabilities", value)? {
        match name.to_ascii_lowercase().as_str() {
            "pull" => capabilities.pull = true,
            "resolve" => capabilities.resolve = true,
            "push" => {}
            _ => return Err(format!("unknown capability `{name}` (pull, resolve, push)")),
        }
    }
    Ok(capabilities)
}

/// Reads `client`: a file holding certificate and key, a list of such
/// files, or a list of `[certificate, key]` pairs (an empty key meaning
/// the key is in the certificate file).
fn client_pairs(value: &Value, dir: &Path) -> Result<Vec<(PathBuf, Option<PathBuf>)>, String> {
    let items = match value {
        Value::String(path) => return Ok(vec![(resolve(dir, path), None)]),
        Value::Array(items) => items,
        other => return Err(wrong_type("client", "a string or an array", other)),
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(path) => Ok((resolve(dir, path), None)),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(cert), Value::String(key)] => Ok((
                    resolve(dir, cert),
                    (!key.is_empty()).then(|| resolve(dir, key)),
                )),
                _ => Err("a `client` pair is two strings, [certificate, key]".to_string()),
            },
            other => Err(wrong_type("client", "paths or pairs of paths", other)),
        })
        .collect()
}

fn headers(value: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Table(table) = value else {
        return Err(wrong_type("header", "a table", value));
    };
    let mut headers = Vec::new();
    for (name, value) in table {
        for value in strings(&format!("header.{name}"), value)? {
            headers.push((name.clone(), value));
        }
    }
    Ok(headers)
}

/// Reads a string or an array of strings.
fn strings(key: &str, value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong_type(key, "strings", other)),
            })
            .collect(),
        other => Err(wrong_type(key, "a string or an array of strings", other)),
    }
}

fn optional_bool(table: &Table, key: &str) -> Result<Option<bool>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(key, "true or false", other)),
    }
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> String {
    format!("`{key}` must be {expected}, not {}", found.type_str())
}

/// Returns `path` as an absolute path, relative ones taken from `dir`.
fn resolve(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// Adds Docker's certificate files in `dir` to the upstream: every
/// `*.crt` is a CA, every `NAME.cert` a client certificate with its key in
/// `NAME.key` (or in the `.cert` file itself). Sorted by name, so that the
/// choice of a client certificate does not depend on the file system.
fn add_docker_files(dir: &Path, server: &mut HostEntry) -> Result<(), HostsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(HostsError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for path in files {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => server.ca.push(path),
            Some("cert") => {
                let key = path.with_extension("key");
                let key = key.is_file().then_some(key);
                server.client.push((path, key));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a Go duration as containerd's `dial_timeout` takes it: `30s`,
/// `1.5s`, `500ms`, `1m30s`.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds_per_unit).ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<HostDir, String> {
        parse(
            text,
            Path::new("/certs.d/reg"),
            Path::new("/certs.d/reg/hosts.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_server_and_hosts_in_file_order() {
        let dir = parsed(
            r#"
            server = "https://registry.example"
            ca = "ca.pem"
            [host."https://z-mirror.example"]
              capabilities = ["pull", "resolve"]
            [host."http://a-mirror.example:5000"]
              capabilities = ["pull"]
              skip_verify = true
              [host."http://a-mirror.example:5000".header]
                x-one = "1"
                x-two = ["a", "b"]
            "#,
        )
        .unwrap();
        assert_eq!(dir.server.url.as_deref(), Some("https://registry.example"));
        assert_eq!(dir.server.ca, vec![PathBuf::from("/certs.d/reg/ca.pem")]);
        assert_eq!(dir.server.capabilities, Capabilities::ALL);
        let urls: Vec<_> = dir.hosts.iter().map(|h| h.url.clone().unwrap()).collect();
        assert_eq!(
            urls,
            ["https://z-mirror.example", "http://a-mirror.example:5000"]
        );
        assert_eq!(
            dir.hosts[1].capabilities,
            Capabilities {
                pull: true,
                ..Capabilities::default()
            }
        );
        assert_eq!(dir.hosts[1].skip_verify, Some(true));
        assert_eq!(
            dir.hosts[1].headers,
            [("x-one", "1"), ("x-two", "a"), ("x-two", "b")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn reads_every_shape_of_ca_and_client() {
        type Pairs<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(&str, &[&str], Pairs)] = &[
            (r#"ca = "/abs/ca.pem""#, &["/abs/ca.pem"], &[]),
            (
                r#"ca = ["a.pem", "/b.pem"]"#,
                &["/certs.d/reg/a.pem", "/b.pem"],
                &[],
            ),
            (
                r#"client = "both.pem""#,
                &[],
                &[("/certs.d/reg/both.pem", None)],
            ),
            (
                r#"client = ["one.pem", "/two.pem"]"#,
                &[],
                &[("/certs.d/reg/one.pem", None), ("/two.pem", None)],
            ),
            (
                r#"client = [["c.cert", "c.key"], ["both.pem", ""]]"#,
                &[],
                &[
                    ("/certs.d/reg/c.cert", Some("/certs.d/reg/c.key")),
                    ("/certs.d/reg/both.pem", None),
                ],
            ),
        ];
        for (text, ca, client) in cases {
            let server = parsed(text).unwrap().server;
            let expected_ca: Vec<PathBuf> = ca.iter().map(PathBuf::from).collect();
            let expected_client: Vec<(PathBuf, Option<PathBuf>)> = client
                .iter()
                .map(|(c, k)| (PathBuf::from(c), k.map(PathBuf::from)))
                .collect();
            assert_eq!(server.ca, expected_ca, "{text}");
            assert_eq!(server.client, expected_client, "{text}");
            assert!(server.has_tls_material(), "{text}");
        }
    }

    #[test]
    fn refuses_malformed_files_naming_what_is_wrong() {
        let cases = [
            ("server = 5", "`server` must be a string"),
            (
                r#"capabilities = ["pull", "fly"]"#,
                "unknown capability `fly`",
            ),
            ("ca = 1", "`ca` must be a string or an array of strings"),
            (
                r#"client = [["only-one"]]"#,
                "a `client` pair is two strings",
            ),
            (
                "skip_verify = \"yes\"",
                "`skip_verify` must be true or false",
            ),
            (
                r#"dial_timeout = "soon""#,
                "`dial_timeout` `soon` is no duration",
            ),
            (r#"host = "mirror""#, "`host` must be a table"),
            (
                "[host.\"https://m\"]\ncapabilities = \"pull\"\nca = 2",
                "host \"https://m\": `ca` must be",
            ),
            ("server = ", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let error = parsed(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("/certs.d/reg/hosts.toml"), "{text}: {error}");
        }
    }

    #[test]
    fn defaults_capabilities_and_options() {
        let dir = parsed("[host.\"https://m.example\"]\n").unwrap();
        assert_eq!(dir.server.url, None);
        assert!(!dir.server.has_tls_material());
        let host = &dir.hosts[0];
        assert_eq!(host.capabilities, Capabilities::ALL);
        assert!(!host.override_path);
        assert_eq!(host.skip_verify, None);
        assert_eq!(host.dial_timeout, None);
    }

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", Some(Duration::from_secs(30))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("2h", Some(Duration::from_secs(7200))),
            ("10", None),
            ("", None),
            ("1d", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), expected, "{text}");
        }
    }

    #[test]
    fn reads_docker_certificate_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for name in [
            "ca.crt",
            "client.cert",
            "client.key",
            "other.cert",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "x")?;
        }
        let loaded = load(dir.path())?;
        assert_eq!(loaded.server.ca, vec![dir.path().join("ca.crt")]);
        assert_eq!(
            loaded.server.client,
            vec![
                (
                    dir.path().join("client.cert"),
                    Some(dir.path().join("client.key"))
                ),
                (dir.path().join("other.cert"), None),
            ]
        );
        assert_eq!(loaded.server.capabilities, Capabilities::ALL);
        Ok(())
    }
}
