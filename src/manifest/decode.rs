//! One-pass decoding of the documents that keep the fields lkcache does
//! not know.
//!
//! `#[serde(flatten)]` keeps them too, but it buffers each document whole in
//! serde's generic form and decodes it a second time; for an index that
//! names thousands of descriptors, every one of them was decoded twice. The
//! visitors here take the known fields as they come and put the others in
//! `extra`, and refuse missing and repeated fields as the derived code does.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{Descriptor, ImageIndex};
use crate::digest::Digest;
use crate::platform::Platform;

impl<'de> Deserialize<'de> for Descriptor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Descriptor, D::Error> {
        deserializer.deserialize_map(DescriptorVisitor)
    }
}

impl<'de> Deserialize<'de> for ImageIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ImageIndex, D::Error> {
        deserializer.deserialize_map(IndexVisitor)
    }
}

struct DescriptorVisitor;

impl<'de> Visitor<'de> for DescriptorVisitor {
    type Value = Descriptor;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a descriptor object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Descriptor, A::Error> {
        let mut media_type: Option<String> = None;
        let mut digest: Option<Digest> = None;
        let mut size: Option<SpecSize> = None;
        let mut platform: Option<Option<Platform>> = None;
        let mut annotations: Option<BTreeMap<String, String>> = None;
        let mut extra = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "mediaType" => take_once(&mut map, &mut media_type, "mediaType")?,
                "digest" => take_once(&mut map, &mut digest, "digest")?,
                "size" => take_once(&mut map, &mut size, "size")?,
                "platform" => take_once(&mut map, &mut platform, "platform")?,
                "annotations" => take_once(&mut map, &mut annotations, "annotations")?,
                _ => {
                    extra.insert(key.into_owned(), map.next_value()?);
                }
            }
        }
        Ok(Descriptor {
            media_type: media_type.ok_or_else(|| de::Error::missing_field("mediaType"))?,
            digest: digest.ok_or_else(|| de::Error::missing_field("digest"))?,
            size: size.ok_or_else(|| de::Error::missing_field("size"))?.0,
            platform: platform.flatten(),
            annotations: annotations.unwrap_or_default(),
            extra,
        })
    }
}

struct IndexVisitor;

impl<'de> Visitor<'de> for IndexVisitor {
    type Value = ImageIndex;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an image index object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ImageIndex, A::Error> {
        let mut schema_version: Option<u32> = None;
        let mut media_type: Option<Option<String>> = None;
        let mut manifests: Option<Vec<Descriptor>> = None;
        let mut extra = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "schemaVersion" => take_once(&mut map, &mut schema_version, "schemaVersion")?,
                "mediaType" => take_once(&mut map, &mut media_type, "mediaType")?,
                "manifests" => take_once(&mut map, &mut manifests, "manifests")?,
                _ => {
                    extra.insert(key.into_owned(), map.next_value()?);
                }
            }
        }
        Ok(ImageIndex {
            schema_version: schema_version
                .ok_or_else(|| de::Error::missing_field("schemaVersion"))?,
            media_type: media_type.flatten(),
            manifests: manifests.unwrap_or_default(),
            extra,
        })
    }
}

/// Decodes the next value into `slot`, refusing a field given twice.
fn take_once<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    field: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::duplicate_field(field));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// A field name, borrowed from the input unless it had to be unescaped.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_string())))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key)))
    }
}

/// A descriptor size, which the image spec makes an int64: larger values
/// come only from broken or hostile documents.
struct SpecSize(u64);

impl<'de> Deserialize<'de> for SpecSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SpecSize, D::Error> {
        let size = u64::deserialize(deserializer)?;
        if size > i64::MAX as u64 {
            return Err(de::Error::custom(format!(
                "size {size} is larger than an int64"
            )));
        }
        Ok(SpecSize(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type;

    const DIGEST: &str = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    fn descriptor_json(fields: &str) -> String {
        format!(
            r#"{{"mediaType":"{}","digest":"{DIGEST}","size":3{fields}}}"#,
            media_type::OCI_MANIFEST
        )
    }

    #[test]
    fn keeps_unknown_fields_of_an_index_and_its_descriptors() {
        let text = format!(
            r#"{{"schemaVersion":2,"subject":{{"a":[1,2]}},"manifests":[{}],"zz":null}}"#,
            descriptor_json(r#","artifactType":"x/y","annotations":{"k":"v"}"#)
        );
        let index: ImageIndex = serde_json::from_str(&text).unwrap();
        assert_eq!(index.media_type, None);
        assert_eq!(index.extra["subject"], serde_json::json!({"a": [1, 2]}));
        assert!(index.extra["zz"].is_null());
        let entry = &index.manifests[0];
        assert_eq!(entry.annotations["k"], "v");
        assert_eq!(entry.extra["artifactType"], "x/y");

        let again: serde_json::Value = serde_json::to_value(&index).unwrap();
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn reads_escaped_field_names_and_null_optionals() {
        let text = format!(
            r#"{{"schema\u0056ersion":2,"mediaType":null,"manifests":[{}]}}"#,
            descriptor_json(r#","platform":null"#)
        );
        let index: ImageIndex = serde_json::from_str(&text).unwrap();
        assert_eq!(index.schema_version, 2);
        assert_eq!(index.manifests[0].platform, None);
        assert!(index.extra.is_empty());
    }

    #[test]
    fn refuses_missing_and_repeated_fields() {
        let cases = [
            (
                r#"{"digest":"D","size":3}"#.replace('D', DIGEST),
                "missing field `mediaType`",
            ),
            (
                r#"{"mediaType":"m","size":3}"#.to_string(),
                "missing field `digest`",
            ),
            (
                r#"{"mediaType":"m","digest":"D"}"#.replace('D', DIGEST),
                "missing field `size`",
            ),
            (descriptor_json(r#","size":4"#), "duplicate field `size`"),
            (
                descriptor_json(r#","annotations":{},"annotations":{}"#),
                "duplicate field `annotations`",
            ),
            ("[]".to_string(), "expected a descriptor object"),
        ];
        for (text, expected) in cases {
            let err = serde_json::from_str::<Descriptor>(&text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let err = serde_json::from_str::<ImageIndex>(r#"{"manifests":[]}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing field `schemaVersion`"),
            "{err}"
        );
    }
}
