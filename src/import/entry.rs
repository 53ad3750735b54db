//! Archive entry names, and the targets of links between entries.
//!
//! Tools write the same layout as `index.json`, `./index.json` or
//! `./blobs//sha256/…`: every name is brought to one form, relative and
//! without `.` components, so that lookups match. A name that is absolute
//! or climbs out with `..` is refused outright rather than cleaned: nothing
//! is extracted to the file system, but such a name is the mark of a
//! crafted archive, and whatever it claims to be cannot be trusted.

/// Returns the archive path `name` stands for, or `None` when it is
/// absolute or has a `..` component. The top directory itself is `""`.
pub(super) fn clean(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Returns the archive path a symbolic link at `path` points to, or `None`
/// when the target is absolute or climbs out of the archive.
pub(super) fn resolve_symlink(path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Returns the path of a layout's blob: `blobs/<alg>/<hex>`.
pub(super) fn blob_path(digest: &crate::Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_relative_names_and_refuses_escaping_ones() {
        let cases = [
            ("index.json", Some("index.json")),
            ("./index.json", Some("index.json")),
            ("././blobs//sha256/ab", Some("blobs/sha256/ab")),
            ("blobs/sha256/", Some("blobs/sha256")),
            ("./", Some("")),
            ("/etc/passwd", None),
            ("../index.json", None),
            ("blobs/../../x", None),
            ("blobs/..", None),
        ];
        for (name, expected) in cases {
            assert_eq!(clean(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn resolves_symlinks_inside_the_archive_only() {
        let cases = [
            ("abc/layer.tar", "../0123.tar", Some("0123.tar")),
            ("abc/layer.tar", "./other.tar", Some("abc/other.tar")),
            ("abc/layer.tar", "../def/layer.tar", Some("def/layer.tar")),
            ("layer.tar", "blobs/sha256/ab", Some("blobs/sha256/ab")),
            ("abc/layer.tar", "../../etc/passwd", None),
            ("layer.tar", "../x", None),
            ("abc/layer.tar", "/etc/passwd", None),
        ];
        for (path, target, expected) in cases {
            assert_eq!(
                resolve_symlink(path, target).as_deref(),
                expected,
                "{path} -> {target}"
            );
        }
    }
}
