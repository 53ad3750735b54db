//! OCI platforms: the `os/arch[/variant]` specifiers users type, the
//! `platform` objects of image indexes, and the rules that decide which of an
//! index's platforms a host can run and which it prefers.
//!
//! Everything here follows containerd/platforms (`Parse`, `Normalize`,
//! `Format`, `FormatAll`, `NewMatcher`, `Only`, `OnlyStrict`, `OnlyOS` and
//! the `Less` orderings), so `--platform linux/arm64` picks the same manifest
//! here as it does in containerd, Docker and LinuxKit. The host default and
//! the 32-bit ARM variant come from the same sources containerd reads.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Deserialize as _;

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

/// One of containerd's rules for which platforms a wanted platform accepts
/// and in what order it prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    /// containerd's `Only`: the platform itself, then everything it can run
    /// (arm64 runs arm v8 to v5, amd64/vN runs lower amd64 levels and 386,
    /// arm/vN runs arm down to v5), best first.
    Compatible,
    /// containerd's `OnlyStrict`: the platform itself only, after
    /// normalisation.
    Strict,
    /// containerd's `OnlyOS`: any architecture of the same OS, OS version
    /// and OS features, the platform's own architecture first.
    SameOs,
}

impl Matcher {
    /// Reports whether `wanted` accepts `candidate` under this rule.
    pub fn matches(self, wanted: &Platform, candidate: &Platform) -> bool {
        Comparer::new(self, wanted).matches(candidate)
    }

    /// Orders two candidates for `wanted`: `Less` means `a` is preferred.
    ///
    /// Ties are `Equal`, so a stable sort keeps their input order, as
    /// containerd's insertion sort does.
    pub fn compare(self, wanted: &Platform, a: &Platform, b: &Platform) -> Ordering {
        Comparer::new(self, wanted).compare(a, b)
    }
}

impl Platform {
    /// Returns the platform this process runs on, normalised: containerd's
    /// `DefaultSpec` (without a Windows host's `os.version`).
    pub fn host() -> Platform {
        let host = host_info();
        Platform {
            os: host.os.to_string(),
            architecture: host.arch.to_string(),
            variant: non_empty(&host.arm_variant),
            os_version: None,
            os_features: Vec::new(),
        }
        .normalize()
    }

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

    /// Reports whether `self` can run `candidate`: containerd's
    /// `Only(self).Match(candidate)`.
    pub fn is_compatible(&self, candidate: &Platform) -> bool {
        Matcher::Compatible.matches(self, candidate)
    }

    /// Reports whether `candidate` is `self` after normalisation (with
    /// Windows build compatibility when `self` is Windows): containerd's
    /// `NewMatcher(self).Match(candidate)`.
    pub fn is_exact(&self, candidate: &Platform) -> bool {
        Exact::new(self).matches(candidate)
    }

    /// Orders two candidates as containerd's `Only(self).Less` does: `Less`
    /// means `a` is preferred, compatible platforms first, closest first.
    pub fn preference(&self, a: &Platform, b: &Platform) -> Ordering {
        Matcher::Compatible.compare(self, a, b)
    }

