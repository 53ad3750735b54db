//! The platform this process runs on, named as Go names it, with the 32-bit
//! ARM variant read from `/proc/cpuinfo` or `uname` as containerd reads it.

use std::sync::OnceLock;

use super::{Platform, non_empty};

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
}

/// The host as Go would name it, read once.
pub(super) struct HostInfo {
    pub(super) os: &'static str,
    pub(super) arch: &'static str,
    /// The detected 32-bit ARM variant (`v7`, `v6`...), empty elsewhere.
    pub(super) arm_variant: String,
}

pub(super) fn host_info() -> &'static HostInfo {
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
    // SAFETY: every field of `utsname` is a `c_char` array, for which
    // all-zero bytes are a valid value.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is a valid `utsname`, exclusively borrowed for the call,
    // and `uname` writes only within the struct it is given.
    if unsafe { libc::uname(&mut names) } != 0 {
        return None;
    }
    // Walking the array, not reading a C string, stays in bounds even if the
    // field has no NUL.
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
    use crate::platform::tests::plat;

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
