//! Which names an archive gives its images, and the full references the
//! cache records for them.
//!
//! An OCI layout names an `index.json` entry in one of two annotations.
//! containerd's `io.containerd.image.name` always holds a full reference
//! and wins. The image spec's `org.opencontainers.image.ref.name` holds
//! either a full reference (LinuxKit, skopeo, lkcache) or a bare tag
//! (BuildKit writes `latest` beside containerd's name); a bare tag is a
//! single word of tag characters, without `/`, `:` or `@`, so `alpine` there
//! is a tag, not `docker.io/library/alpine`. A Docker archive names its
//! images in `manifest.json`'s `RepoTags`. Every name is normalised as
//! references are everywhere else (`alpine:3.20` is
//! `docker.io/library/alpine:3.20`).

use std::collections::{BTreeMap, BTreeSet};

use crate::digest::Digest;
use crate::manifest::{ANNOTATION_CONTAINERD_NAME, Descriptor};
use crate::reference::Reference;

use super::ImportError;
use super::plan::Root;

/// The longest tag the reference grammar allows.
const TAG_MAX_LEN: usize = 128;

/// A name as an archive gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ArchiveName {
    /// A full reference, normalised.
    Full(Reference),
    /// A tag without a repository.
    BareTag(String),
}

/// Returns the names an `index.json` entry gives its image: containerd's
/// full name when it has one, else the image spec's ref name.
pub(super) fn index_entry_names(entry: &Descriptor) -> Result<Vec<ArchiveName>, ImportError> {
    if let Some(name) = entry.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(vec![ArchiveName::Full(full_reference(name)?)]);
    }
    match entry.ref_name() {
        Some(name) => Ok(vec![ref_name(name)?]),
        None => Ok(Vec::new()),
    }
}

/// Reads an `org.opencontainers.image.ref.name`: a bare tag or a full
/// reference.
pub(super) fn ref_name(value: &str) -> Result<ArchiveName, ImportError> {
    if is_bare_tag(value) {
        Ok(ArchiveName::BareTag(value.to_string()))
    } else {
        full_reference(value).map(ArchiveName::Full)
    }
}

/// Parses a name that must be a full reference.
pub(super) fn full_reference(value: &str) -> Result<Reference, ImportError> {
    value.parse().map_err(|source| ImportError::InvalidName {
        name: value.to_string(),
        source,
    })
}