    /// Returns the best candidate `self` can run, as containerd picks an
    /// index entry: compatible ones only, an exact match before any fallback,
    /// the first of equally good ones.
    pub fn select<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Platform>,
    ) -> Option<&'a Platform> {
        let comparer = Comparer::new(Matcher::Compatible, self);
        candidates
            .into_iter()
            .filter(|candidate| comparer.matches(candidate))
            .min_by(|a, b| comparer.compare(a, b))
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
    !part.is_empty()
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
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("%25"),
            '+' => out.push_str("%2B"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
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

/// A prepared `Matcher` for one wanted platform.
enum Comparer {
    /// containerd's `orderedPlatformComparer`: earlier matchers are better.
    Ordered(Vec<Exact>),
    /// containerd's `onlyOSComparer`.
    SameOs { os: Exact },
}

impl Comparer {
    fn new(matcher: Matcher, wanted: &Platform) -> Comparer {
        let normalized = wanted.normalize();
        match matcher {
            Matcher::Compatible => Comparer::Ordered(
                platform_vector(&normalized)
                    .iter()
                    .map(Exact::new)
                    .collect(),
            ),
            Matcher::Strict => Comparer::Ordered(vec![Exact::new(&normalized)]),
            Matcher::SameOs => Comparer::SameOs {
                os: Exact::new(&normalized),
            },
        }
    }

    fn matches(&self, candidate: &Platform) -> bool {
        match self {
            Comparer::Ordered(exacts) => exacts.iter().any(|exact| exact.matches(candidate)),
            Comparer::SameOs { os } => os.matches_os(candidate),
        }
    }

    /// Turns containerd's `Less`, a strict weak order, into an `Ordering`.
    fn compare(&self, a: &Platform, b: &Platform) -> Ordering {
        if self.less(a, b) {
            Ordering::Less
        } else if self.less(b, a) {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }

    fn less(&self, a: &Platform, b: &Platform) -> bool {
        match self {
            Comparer::Ordered(exacts) => ordered_less(exacts, a, b),
            Comparer::SameOs { os } => match (os.matches_os(a), os.matches_os(b)) {
                (true, true) => ordered_less(std::slice::from_ref(os), a, b),
                (a_matches, _) => a_matches,
            },
        }
    }
}

/// containerd's ordered `Less`: the first matcher either accepts decides;
/// between two it accepts, more OS features win; when none accepts either,
/// they are compared again without their OS features.
fn ordered_less(exacts: &[Exact], a: &Platform, b: &Platform) -> bool {
    for exact in exacts {
        match (exact.matches(a), exact.matches(b)) {
            (false, false) => {}
            (true, true) => return a.os_features.len() > b.os_features.len(),
            (a_matches, _) => return a_matches,
        }
    }
    if a.os_features.is_empty() && b.os_features.is_empty() {
        return false;
    }
    let strip = |p: &Platform| Platform {
        os_features: Vec::new(),
        ..p.clone()
    };
    ordered_less(exacts, &strip(a), &strip(b))
}

/// How many lower amd64 or arm levels a wanted level reaches down. containerd
/// lists them all; real levels are single digits, and a typo such as
/// `amd64/v4000000000` must not exhaust memory.
const MAX_LOWER_LEVELS: usize = 64;

/// The platforms a normalised platform can run, best first (containerd's
/// `platformVector`).
fn platform_vector(platform: &Platform) -> Vec<Platform> {
    let with = |architecture: &str, variant: &str| Platform {
        architecture: architecture.to_string(),
        variant: non_empty(variant),
        ..platform.clone()
    };
    let mut vector = vec![platform.clone()];
    match platform.architecture.as_str() {
        "amd64" => {
            vector.extend(lower_levels(platform, 1));
            vector.push(with("386", ""));
        }
        "arm" => vector.extend(lower_levels(platform, 5)),
        "arm64" => {
            let variant = platform.variant.as_deref().unwrap_or("v8");
            vector.extend(arm64_variants(variant).iter().map(|v| with("arm64", v)));
            // Every arm64 runs 32-bit arm up to v8; v8.x and v9.x name no arm.
            let arm = if variant.starts_with("v8.") || variant.starts_with("v9.") {
                "v8"
            } else {
                variant
            };
            vector.extend(platform_vector(&with("arm", arm)));
        }
        _ => {}
    }
    vector
}

/// Returns the same platform at each level below its `vN` down to `floor`,
/// best first.
fn lower_levels(platform: &Platform, floor: i64) -> impl Iterator<Item = Platform> + '_ {
    let variant = platform.variant.as_deref().unwrap_or("");
    let level = go_atoi(variant.strip_prefix('v').unwrap_or(variant)).unwrap_or(0);
    (floor..level)
        .rev()
        .take(MAX_LOWER_LEVELS)
        .map(move |lower| Platform {
            variant: Some(format!("v{lower}")),
            ..platform.clone()
        })
}

/// Returns the arm64 variants below `variant`, best first: v9.x runs
/// v9.0..v9.(x-1) and v8.0..v8.(x+5) (capped at v8.9), v8.x runs v8.0..v8.(x-1).
fn arm64_variants(variant: &str) -> Vec<String> {
    let (major, minor) = match variant.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (variant, None),
    };
    let Some(mut major) = go_atoi(major.strip_prefix('v').unwrap_or(major)).filter(|m| *m >= 8)
    else {
        return Vec::new();
    };
    // containerd only reads a one-digit minor (`len(variant) == 4`).
    let mut minor = match minor {
        Some(minor) if variant.len() == 4 => go_atoi(minor).unwrap_or(0),
        _ => 0,
    };
    let name = |major: i64, minor: i64| {
        if minor == 0 {
            format!("v{major}")
        } else {
            format!("v{major}.{minor}")
        }
    };
    let mut variants = Vec::new();
    if major == 9 {
        variants.extend((0..minor).rev().map(|m| name(9, m)));
        // v9.0 forked from v8.5, so v9.x also runs v8.(x+5), up to v8.9.
        minor = (minor + 5).min(9);
        major = 8;
        variants.push(format!("v8.{minor}"));
    }
    variants.extend((0..minor).rev().map(|m| name(major, m)));
    variants
}

