//! Flattening small layers built in memory: each case lists the layers,
//! base first, and the exact entries and drops of the flat tree.

use std::io::{self, Read};
use std::sync::Arc;

use super::*;

/// One entry of a test layer.
#[derive(Clone, Copy)]
enum E {
    /// A regular file and its content.
    F(&'static str, &'static str),
    /// A directory.
    D(&'static str),
    /// A symlink and its target.
    S(&'static str, &'static str),
    /// A hard link and its target.
    H(&'static str, &'static str),
    /// A character device.
    C(&'static str, u32, u32),
    /// A FIFO.
    P(&'static str),
    /// A file with one extended attribute.
    X(&'static str, &'static str, &'static str),
}

/// Builds an uncompressed layer; names are written as given, hostile ones
/// included.
fn layer(entries: &[E]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let (name, typeflag, link, data) = match *entry {
            E::F(name, data) => (name, b'0', "", data),
            E::D(name) => (name, b'5', "", ""),
            E::S(name, target) => (name, b'2', target, ""),
            E::H(name, target) => (name, b'1', target, ""),
            E::C(name, ..) => (name, b'3', "", ""),
            E::P(name) => (name, b'6', "", ""),
            E::X(name, key, value) => {
                let key = format!("SCHILY.xattr.{key}");
                builder
                    .append_pax_extensions([(key.as_str(), value.as_bytes())])
                    .unwrap();
                (name, b'0', "", "x")
            }
        };
        let mut header = tar::Header::new_gnu();
        header.set_mode(if typeflag == b'5' { 0o755 } else { 0o644 });
        header.set_mtime(1_700_000_000);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_size(data.len() as u64);
        header.set_entry_type(tar::EntryType::new(typeflag));
        if let E::C(_, major, minor) = *entry {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        }
        if name.len() > 100 {
            builder
                .append_data(&mut header, name, data.as_bytes())
                .unwrap();
            continue;
        }
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_cksum();
        builder.append(&header, data.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

struct Memory(Digest, Vec<u8>);

impl LayerSource for Memory {
    fn digest(&self) -> &Digest {
        &self.0
    }

    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::Cursor::new(self.1.clone())))
    }
}

/// Flattens the layers (base first); returns the entries, described, in
/// stream order, and the drops as `path: reason`.
fn flatten_layers(layers: &[&[E]]) -> (Vec<String>, Vec<String>) {
    let sources: Vec<Arc<dyn LayerSource>> = layers
        .iter()
        .enumerate()
        .map(|(i, entries)| {
            let digest = Digest::sha256_of(&[i as u8]);
            Arc::new(Memory(digest, layer(entries))) as Arc<dyn LayerSource>
        })
        .collect();
    let mut writer = TarWriter::new(Vec::new());
    let dropped = flatten(&sources, &mut writer, 1).unwrap();
    let archive = writer.finish().unwrap();
    let dropped = dropped
        .iter()
        .map(|d| format!("{}: {}", d.path, short_reason(&d.reason)))
        .collect();
    (describe(&archive), dropped)
}

fn short_reason(reason: &DropReason) -> String {
    match reason {
        DropReason::AbsolutePath => "absolute".into(),
        DropReason::ParentComponent => "parent".into(),
        DropReason::EmptyWhiteout => "empty whiteout".into(),
        DropReason::ThroughNonDirectory { parent } => format!("through {parent}"),
        DropReason::HasEntriesBeneath { child, .. } => format!("beneath {child}"),
        DropReason::UnsafeLinkTarget { target } => format!("unsafe link {target}"),
        DropReason::DanglingHardLink { target } => format!("dangling {target}"),
        DropReason::HardLinkToDirectory { target } => format!("link to dir {target}"),
        DropReason::UnsupportedType(kind) => format!("type {kind}"),
        DropReason::RootNotDirectory => "root".into(),
    }
}

/// Describes each entry of an archive in one line, and checks that every
/// hard link comes after its target.
fn describe(archive: &[u8]) -> Vec<String> {
    let mut reader = tar::Archive::new(archive);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap())
            .unwrap_or_default();
        let header = entry.header().clone();
        let xattrs: Vec<String> = entry
            .pax_extensions()
            .unwrap()
            .map(|records| {
                records
                    .map(|r| r.unwrap())
                    .filter_map(|r| {
                        let key = r.key().unwrap().strip_prefix("SCHILY.xattr.")?;
                        Some(format!(" [{key}={}]", r.value().unwrap()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut data = String::new();
        entry.read_to_string(&mut data).unwrap();
        let line = match header.entry_type().as_byte() {
            b'0' => format!("f {path}={data}{}", xattrs.concat()),
            b'5' => format!("d {path}"),
            b'2' => format!("s {path}->{link}"),
            b'1' => {
                assert!(seen.contains(&link), "`{path}` links to `{link}` before it");
                format!("h {path}->{link}")
            }
            b'3' => format!(
                "c {path} {}:{}",
                header.device_major().unwrap().unwrap(),
                header.device_minor().unwrap().unwrap()
            ),
            b'6' => format!("p {path}"),
            other => format!("? {path} {}", other as char),
        };
        seen.insert(path);
        out.push(line);
    }
    out
}

/// A case: its name, the layers (base first), the entries and the drops.
type Case<'a> = (&'a str, &'a [&'a [E]], &'a [&'a str], &'a [&'a str]);

#[test]
fn writes_every_directory_before_what_it_holds() {
    use E::*;
    // The upper layer lacks the directories of its file; the base layer's
    // come after it in the stream, and still count.
    let (entries, drops) = flatten_layers(&[
        &[D("usr/"), D("usr/bin/"), F("usr/bin/sh", "sh")],
        &[F("usr/bin/app", "app"), F("etc/conf", "c")],
    ]);
    assert!(drops.is_empty(), "{drops:?}");
    assert_eq!(
        entries,
        [
            "d usr/",
            "d usr/bin/",
            "f usr/bin/app=app",
            "d etc/",
            "f etc/conf=c",
            "d usr/",
            "d usr/bin/",
            "f usr/bin/sh=sh",
        ]
    );
}

#[test]
fn applies_layers_as_bottom_up_extraction_would() {
    use E::*;
    let long = "long/".repeat(30) + "name";
    let long: &'static str = Box::leak(long.into_boxed_str());
    let long_file = format!("f {long}=deep");
    // Layers without directory entries get stand-ins, parents first.
    let long_dirs: Vec<String> = (1..=30)
        .map(|n| format!("d {}", "long/".repeat(n)))
        .collect();
    let mut long_expected: Vec<&str> = long_dirs.iter().map(String::as_str).collect();
    long_expected.extend([
        long_file.as_str(),
        "d zoneinfo/",
        "d zoneinfo/Amérique/",
        "f zoneinfo/Amérique/Bogotá=co",
    ]);
    let cases: &[Case] = &[
        (
            "upper files replace lower ones and directories merge",
            &[
                &[D("etc/"), F("etc/a", "old"), F("etc/b", "b")],
                &[D("etc/"), F("etc/a", "new")],
            ],
            &["d etc/", "f etc/a=new", "f etc/b=b"],
            &[],
        ),
        (
            "whiteouts remove files and directories with their contents",
            &[
                &[F("a", "1"), D("d/"), F("d/x", "2"), F("keep", "3")],
                &[F(".wh.a", ""), F("./.wh.d", "")],
            ],
            &["f keep=3"],
            &[],
        ),
        (
            "an opaque directory hides the lower contents and keeps its own",
            &[
                &[D("d/"), F("d/old", "o"), F("e", "e")],
                &[D("d/"), F("d/.wh..wh..opq", ""), F("d/new", "n")],
            ],
            &["d d/", "f d/new=n", "f e=e"],
            &[],
        ),
        (
            "a hard link reaches a file of a lower layer",
            &[&[F("a", "x")], &[H("b", "a")]],
            &["f a=x", "h b->a"],
            &[],
        ),
        (
            "a hard link keeps the content its layer saw when an upper layer replaces the target",
            &[&[F("a", "old")], &[H("b", "a")], &[F("a", "new")]],
            &["f a=new", "f b=old"],
            &[],
        ),
        (
            "a hard link keeps its own layer's content replaced above (read again)",
            &[&[F("a", "old"), H("b", "a")], &[F("a", "new")]],
            &["f a=new", "f b=old"],
            &[],
        ),
        (
            "links of several layers share one lower file",
            &[&[F("a", "x")], &[H("b", "a")], &[H("c", "b")]],
            &["f a=x", "h b->a", "h c->a"],
            &[],
        ),
        (
            "an upper link joins a lower link whose content its layer passed over",
            &[
                &[F("a", "old"), H("b", "a")],
                &[H("c", "b")],
                &[F("a", "new")],
            ],
            &["f a=new", "f b=old", "h c->b"],
            &[],
        ),
        (
            "a link to a file a middle layer removed is dropped",
            &[&[F("a", "x")], &[F(".wh.a", "")], &[H("b", "a")]],
            &[],
            &["b: dangling a"],
        ),
        (
            "a link to nothing or to a directory is dropped",
            &[&[D("d/"), H("x", "nothing"), H("y", "d")]],
            &["d d/"],
            &["x: dangling nothing", "y: link to dir d"],
        ),
        (
            "an upper symlink hides a lower directory",
            &[&[D("lib/"), F("lib/x", "1")], &[S("lib", "usr/lib")]],
            &["s lib->usr/lib"],
            &[],
        ),
        (
            "a lower symlink beneath upper entries stays a directory",
            &[&[S("evil", "/etc")], &[F("evil/passwd", "p")]],
            &["d evil/", "f evil/passwd=p"],
            &["evil: beneath evil/passwd"],
        ),
        (
            "an entry through its own layer's symlink is dropped",
            &[&[S("evil", "/etc"), F("evil/passwd", "p")]],
            &["s evil->/etc"],
            &["evil/passwd: through evil"],
        ),
        (
            "names that leave the root are dropped",
            &[&[
                F("../escape", "x"),
                F("/abs", "y"),
                F("a/../../b", "z"),
                F("ok", "1"),
                H("link", "../../etc/passwd"),
                F("d/.wh.", ""),
            ]],
            &["f ok=1"],
            &[
                "../escape: parent",
                "/abs: absolute",
                "a/../../b: parent",
                "link: unsafe link ../../etc/passwd",
                "d/.wh.: empty whiteout",
            ],
        ),
        (
            "long and non-ASCII names survive",
            &[&[F(long, "deep"), F("zoneinfo/Amérique/Bogotá", "co")]],
            &long_expected,
            &[],
        ),
        (
            "devices, FIFOs, extended attributes and the root are kept",
            &[&[
                D("./"),
                C("dev/null", 1, 3),
                P("run/fifo"),
                X("bin/ping", "user.k", "v"),
            ]],
            &[
                "d ./",
                "d dev/",
                "c dev/null 1:3",
                "d run/",
                "p run/fifo",
                "d bin/",
                "f bin/ping=x [user.k=v]",
            ],
            &[],
        ),
    ];
    for (name, layers, expected, dropped) in cases {
        let (entries, drops) = flatten_layers(layers);
        let mut sorted = entries.clone();
        sorted.sort();
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(sorted, expected, "{name}: {entries:?}");
        let mut drops = drops;
        drops.sort();
        let mut dropped = dropped.to_vec();
        dropped.sort();
        assert_eq!(drops, dropped, "{name}");
    }
}

#[test]
fn writes_upper_layers_first_and_links_after_their_content() {
    let (entries, _) = flatten_layers(&[
        &[E::D("usr/"), E::F("usr/a", "x")],
        &[E::H("usr/b", "usr/a"), E::F("top", "t")],
    ]);
    assert_eq!(
        entries,
        ["f top=t", "d usr/", "f usr/a=x", "h usr/b->usr/a"]
    );
}

#[test]
fn fails_naming_the_layer_when_one_is_not_a_tar() {
    let sources: Vec<Arc<dyn LayerSource>> = vec![Arc::new(Memory(
        Digest::sha256_of(b"bad"),
        vec![b'x'; 1024],
    ))];
    let mut writer = TarWriter::new(Vec::new());
    let err = flatten(&sources, &mut writer, 1).unwrap_err();
    assert!(
        err.to_string()
            .contains(&Digest::sha256_of(b"bad").to_string()),
        "{err}"
    );
}