fn is_bare_tag(value: &str) -> bool {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    value.len() <= TAG_MAX_LEN
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Works out the names to record for each root, in order: full names as
/// they are, bare tags joined to `--name`'s repository, and `--name` itself
/// for the one root without any name. Refuses a bare tag without `--name`,
/// and one name given to two different roots.
pub(super) fn resolve(
    roots: &[Root],
    name: Option<&Reference>,
) -> Result<Vec<Vec<String>>, ImportError> {
    let unnamed: Vec<&Digest> = roots
        .iter()
        .filter(|r| r.names.is_empty())
        .map(|r| &r.descriptor.digest)
        .collect();
    if name.is_some() && unnamed.len() > 1 {
        return Err(ImportError::AmbiguousName {
            digests: unnamed.into_iter().cloned().collect(),
        });
    }

    let mut resolved = Vec::with_capacity(roots.len());
    let mut owners: BTreeMap<String, &Digest> = BTreeMap::new();
    for root in roots {
        let digest = &root.descriptor.digest;
        let mut names = Vec::new();
        for archive_name in &root.names {
            names.push(resolve_one(archive_name, name, digest)?);
        }
        if root.names.is_empty()
            && let Some(name) = name
        {
            names.push(name.to_string());
        }
        let mut seen = BTreeSet::new();
        names.retain(|name| seen.insert(name.clone()));
        for name in &names {
            match owners.insert(name.clone(), digest) {
                Some(first) if first != digest => {
                    return Err(ImportError::NameConflict {
                        name: name.clone(),
                        first: first.clone(),
                        second: digest.clone(),
                    });
                }
                _ => {}
            }
        }
        resolved.push(names);
    }
    Ok(resolved)
}

fn resolve_one(
    archive_name: &ArchiveName,
    name: Option<&Reference>,
    digest: &Digest,
) -> Result<String, ImportError> {
    match (archive_name, name) {
        (ArchiveName::Full(reference), _) => Ok(reference.to_string()),
        (ArchiveName::BareTag(tag), Some(name)) => {
            full_reference(&format!("{}:{tag}", name.name())).map(|r| r.to_string())
        }
        (ArchiveName::BareTag(tag), None) => Err(ImportError::BareTag {
            digest: digest.clone(),
            tag: tag.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ANNOTATION_REF_NAME;
    use crate::media_type;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn root(annotations: &[(&str, &str)], content: &[u8]) -> Result<Root, ImportError> {
        let mut descriptor = Descriptor::of_bytes(media_type::OCI_MANIFEST, content);
        for (key, value) in annotations {
            descriptor
                .annotations
                .insert(key.to_string(), value.to_string());
        }
        Ok(Root {
            names: index_entry_names(&descriptor)?,
            descriptor,
            platforms: Vec::new(),
        })
    }

    fn names(roots: &[Root], name: Option<&str>) -> Result<Vec<Vec<String>>, ImportError> {
        let name = name.map(full_reference).transpose()?;
        resolve(roots, name.as_ref())
    }

    #[test]
    fn reads_ref_names_as_full_references_or_bare_tags() -> TestResult {
        let cases = [
            (
                "docker.io/library/alpine:3.20",
                "docker.io/library/alpine:3.20",
            ),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("127.0.0.1:5000/app:v1", "127.0.0.1:5000/app:v1"),
            ("user/app", "docker.io/user/app:latest"),
            ("v1.2.3", "tag v1.2.3"),
            ("latest", "tag latest"),
            ("alpine", "tag alpine"),
        ];
        for (value, expected) in cases {
            let shown = match ref_name(value)? {
                ArchiveName::Full(reference) => reference.to_string(),
                ArchiveName::BareTag(tag) => format!("tag {tag}"),
            };
            assert_eq!(shown, expected, "{value}");
        }
        assert!(matches!(
            ref_name("Upper/Case:x"),
            Err(ImportError::InvalidName { .. })
        ));
        Ok(())
    }

    #[test]
    fn prefers_the_containerd_name_to_a_bare_tag() -> TestResult {
        let annotated = root(
            &[
                (ANNOTATION_REF_NAME, "latest"),
                (ANNOTATION_CONTAINERD_NAME, "docker.io/library/foo:latest"),
            ],
            b"a",
        )?;
        assert_eq!(
            names(&[annotated], None)?,
            [["docker.io/library/foo:latest"]]
        );
        Ok(())
    }

    #[test]
    fn joins_a_bare_tag_to_the_repository_of_name() -> TestResult {
        let tagged = root(&[(ANNOTATION_REF_NAME, "v1")], b"a")?;
        assert_eq!(
            names(&[tagged], Some("example.com/app:ignored"))?,
            [["example.com/app:v1"]]
        );
        Ok(())
    }

    #[test]
    fn refuses_a_bare_tag_without_name() -> TestResult {
        let tagged = root(&[(ANNOTATION_REF_NAME, "v1")], b"a")?;
        let result = names(&[tagged], None);
        assert!(
            matches!(&result, Err(ImportError::BareTag { tag, .. }) if tag == "v1"),
            "{result:?}"
        );
        assert!(result.is_err_and(|e| e.is_usage()));
        Ok(())
    }

    #[test]
    fn names_the_one_unnamed_root_with_name_and_keeps_others_by_digest() -> TestResult {
        let unnamed = root(&[], b"a")?;
        let named = root(&[(ANNOTATION_REF_NAME, "b:1")], b"b")?;
        assert_eq!(
            names(&[unnamed, named], Some("example.com/app"))?,
            [
                vec!["example.com/app:latest"],
                vec!["docker.io/library/b:1"]
            ]
        );
        let alone = root(&[], b"c")?;
        assert_eq!(names(&[alone], None)?, [Vec::<String>::new()]);
        Ok(())
    }

    #[test]
    fn refuses_name_for_several_unnamed_roots() -> TestResult {
        let roots = [root(&[], b"a")?, root(&[], b"b")?];
        let result = names(&roots, Some("example.com/app"));
        assert!(
            matches!(&result, Err(ImportError::AmbiguousName { digests }) if digests.len() == 2),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn refuses_one_name_for_two_roots() -> TestResult {
        let roots = [
            root(&[(ANNOTATION_REF_NAME, "app:1")], b"a")?,
            root(
                &[(ANNOTATION_CONTAINERD_NAME, "docker.io/library/app:1")],
                b"b",
            )?,
        ];
        let result = names(&roots, None);
        assert!(
            matches!(result, Err(ImportError::NameConflict { .. })),
            "{result:?}"
        );
        Ok(())
    }
}