/// Parses a decimal integer as Go's `strconv.Atoi` does (a sign is allowed).
fn go_atoi(s: &str) -> Option<i64> {
    s.parse().ok()
}

/// containerd's `NewMatcher`: equality after normalisation, OS features a
/// subset of the wanted ones, and Windows build compatibility.
struct Exact {
    platform: Platform,
    /// The wanted Windows build; `None` accepts any `os.version`.
    windows_host: Option<WindowsVersion>,
}

impl Exact {
    fn new(wanted: &Platform) -> Exact {
        // containerd checks the raw OS here, before normalising.
        let windows_host = (wanted.os == "windows")
            .then(|| WindowsVersion::parse(wanted.os_version.as_deref().unwrap_or("")))
            .filter(|version| *version != WindowsVersion::default());
        Exact {
            platform: wanted.normalize(),
            windows_host,
        }
    }

    fn matches(&self, candidate: &Platform) -> bool {
        let normalized = candidate.normalize();
        normalized.architecture == self.platform.architecture
            && normalized.variant == self.platform.variant
            && self.matches_os_normalized(candidate, &normalized)
    }

    /// containerd's `OnlyOS` test: OS, OS version and OS features only.
    fn matches_os(&self, candidate: &Platform) -> bool {
        self.matches_os_normalized(candidate, &candidate.normalize())
    }

    fn matches_os_normalized(&self, candidate: &Platform, normalized: &Platform) -> bool {
        let version = candidate.os_version.as_deref().unwrap_or("");
        let version_ok = match self.windows_host {
            Some(host) if !version.is_empty() => host.can_run(WindowsVersion::parse(version)),
            _ => true,
        };
        normalized.os == self.platform.os && version_ok && self.features_ok(normalized)
    }

    fn features_ok(&self, normalized: &Platform) -> bool {
        // Windows hosts all have win32k since Nano Server stopped being a
        // host, so containerd ignores images asking for it.
        let ignored = if self.platform.os == "windows" {
            "win32k"
        } else {
            ""
        };
        normalized
            .os_features
            .iter()
            .filter(|feature| ignored.is_empty() || *feature != ignored)
            .all(|feature| self.platform.os_features.binary_search(feature).is_ok())
    }
}

/// A Windows `major.minor.build`; all zero when unparseable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WindowsVersion {
    major: u8,
    minor: u8,
    build: u16,
}

/// Windows Server 2022, the first build whose containers later hosts run.
const WINDOWS_LTSC2022: u16 = 20348;

