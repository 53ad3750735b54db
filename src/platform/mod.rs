//! OCI platforms: the `os/arch[/variant]` specifiers users type and the
//! `platform` objects of image indexes, parsed, normalised and formatted.
//!
//! Everything here follows containerd/platforms (`Parse`, `Normalize`,
//! `Format`, `FormatAll`, and in [`Matcher`] `NewMatcher`, `Only`,
//! `OnlyStrict`, `OnlyOS` and the `Less` orderings), so `--platform
//! linux/arm64` picks the same manifest here as it does in containerd, Docker
//! and LinuxKit. Which platforms a host can run lives in `matcher`, what the
//! host is in `host`.

mod host;
mod matcher;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize as _;

pub use matcher::Matcher;

use host::host_info;

/// A platform as an OCI descriptor's `platform` object describes it.
///
/// The serde shape is that object's, so an index entry's platform
/// deserialises straight into it; an empty `variant` or `os.version` reads as
/// absent, as it means the same to every OCI implementation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    /// The operating system, as Go's `GOOS` names it (`linux`, `windows`).
    pub os: String,
    /// The CPU architecture, as Go's `GOARCH` names it (`amd64`, `arm64`).
    pub architecture: String,
    /// The CPU variant, such as `v7` for 32-bit ARM.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub variant: Option<String>,
    /// The OS version a Windows image needs, such as `10.0.17763.1`.
    #[serde(
        rename = "os.version",
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features the image needs from the host, such as `win32k`.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(de)?.filter(|s| !s.is_empty()))
}

/// Why a string is not a platform specifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// The specifier contains `*`, which containerd does not support yet.
    #[error(
        "platform `{spec}` contains a wildcard, which is not supported: \
         expected os/arch[/variant], e.g. linux/arm64"
    )]
    Wildcard {
        /// The specifier as given.
        spec: String,
    },
    /// The first component is not `os` or `os(version+feature...)`.
    #[error(
        "platform `{spec}` has an invalid os component `{component}`: expected letters, \
         digits, `_` or `-`, optionally followed by `(version+feature...)`, \
         e.g. linux or windows(10.0.17763)"
    )]
    InvalidOs {
        /// The specifier as given.
        spec: String,
        /// The offending component.
        component: String,
    },
    /// An architecture or variant component holds a character outside
    /// `[A-Za-z0-9_.-]`, or is empty.
    #[error(
        "platform `{spec}` has an invalid component `{component}`: expected letters, digits, \
         `_`, `.` or `-`, e.g. linux/arm64/v8"
    )]
    InvalidComponent {
        /// The specifier as given.
        spec: String,
        /// The offending component.
        component: String,
    },
    /// An OS version or feature holds a malformed percent-escape.
    #[error(
        "platform `{spec}` has an invalid escape in `{value}`: expected `%` followed by two \
         hex digits that decode to UTF-8, e.g. %2B for `+`"
    )]
    InvalidEscape {
        /// The specifier as given.
        spec: String,
        /// The OS version or feature, still encoded.
        value: String,
    },
    /// A single component names neither a known OS nor a known architecture.
    #[error(
        "platform `{spec}` is neither a known os nor a known architecture: \
         expected os/arch[/variant], e.g. linux/arm64"
    )]
    Unknown {
        /// The specifier as given.
        spec: String,
    },
    /// The specifier has more than three `/`-separated components.
    #[error(
        "platform `{spec}` has too many components: expected os/arch[/variant], e.g. linux/arm64"
    )]
    TooManyComponents {
        /// The specifier as given.
        spec: String,
    },
}

