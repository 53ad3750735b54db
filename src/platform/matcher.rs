//! Which of an index's platforms a wanted platform accepts, and which it
//! prefers: exact matches after normalisation, the older levels a CPU still
//! runs (arm64 runs arm, amd64/v3 runs amd64/v2 and 386), OS features, and
//! Windows build compatibility.
//!
//! The rules are containerd's `Only`, `OnlyStrict`, `OnlyOS` and `NewMatcher`,
//! and the orderings their `Less` methods define.

use std::cmp::Ordering;
use std::str::FromStr;

use super::{Platform, non_empty};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::tests::p;

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
}