impl WindowsVersion {
    /// Reads `major.minor.build[.revision]`, as containerd's
    /// `getWindowsOSVersion` does.
    fn parse(version: &str) -> WindowsVersion {
        let mut parts = version.splitn(4, '.');
        let (Some(major), Some(minor), Some(build)) = (parts.next(), parts.next(), parts.next())
        else {
            return WindowsVersion::default();
        };
        match (
            go_parse_uint(major),
            go_parse_uint(minor),
            go_parse_uint(build),
        ) {
            (Some(major), Some(minor), Some(build)) => WindowsVersion {
                major,
                minor,
                build,
            },
            _ => WindowsVersion::default(),
        }
    }

    /// Reports whether a host of this version runs a container of `image`'s:
    /// the same build before Windows Server 2022, any build from 2022 up to
    /// the host's own since.
    fn can_run(self, image: WindowsVersion) -> bool {
        if (self.major, self.minor) != (image.major, image.minor) {
            return false;
        }
        if self.build < WINDOWS_LTSC2022 {
            return self.build == image.build;
        }
        (WINDOWS_LTSC2022..=self.build).contains(&image.build)
    }
}

/// Parses unsigned decimal digits as Go's `strconv.ParseUint` does: no sign,
/// no overflow.
fn go_parse_uint<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The host as Go would name it, read once.
struct HostInfo {
    os: &'static str,
    arch: &'static str,
    /// The detected 32-bit ARM variant (`v7`, `v6`...), empty elsewhere.
    arm_variant: String,
}

fn host_info() -> &'static HostInfo {
    static HOST: OnceLock<HostInfo> = OnceLock::new();
    HOST.get_or_init(|| {
        let arch = go_arch(std::env::consts::ARCH);
        // Only 32-bit ARM needs it: arm64's v8 normalises away.
        let arm_variant = if arch == "arm" {
            detect_arm_variant()
        } else {
            String::new()
        };
        HostInfo {
            os: go_os(std::env::consts::OS),
            arch,
            arm_variant,
        }
    })
}

/// Maps a Rust `target_os` to Go's `GOOS`.
fn go_os(os: &'static str) -> &'static str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

/// Maps a Rust `target_arch` to Go's `GOARCH`.
fn go_arch(arch: &'static str) -> &'static str {
    let little = cfg!(target_endian = "little");
    match arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc" => "ppc",
        "powerpc64" if little => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little => "mipsle",
        "mips64" if little => "mips64le",
        "loongarch64" => "loong64",
        "wasm32" => "wasm",
        other => other,
    }
}

/// Reads the ARM variant as containerd's `getArmCPUVariant` does on Linux;
/// empty when it cannot tell.
fn detect_arm_variant() -> String {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return String::new();
    };
    arm_variant(&cpuinfo, machine_arch)
        .unwrap_or_default()
        .to_string()
}

/// Turns `/proc/cpuinfo` into a variant, falling back to the kernel's
/// machine name (from `machine`) when the `CPU architecture` line is missing,
/// as it is under emulation.
fn arm_variant(cpuinfo: &str, machine: impl FnOnce() -> Option<String>) -> Option<&'static str> {
    let mut level = match cpuinfo_field(cpuinfo, "Cpu architecture") {
        Some(level) => level.to_lowercase(),
        None => variant_from_machine(&machine()?)?.to_string(),
    };
    // Raspberry Pi ARMv6 kernels report architecture 7.
    let model = cpuinfo_field(cpuinfo, "model name")
        .unwrap_or("")
        .to_lowercase();
    if level == "7" && model.starts_with("armv6-compatible") {
        level = "6".to_string();
    }
    Some(match level.as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    })
}

/// Returns the value of the first `key: value` line whose key matches,
/// ignoring case, as containerd's `getCPUInfo` does.
fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let value = fields.next()?;
        name.trim().eq_ignore_ascii_case(key).then(|| value.trim())
    })
}