impl Platform {
    /// Parses a specifier as containerd's `Parse` does, without normalising
    /// what it keeps: `linux/arm64/v8` stays `v8`, `linux/arm` has no variant.
    ///
    /// A lone OS takes the host's architecture, a lone architecture the
    /// host's OS.
    ///
    /// # Errors
    ///
    /// Returns a [`PlatformError`] naming the first malformed part, as
    /// containerd rejects it: wildcards, bad characters, malformed
    /// percent-escapes, an unknown lone component, or more than three parts.
    pub fn parse(spec: &str) -> Result<Platform, PlatformError> {
        if spec.contains('*') {
            return Err(PlatformError::Wildcard {
                spec: spec.to_string(),
            });
        }
        let parts: Vec<&str> = spec.splitn(4, '/').collect();
        let mut platform = parse_os_component(spec, parts[0])?;
        if let Some(bad) = parts[1..].iter().find(|part| !is_component(part)) {
            return Err(PlatformError::InvalidComponent {
                spec: spec.to_string(),
                component: bad.to_string(),
            });
        }
        let (arch, variant) = match parts[..] {
            [single] => return complete_single(spec, single, platform),
            [_, arch] => match normalize_arch(arch, "") {
                (arch, variant) if arch == "arm" && variant == "v7" => (arch, String::new()),
                normalized => normalized,
            },
            [_, arch, variant] => match normalize_arch(arch, variant) {
                (arch, variant) if arch == "arm64" && variant.is_empty() => (arch, "v8".into()),
                normalized => normalized,
            },
            _ => {
                return Err(PlatformError::TooManyComponents {
                    spec: spec.to_string(),
                });
            }
        };
        platform.architecture = arch;
        platform.variant = non_empty(&variant);
        Ok(platform)
    }

    /// Returns the canonical form, as containerd's `Normalize` does: Go
    /// names, lower case, default variants dropped or filled in (`armhf` is
    /// arm/v7, arm64/v8 is plain arm64), OS features sorted and de-duplicated.
    ///
    /// An empty OS becomes the host's; an empty variant or OS version becomes
    /// absent.
    pub fn normalize(&self) -> Platform {
        let os = normalize_os(&self.os);
        let variant = self.variant.as_deref().unwrap_or("");
        let (architecture, variant) = normalize_arch(&self.architecture, variant);
        let mut os_features = self.os_features.clone();
        os_features.sort_unstable();
        os_features.dedup();
        Platform {
            os,
            architecture,
            variant: non_empty(&variant),
            os_version: self.os_version.clone().filter(|v| !v.is_empty()),
            os_features,
        }
    }

