//! Entry names inside layers: cleaned into relative paths, and read as
//! whiteouts where the image spec says so (image-spec, layer.md,
//! "Whiteouts").
//!
//! A clean path has no leading `/`, no empty, `.` or `..` components and no
//! trailing `/`; the root is the empty path. Names that would leave the root
//! (an absolute name, a `..` component) are refused here rather than
//! resolved: lkcache drops such entries instead of guessing what they meant.

/// The prefix of a whiteout file's name.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The prefix of whiteout names that are bookkeeping, not deletions.
const META_PREFIX: &[u8] = b".wh..wh.";
/// The name that makes its directory opaque.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a layer entry's name means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Name {
    /// An ordinary entry at this clean path; the root is `""`.
    Entry(Vec<u8>),
    /// `DIR/.wh.NAME`: removes `DIR/NAME` of lower layers.
    Whiteout(Vec<u8>),
    /// `DIR/.wh..wh..opq`: hides lower layers' contents of `DIR`.
    Opaque(Vec<u8>),
    /// Another `.wh..wh.` name (aufs bookkeeping), which means nothing to
    /// a flattened tree.
    Bookkeeping,
}

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadName {
    /// It starts with `/`.
    Absolute,
    /// It has a `..` component.
    Parent,
    /// It is `.wh.` with nothing or `.` after it.
    EmptyWhiteout,
}

/// Cleans `raw` into a relative path: `./a//b/` is `a/b`, `.` is `""`.
pub(super) fn clean(raw: &[u8]) -> Result<Vec<u8>, BadName> {
    if raw.first() == Some(&b'/') {
        return Err(BadName::Absolute);
    }
    let mut out = Vec::with_capacity(raw.len());
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(BadName::Parent),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
    Ok(out)
}

/// Reads an entry's name: cleans it and recognises whiteouts.
pub(super) fn parse(raw: &[u8]) -> Result<Name, BadName> {
    let path = clean(raw)?;
    let (dir, base) = split_last(&path);
    if base == OPAQUE {
        return Ok(Name::Opaque(dir.to_vec()));
    }
    if base.starts_with(META_PREFIX) {
        return Ok(Name::Bookkeeping);
    }
    let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Name::Entry(path));
    };
    match target {
        b"" | b"." => Err(BadName::EmptyWhiteout),
        b".." => Err(BadName::Parent),
        _ => Ok(Name::Whiteout(join(dir, target))),
    }
}

/// Splits a clean path into its parent and its last component.
pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (b"", path),
    }
}

/// Joins a clean directory path and a name.
pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Returns the proper ancestors of a clean path, the root `""` first:
/// `a/b/c` gives `""`, `a`, `a/b`. The root has none.
pub(super) fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let root = (!path.is_empty()).then_some(&path[..0]);
    let inner = path
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &path[..i]);
    root.into_iter().chain(inner)
}

/// Tells whether `path` is `dir` or lies beneath it.
pub(super) fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// Shows a path in a message: lossy UTF-8, the root as `/`.
pub(super) fn display(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names_or_refuses_those_that_leave_the_root() {
        let cases: &[(&str, Result<&str, BadName>)] = &[
            ("etc/passwd", Ok("etc/passwd")),
            ("./etc/passwd", Ok("etc/passwd")),
            ("etc//ssl/./certs/", Ok("etc/ssl/certs")),
            ("./", Ok("")),
            (".", Ok("")),
            ("", Ok("")),
            ("/etc/passwd", Err(BadName::Absolute)),
            ("//etc", Err(BadName::Absolute)),
            ("../evil", Err(BadName::Parent)),
            ("a/../../evil", Err(BadName::Parent)),
            ("a/b/..", Err(BadName::Parent)),
            ("a/..b/c..", Ok("a/..b/c..")),
            (
                "usr/share/zoneinfo/Amérique",
                Ok("usr/share/zoneinfo/Amérique"),
            ),
        ];
        for (raw, expected) in cases {
            let got = clean(raw.as_bytes());
            let expected = expected.map(|s| s.as_bytes().to_vec());
            assert_eq!(got, expected, "{raw:?}");
        }
    }

    #[test]
    fn reads_whiteouts_and_opaque_markers() {
        let entry = |s: &str| Ok(Name::Entry(s.as_bytes().to_vec()));
        let whiteout = |s: &str| Ok(Name::Whiteout(s.as_bytes().to_vec()));
        let opaque = |s: &str| Ok(Name::Opaque(s.as_bytes().to_vec()));
        let cases: &[(&str, Result<Name, BadName>)] = &[
            ("etc/hosts", entry("etc/hosts")),
            ("etc/.wh.hosts", whiteout("etc/hosts")),
            ("./.wh.etc", whiteout("etc")),
            ("a/b/.wh..wh..opq", opaque("a/b")),
            ("./.wh..wh..opq", opaque("")),
            ("a/.wh..wh.plnk", Ok(Name::Bookkeeping)),
            ("a/.wh..wh.aufs", Ok(Name::Bookkeeping)),
            ("a/.wh.", Err(BadName::EmptyWhiteout)),
            ("a/.wh..", Err(BadName::EmptyWhiteout)),
            ("a/.wh...", Err(BadName::Parent)),
            ("a/.wh.b/c", entry("a/.wh.b/c")),
            ("a/x.wh.b", entry("a/x.wh.b")),
            ("/a/.wh.b", Err(BadName::Absolute)),
        ];
        for (raw, expected) in cases {
            assert_eq!(&parse(raw.as_bytes()), expected, "{raw:?}");
        }
    }

    #[test]
    fn lists_ancestors_root_first() {
        let cases: &[(&str, &[&str])] = &[("", &[]), ("a", &[""]), ("a/b/c", &["", "a", "a/b"])];
        for (path, expected) in cases {
            let got: Vec<&[u8]> = ancestors(path.as_bytes()).collect();
            let expected: Vec<&[u8]> = expected.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(got, expected, "{path:?}");
        }
    }

    #[test]
    fn tells_whether_a_path_lies_within_a_directory() {
        let cases = [
            ("a/b", "a", true),
            ("a", "a", true),
            ("ab", "a", false),
            ("a/b/c", "a/b", true),
            ("anything", "", true),
        ];
        for (path, dir, expected) in cases {
            assert_eq!(
                is_within(path.as_bytes(), dir.as_bytes()),
                expected,
                "{path} in {dir}"
            );
        }
    }
}