/// Maps a machine name such as `armv7l` to its architecture level, as
/// containerd's `getCPUVariantFromArch` does; `None` when it is not ARM.
fn variant_from_machine(machine: &str) -> Option<&'static str> {
    let machine = machine.to_lowercase();
    if machine == "aarch64" {
        return Some("8");
    }
    let level = machine.strip_prefix("armv")?.chars().next()?;
    Some(match level {
        '8' => "8",
        '7' => "7",
        '6' => "6",
        '5' => "5",
        '4' => "4",
        '3' => "3",
        _ => "unknown",
    })
}

/// Returns the kernel's machine name (`uname -m`).
#[cfg(unix)]
fn machine_arch() -> Option<String> {
    // SAFETY: `utsname` is plain bytes, so all-zero is a valid value, and
    // `uname` only writes NUL-terminated strings into the buffer it is given.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut names) } != 0 {
        return None;
    }
    let machine: Vec<u8> = names
        .machine
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(machine).ok()
}

#[cfg(not(unix))]
fn machine_arch() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(spec: &str) -> Platform {
        Platform::parse(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    fn plat(os: &str, arch: &str, variant: &str) -> Platform {
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
    fn compatibility_follows_only() {
        let cases = [
            ("linux/amd64", "linux/386", true),
            ("linux/amd64", "linux/amd64/v2", false),
            ("linux/amd64/v3", "linux/amd64/v2", true),
            ("linux/arm64", "linux/arm/v7", true),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/aarch64", true),
            ("linux/arm/v7", "linux/arm/v6", true),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/arm64/v9.6", "linux/arm64/v8.9", true),
            ("linux/arm64/v9.6", "linux/arm64/v8.10", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux(+gpu)/amd64", "linux/amd64", true),
            ("linux/amd64", "linux(+gpu)/amd64", false),
        ];
        for (wanted, candidate, want) in cases {
            let (wanted, candidate) = (p(wanted), p(candidate));
            assert_eq!(
                wanted.is_compatible(&candidate),
                want,
                "{wanted:?} runs {candidate:?}"
            );
            let via_matcher = Matcher::Compatible.matches(&wanted, &candidate);
            assert_eq!(via_matcher, want, "Matcher::Compatible");
        }
    }

    #[test]
    fn absurd_levels_reach_only_so_far_down() {
        let wanted = p("linux/amd64/v4000000000");
        assert!(wanted.is_compatible(&p("linux/amd64/v3999999999")));
        assert!(!wanted.is_compatible(&p("linux/amd64")));
        assert!(wanted.is_compatible(&p("linux/386")));
        assert!(p("linux/arm64/v99999999").is_compatible(&p("linux/arm/v99999998")));
    }

    #[test]
    fn strict_and_same_os_matchers() {
        let cases = [
            (Matcher::Strict, "linux/arm64", "linux/arm64/v8", true),
            (Matcher::Strict, "linux/amd64", "linux/386", false),
            (Matcher::SameOs, "linux/amd64", "linux/arm/v7", true),
            (Matcher::SameOs, "linux/amd64", "darwin/amd64", false),
            (
                Matcher::SameOs,
                "linux(+gpu)/amd64",
                "linux(+gpu+simd)/arm64",
                false,
            ),
        ];
        for (matcher, wanted, candidate, want) in cases {
            assert_eq!(
                matcher.matches(&p(wanted), &p(candidate)),
                want,
                "{matcher:?} {candidate}"
            );
        }
    }

    #[test]
    fn windows_versions_and_win32k() {
        let host = p("windows(10.0.26100)/amd64");
        let cases = [
            ("windows/amd64", true),
            ("windows(10.0.20348.3091)/amd64", true),
            ("windows(10.0.26100.1)/amd64", true),
            ("windows(10.0.17763)/amd64", false),
            ("windows(10.0.26200)/amd64", false),
            ("windows(10.0.26100+win32k)/amd64", true),
            ("windows(10.0.26100+win32k+gpu)/amd64", false),
        ];
        for (candidate, want) in cases {
            assert_eq!(host.is_exact(&p(candidate)), want, "{candidate}");
        }
        assert!(!p("linux/amd64").is_exact(&p("linux(+win32k)/amd64")));
    }

    #[test]
    fn preference_puts_the_closest_first() {
        let wanted = p("linux/arm64");
        let mut candidates = ["linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64"]
            .map(p)
            .to_vec();
        candidates.sort_by(|a, b| wanted.preference(a, b));
        let order: Vec<String> = candidates.iter().map(Platform::format_all).collect();
        assert_eq!(
            order,
            ["linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/amd64"]
        );
        let same = wanted.preference(&p("linux/amd64"), &p("windows/amd64"));
        assert_eq!(same, Ordering::Equal);
    }

    #[test]
    fn select_picks_what_containerd_picks() {
        let index = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"].map(p);
        let only_arm = [p("linux/arm/v7")];
        let features = ["linux/amd64", "linux(+gpu)/amd64"].map(p);
        let cases: [(&str, &[Platform], Option<&str>); 6] = [
            ("linux/arm64", &index, Some("linux/arm64/v8")),
            ("linux/arm/v6", &index, None),
            ("linux/arm64", &only_arm, Some("linux/arm/v7")),
            ("linux/amd64/v3", &index, Some("linux/amd64")),
            ("linux(+gpu)/amd64", &features, Some("linux(+gpu)/amd64")),
            ("linux/amd64", &features, Some("linux/amd64")),
        ];
        for (wanted, candidates, want) in cases {
            let got = p(wanted).select(candidates).map(Platform::format_all);
            assert_eq!(got.as_deref(), want, "{wanted}");
        }
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

    #[test]
    fn machine_names_map_like_containerd_cpuinfo() {
        // The `internal` TestGetCPUVariantFromArch vectors.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/conformance/platform-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("platform vectors");
        let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases: Vec<&serde_json::Value> = vectors["internal"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["test"] == "TestGetCPUVariantFromArch")
            .collect();
        assert_eq!(cases.len(), 10);
        for case in cases {
            let input = case["input"].as_str().unwrap();
            let want = if case["valid"] == true {
                case["expected"].as_str()
            } else {
                None
            };
            assert_eq!(variant_from_machine(input), want, "{}", case["id"]);
        }
    }

    #[test]
    fn arm_variant_reads_cpuinfo_like_containerd() {
        let rpi = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        let cases = [
            ("processor\t: 0\nCPU architecture: 7\n", None, Some("v7")),
            ("CPU architecture: 8\n", None, Some("v8")),
            ("CPU architecture: 5TEJ\n", None, Some("v5")),
            (rpi, None, Some("v6")),
            ("CPU architecture: 9\n", None, Some("unknown")),
            ("processor\t: 0\n", Some("armv7l"), Some("v7")),
            ("processor\t: 0\n", None, None),
        ];
        for (cpuinfo, machine, want) in cases {
            let got = arm_variant(cpuinfo, || machine.map(String::from));
            assert_eq!(got, want, "{cpuinfo:?} on {machine:?}");
        }
    }

    #[test]
    fn rust_targets_map_to_go_names() {
        let cases = [
            (("linux", "x86_64"), ("linux", "amd64")),
            (("macos", "aarch64"), ("darwin", "arm64")),
            (("windows", "x86"), ("windows", "386")),
            (("linux", "arm"), ("linux", "arm")),
            (("linux", "loongarch64"), ("linux", "loong64")),
            (("linux", "s390x"), ("linux", "s390x")),
        ];
        for ((os, arch), want) in cases {
            assert_eq!((go_os(os), go_arch(arch)), want);
        }
    }

    #[cfg(unix)]
    #[test]
    fn machine_arch_reads_uname() {
        assert!(machine_arch().is_some_and(|m| !m.is_empty()));
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn host_is_linux_amd64_here() {
        assert_eq!(Platform::host(), plat("linux", "amd64", ""));
        assert_eq!(Platform::host().to_string(), "linux/amd64");
    }
}