    /// Formats the platform as containerd's `FormatAll` does, OS version and
    /// features included: `windows(10.0.17763+win32k)/amd64`.
    ///
    /// The OS options are percent-encoded where they would clash with the
    /// syntax, so the result parses back to the same version and features.
    pub fn format_all(&self) -> String {
        if self.os.is_empty() {
            return "unknown".to_string();
        }
        let mut options = encode_os_option(self.os_version.as_deref().unwrap_or(""));
        let mut features: Vec<&str> = self
            .os_features
            .iter()
            .map(String::as_str)
            .filter(|f| !f.is_empty())
            .collect();
        features.sort_unstable();
        features.dedup();
        for feature in features {
            options.push('+');
            options.push_str(&encode_os_option(feature));
        }
        let os = if options.is_empty() {
            self.os.clone()
        } else {
            format!("{}({options})", self.os)
        };
        go_path_join(&[
            &os,
            &self.architecture,
            self.variant.as_deref().unwrap_or(""),
        ])
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// Parses and normalises a specifier: what a user's `--platform` means.
    fn from_str(spec: &str) -> Result<Platform, PlatformError> {
        Platform::parse(spec).map(|platform| platform.normalize())
    }
}

impl fmt::Display for Platform {
    /// Writes the normalised `os/arch[/variant]`, as containerd's `Format`
    /// of `Normalize` does: `linux/arm64`, `linux/arm/v7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let platform = self.normalize();
        let variant = platform.variant.as_deref().unwrap_or("");
        f.write_str(&go_path_join(&[
            &platform.os,
            &platform.architecture,
            variant,
        ]))
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Parses `os[(version[+feature]...)]`, containerd's `osRe`.
fn parse_os_component(spec: &str, component: &str) -> Result<Platform, PlatformError> {
    let invalid = || PlatformError::InvalidOs {
        spec: spec.to_string(),
        component: component.to_string(),
    };
    let (name, options) = match component.split_once('(') {
        None => (component, None),
        Some((name, rest)) => (name, Some(rest.strip_suffix(')').ok_or_else(invalid)?)),
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || !name.chars().all(name_ok) {
        return Err(invalid());
    }
    let mut options = options.unwrap_or("").split('+');
    let version = options.next().unwrap_or("");
    let features: Vec<&str> = options.collect();
    let option_ok = |o: &str| o.chars().all(|c| name_ok(c) || c == '.' || c == '%');
    if !option_ok(version) || features.iter().any(|f| f.is_empty() || !option_ok(f)) {
        return Err(invalid());
    }
    let decode = |value: &str| {
        decode_os_option(value).ok_or_else(|| PlatformError::InvalidEscape {
            spec: spec.into(),
            value: value.into(),
        })
    };
    Ok(Platform {
        os: normalize_os(name),
        architecture: String::new(),
        variant: None,
        os_version: non_empty(&decode(version)?),
        os_features: features.into_iter().map(decode).collect::<Result<_, _>>()?,
    })
}

/// Reports whether `part` matches containerd's `specifierRe`.
fn is_component(part: &str) -> bool {
    // containerd accepts `.` and `..` here, and then its `Format` (a path
    // join) cleans them away, printing another platform; they name
    // nothing, so lkcache refuses them.
    !part.is_empty()
        && part != "."
        && part != ".."
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Fills in a one-component specifier from the host: a known OS gets the
/// host's architecture, a known architecture the host's OS.
fn complete_single(
    spec: &str,
    single: &str,
    mut platform: Platform,
) -> Result<Platform, PlatformError> {
    let host = host_info();
    if is_listed(KNOWN_OS, &platform.os) {
        platform.architecture = host.arch.to_string();
        // containerd leaves arm's default v7 implicit and names any other.
        if host.arch == "arm" && host.arm_variant != "v7" {
            platform.variant = non_empty(&host.arm_variant);
        }
        return Ok(platform);
    }
    let (arch, variant) = normalize_arch(single, "");
    if !is_listed(KNOWN_ARCH, &arch) {
        return Err(PlatformError::Unknown {
            spec: spec.to_string(),
        });
    }
    let variant = if arch == "arm" && variant == "v7" {
        String::new()
    } else {
        variant
    };
    Ok(Platform {
        os: host.os.to_string(),
        architecture: arch,
        variant: non_empty(&variant),
        ..platform
    })
}

fn normalize_os(os: &str) -> String {
    match os.to_lowercase().as_str() {
        "" => host_info().os.to_string(),
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    }
}

/// Returns the canonical architecture and variant (empty when implied).
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = (arch.to_lowercase(), variant.to_lowercase());
    let (arch, variant): (&str, &str) = match (arch.as_str(), variant.as_str()) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "v8.0") => ("arm64", ""),
        ("aarch64" | "arm64", "9" | "9.0" | "v9.0") => ("arm64", "v9"),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", v @ ("5" | "6" | "8")) => return ("arm".into(), format!("v{v}")),
        (a, v) => (a, v),
    };
    (arch.to_string(), variant.to_string())
}

/// Go's `GOOS` values, as containerd's `isKnownOS` lists them.
const KNOWN_OS: &str = "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl \
    netbsd openbsd plan9 solaris windows zos";

/// Go's `GOARCH` values, as containerd's `isKnownArch` lists them.
const KNOWN_ARCH: &str = "386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips \
    mipsle mips64 mips64le mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm";

fn is_listed(list: &str, name: &str) -> bool {
    list.split_whitespace().any(|listed| listed == name)
}

/// Percent-encodes the characters that would end or split an OS option.
fn encode_os_option(value: &str) -> String {
    // containerd escapes only `% + ( ) /`, so a value holding any other
    // character outside the specifier grammar prints as a specifier that
    // no longer parses; escaping every such byte keeps the round trip
    // and gives containerd's output wherever containerd's parses.
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes as Go's `url.PathUnescape` does; `None` when an
/// escape is malformed or the result is not UTF-8 (Go would keep the bytes).
fn decode_os_option(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Joins the non-empty parts with `/` and cleans the result, as Go's
/// `path.Join` does, so formatting odd values gives containerd's strings.
fn go_path_join(parts: &[&str]) -> String {
    let joined = parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        return joined;
    }
    let rooted = joined.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    for element in joined.split('/') {
        match element {
            "" | "." => {}
            ".." if kept.last().is_some_and(|last| *last != "..") => {
                kept.pop();
            }
            ".." if rooted => {}
            other => kept.push(other),
        }
    }
    match (rooted, kept.is_empty()) {
        (true, _) => format!("/{}", kept.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => kept.join("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `spec` or fails the test; the child modules' tests share it.
    pub(super) fn p(spec: &str) -> Platform {
        Platform::parse(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Builds a platform field by field, bypassing parsing.
    pub(super) fn plat(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: non_empty(variant),
            os_version: None,
            os_features: Vec::new(),
        }
    }

    #[test]
    fn parse_keeps_what_containerd_parse_keeps() {
        let cases = [
            ("linux/arm64", plat("linux", "arm64", "")),
            ("linux/arm64/v8", plat("linux", "arm64", "v8")),
            ("linux/aarch64", plat("linux", "arm64", "")),
            ("linux/arm", plat("linux", "arm", "")),
            ("linux/armhf", plat("linux", "arm", "")),
            ("linux/armel", plat("linux", "arm", "v6")),
            ("linux/arm/7", plat("linux", "arm", "v7")),
            ("Linux/x86_64", plat("linux", "amd64", "")),
            ("linux/amd64/v1", plat("linux", "amd64", "")),
            ("linux/arm64/9.0", plat("linux", "arm64", "v9")),
            ("macOS/arm64", plat("darwin", "arm64", "")),
            ("foo/bar", plat("foo", "bar", "")),
        ];
        for (spec, want) in cases {
            assert_eq!(p(spec), want, "{spec}");
        }
    }

    #[test]
    fn parse_reads_os_options() {
        let got = p("windows(10.0.17763%2Bbuild.42+win32k)/amd64");
        assert_eq!(got.os_version.as_deref(), Some("10.0.17763+build.42"));
        assert_eq!(got.os_features, ["win32k"]);
        assert_eq!(p("linux()/amd64").os_version, None);
        assert_eq!(p("linux(+b+a)/amd64").os_features, ["b", "a"]);
    }

    #[test]
    fn parse_rejects_malformed_specifiers() {
        let cases = [
            ("*", r#"Wildcard { spec: "*" }"#),
            ("", r#"InvalidOs { spec: "", component: "" }"#),
            (
                "linux(+)/amd64",
                r#"InvalidOs { spec: "linux(+)/amd64", component: "linux(+)" }"#,
            ),
            (
                "linux(1.0/x",
                r#"InvalidOs { spec: "linux(1.0/x", component: "linux(1.0" }"#,
            ),
            (
                "linux/arm/",
                r#"InvalidComponent { spec: "linux/arm/", component: "" }"#,
            ),
            (
                "linux(%zz)/x",
                r#"InvalidEscape { spec: "linux(%zz)/x", value: "%zz" }"#,
            ),
            (
                "linux(+%ff)/x",
                r#"InvalidEscape { spec: "linux(+%ff)/x", value: "%ff" }"#,
            ),
            ("foo", r#"Unknown { spec: "foo" }"#),
            ("a/b/c/d", r#"TooManyComponents { spec: "a/b/c/d" }"#),
        ];
        for (input, want) in cases {
            let got = Platform::parse(input).map_err(|e| format!("{e:?}"));
            assert_eq!(got, Err(want.to_string()), "{input:?}");
        }
    }

    #[test]
    fn errors_name_the_input_and_what_is_expected() {
        let message = Platform::parse("linux/&arm").unwrap_err().to_string();
        assert!(message.starts_with("platform `linux/&arm` has an invalid component `&arm`"));
        assert!(message.contains("expected"), "{message}");
        let message = "foo".parse::<Platform>().unwrap_err().to_string();
        assert!(
            message.contains("expected os/arch[/variant], e.g. linux/arm64"),
            "{message}"
        );
    }

    #[test]
    fn single_components_are_completed_from_the_host() {
        let host = Platform::host();
        assert_eq!(p("s390x").os, host.os);
        assert_eq!(p("linux").architecture, host.architecture);
    }

    #[test]
    fn normalize_follows_containerd() {
        let cases = [
            (plat("Linux", "x86_64", "V1"), plat("linux", "amd64", "")),
            (plat("linux", "i386", "sse2"), plat("linux", "386", "")),
            (plat("linux", "aarch64", "v8.0"), plat("linux", "arm64", "")),
            (plat("linux", "arm64", "9"), plat("linux", "arm64", "v9")),
            (
                plat("linux", "arm64", "v8.1"),
                plat("linux", "arm64", "v8.1"),
            ),
            (plat("linux", "armhf", "v6"), plat("linux", "arm", "v7")),
            (plat("linux", "armel", ""), plat("linux", "arm", "v6")),
            (plat("linux", "arm", ""), plat("linux", "arm", "v7")),
            (plat("linux", "arm", "5"), plat("linux", "arm", "v5")),
            (plat("linux", "arm", "4"), plat("linux", "arm", "4")),
            (plat("MacOS", "amd64", ""), plat("darwin", "amd64", "")),
            (
                plat("", "amd64", ""),
                plat(Platform::host().os.as_str(), "amd64", ""),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.normalize(), want, "{input:?}");
        }
        let mut odd = plat("linux", "amd64", "");
        odd.variant = Some(String::new());
        odd.os_version = Some(String::new());
        odd.os_features = vec!["b".into(), "a".into(), "b".into()];
        let normalized = odd.normalize();
        assert_eq!((normalized.variant, normalized.os_version), (None, None));
        assert_eq!(normalized.os_features, ["a", "b"]);
    }

    #[test]
    fn from_str_normalizes_and_display_formats() {
        let cases = [
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("armhf", "linux/arm/v7"),
            ("linux/amd64", "linux/amd64"),
            ("windows(10.0.17763)/amd64", "windows/amd64"),
        ];
        for (spec, want) in cases {
            let platform: Platform = spec.parse().unwrap();
            assert_eq!(platform, p(spec).normalize(), "{spec}");
            assert_eq!(platform.to_string(), want, "{spec}");
        }
    }

    #[test]
    fn format_all_encodes_and_cleans_like_go() {
        let mut windows = plat("windows", "amd64", "");
        windows.os_version = Some("1.0(beta)/x".into());
        windows.os_features = vec![
            "win32k".into(),
            String::new(),
            "a+b".into(),
            "win32k".into(),
        ];
        assert_eq!(
            windows.format_all(),
            "windows(1.0%28beta%29%2Fx+a%2Bb+win32k)/amd64"
        );
        assert_eq!(plat("linux", "..", "v7").format_all(), "v7");
        assert_eq!(plat("", "amd64", "").format_all(), "unknown");
        assert_eq!(go_path_join(&["/linux", "..", ".."]), "/");
        assert_eq!(go_path_join(&["..", "a"]), "../a");
        assert_eq!(go_path_join(&["a", ".."]), ".");
        assert_eq!(go_path_join(&["", ""]), "");
    }

    #[test]
    fn serde_shape_is_the_oci_platform_object() {
        let json = r#"{"architecture":"arm","os":"linux","variant":"","os.version":"",
            "os.features":["a"],"features":["ignored"]}"#;
        let platform: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(
            (platform.variant.as_deref(), platform.os_version.as_deref()),
            (None, None)
        );
        assert_eq!(platform.os_features, ["a"]);
        let mut windows = plat("windows", "amd64", "");
        windows.os_version = Some("10.0.17763".into());
        let expected = r#"{"os":"windows","architecture":"amd64","os.version":"10.0.17763"}"#;
        assert_eq!(serde_json::to_string(&windows).unwrap(), expected);
    }
}
