//! Layers that test a flattener: whiteouts, opaque directories, hard links
//! within and across layers, symlinks, long and non-ASCII names, device
//! nodes, FIFOs, extended attributes, zstd and uncompressed layers, and
//! hostile names written verbatim. Also reads a flat tar, or a directory
//! that another tool unpacked, into one comparable tree.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use lkcache::{Digest, media_type};

use super::TestResult;
use super::images::{Blob, Layer, Style};

/// How a layer is compressed, and what its media type says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Gzip, labelled as gzip.
    Gzip,
    /// Zstandard, labelled as zstd (OCI only).
    Zstd,
    /// A plain tar, labelled as a plain tar.
    Plain,
    /// Gzip, but labelled as a plain tar: readers must sniff.
    GzipLabelledPlain,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
struct Spec {
    name: Vec<u8>,
    typeflag: u8,
    link: Vec<u8>,
    content: Vec<u8>,
    mode: u32,
    owner: (u64, u64),
    device: (u32, u32),
    pax: Vec<(String, Vec<u8>)>,
}

/// Builds a layer entry by entry.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: Vec<Spec>,
}

impl LayerBuilder {
    /// Starts an empty layer.
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    fn push(mut self, name: &[u8], typeflag: u8, link: &[u8], content: &[u8], mode: u32) -> Self {
        self.entries.push(Spec {
            name: name.to_vec(),
            typeflag,
            link: link.to_vec(),
            content: content.to_vec(),
            mode,
            owner: (0, 0),
            device: (0, 0),
            pax: Vec::new(),
        });
        self
    }

    fn last(&mut self) -> &mut Spec {
        self.entries.last_mut().expect("an entry was added")
    }

    /// Adds a directory (`path/`).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(format!("{path}/").as_bytes(), b'5', b"", b"", mode)
    }

    /// Adds a regular file.
    pub fn file(self, path: &str, content: &[u8]) -> Self {
        self.push(path.as_bytes(), b'0', b"", content, 0o644)
    }

    /// Adds a regular file with a mode.
    pub fn file_mode(self, path: &str, content: &[u8], mode: u32) -> Self {
        self.push(path.as_bytes(), b'0', b"", content, mode)
    }

    /// Gives the last entry an owner.
    pub fn owned(mut self, uid: u64, gid: u64) -> Self {
        self.last().owner = (uid, gid);
        self
    }

    /// Gives the last entry an extended attribute (a PAX `SCHILY.xattr.`
    /// record).
    pub fn xattr(mut self, key: &str, value: &[u8]) -> Self {
        let key = format!("SCHILY.xattr.{key}");
        self.last().pax.push((key, value.to_vec()));
        self
    }

    /// Adds a symlink.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path.as_bytes(), b'2', target.as_bytes(), b"", 0o777)
    }

    /// Adds a hard link to `target`, a path of this layer or a lower one.
    pub fn hard_link(self, path: &str, target: &str) -> Self {
        self.push(path.as_bytes(), b'1', target.as_bytes(), b"", 0o644)
    }

    /// Adds a whiteout that removes `path` from the layers below.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let whiteout = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.push(whiteout.as_bytes(), b'0', b"", b"", 0o644)
    }

    /// Makes `dir` opaque: the layers below lose its contents.
    pub fn opaque(self, dir: &str) -> Self {
        self.push(
            format!("{dir}/.wh..wh..opq").as_bytes(),
            b'0',
            b"",
            b"",
            0o644,
        )
    }

    /// Adds a character device.
    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> Self {
        self = self.push(path.as_bytes(), b'3', b"", b"", 0o666);
        self.last().device = (major, minor);
        self
    }

    /// Adds a FIFO.
    pub fn fifo(self, path: &str) -> Self {
        self.push(path.as_bytes(), b'6', b"", b"", 0o600)
    }

    /// Adds a regular file whose name over 100 bytes goes in a PAX `path`
    /// record (GNU long names come from [`LayerBuilder::file`]).
    pub fn pax_long_file(mut self, path: &str, content: &[u8]) -> Self {
        self = self.file(path, content);
        let path = path.as_bytes().to_vec();
        self.last().pax.push(("path".to_string(), path));
        self
    }

    /// Adds an entry whose name (and link target) are written exactly as
    /// given, however hostile.
    pub fn raw(self, name: &[u8], typeflag: u8, link: &[u8], content: &[u8]) -> Self {
        self.push(name, typeflag, link, content, 0o644)
    }

    /// Writes the layer as a tar, compressed as asked, labelled for `style`.
    pub fn build(&self, style: Style, compression: Compression) -> TestResult<Layer> {
        let tar = self.tar()?;
        let (bytes, media_type) = match compression {
            Compression::Gzip | Compression::GzipLabelledPlain => {
                let mut gzip =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gzip.write_all(&tar)?;
                let media_type = match (compression, style) {
                    (Compression::Gzip, Style::Oci) => media_type::OCI_LAYER_GZIP,
                    (Compression::Gzip, Style::Docker) => media_type::DOCKER_LAYER_GZIP,
                    (_, Style::Oci) => media_type::OCI_LAYER_TAR,
                    (_, Style::Docker) => DOCKER_LAYER_TAR,
                };
                (gzip.finish()?, media_type)
            }
            Compression::Zstd => (zstd::encode_all(&tar[..], 3)?, media_type::OCI_LAYER_ZSTD),
            Compression::Plain => {
                let media_type = match style {
                    Style::Oci => media_type::OCI_LAYER_TAR,
                    Style::Docker => DOCKER_LAYER_TAR,
                };
                (tar.clone(), media_type)
            }
        };
        Ok(Layer {
            blob: Blob::new(media_type, bytes),
            diff_id: Digest::sha256_of(&tar),
        })
    }

    fn tar(&self) -> TestResult<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for Spec {
            name,
            typeflag,
            link,
            content,
            mode,
            owner,
            device,
            pax,
        } in &self.entries
        {
            if !pax.is_empty() {
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
            }
            let mut header = tar::Header::new_gnu();
            header.set_mode(*mode);
            header.set_uid(owner.0);
            header.set_gid(owner.1);
            header.set_mtime(1_700_000_000);
            header.set_size(content.len() as u64);
            header.set_entry_type(tar::EntryType::new(*typeflag));
            if matches!(typeflag, b'3' | b'4') {
                header.set_device_major(device.0)?;
                header.set_device_minor(device.1)?;
            }
            let has_pax_path = pax.iter().any(|(k, _)| k == "path");
            if name.len() > 100 && !has_pax_path {
                // GNU long name, written by the tar crate.
                let path = std::str::from_utf8(name)?;
                builder.append_data(&mut header, path, content.as_slice())?;
                continue;
            }
            let old = header.as_old_mut();
            let n = name.len().min(100);
            old.name[..n].copy_from_slice(&name[..n]);
            old.linkname[..link.len()].copy_from_slice(link);
            header.set_cksum();
            builder.append(&header, content.as_slice())?;
        }
        Ok(builder.into_inner()?)
    }
}

/// A name over 100 bytes, written as a GNU long name.
pub fn gnu_long_name() -> String {
    format!("long/{}", "g".repeat(120))
}

/// A directory name over 100 bytes, with a file in it.
pub fn long_dir_name() -> String {
    format!("long/{}", "d".repeat(110))
}

/// A name over 100 bytes, written in a PAX `path` record.
pub fn pax_long_name() -> String {
    format!("long/{}", "p".repeat(130))
}

/// Four layers, base first, with every case a flattener must get right:
///
/// 0. (gzip) the base: directories, owners and modes, a file hard-linked
///    twice in the layer (`bin/tool`, `etc/shadow-a`), a symlink, a device
///    node, a FIFO, long GNU and PAX names, non-ASCII names, an extended
///    attribute;
/// 1. (zstd) a whiteout (`etc/hosts`), an opaque directory (`opt/old`), a
///    replaced file, and a hard link to a file of layer 0 (`usr/bin-link`);
/// 2. (plain tar) replaces `bin/tool` and `etc/shadow-a`, so that their
///    other links keep the old content;
/// 3. (gzip labelled plain tar) a whiteout of the FIFO, a new file.
///
/// Without `odd_compressions`, layer 1 is gzip and layer 3 gzip labelled
/// as such, for tools that read neither zstd nor mislabelled layers
/// (umoci 0.4).
pub fn special_layers(style: Style, odd_compressions: bool) -> TestResult<Vec<Layer>> {
    let (second, fourth) = if odd_compressions && style == Style::Oci {
        (Compression::Zstd, Compression::GzipLabelledPlain)
    } else {
        (Compression::Gzip, Compression::Gzip)
    };
    let base = LayerBuilder::new()
        .dir(".", 0o755)
        .dir("bin", 0o755)
        .file_mode("bin/tool", b"tool v1", 0o755)
        .hard_link("bin/tool2", "bin/tool")
        .file_mode("bin/ping", b"ping", 0o4755)
        .xattr("user.lkcache", b"caps")
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0")
        .file("etc/hosts", b"127.0.0.1 localhost")
        .file_mode("etc/shadow-a", b"shadow v1", 0o640)
        .owned(0, 42)
        .hard_link("etc/shadow-b", "etc/shadow-a")
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .file("usr/lib/liba.so", b"liba")
        .symlink("lib", "usr/lib")
        .dir("opt", 0o755)
        .dir("opt/old", 0o755)
        .file("opt/old/gone", b"gone")
        .dir("data", 0o700)
        .owned(1000, 1000)
        .file_mode("data/secret", b"secret", 0o600)
        .owned(1000, 1000)
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .dir("run", 0o755)
        .fifo("run/fifo")
        .dir("long", 0o755)
        .file(&gnu_long_name(), b"gnu")
        .dir(&long_dir_name(), 0o755)
        .file(&format!("{}/file", long_dir_name()), b"in a long dir")
        .pax_long_file(&pax_long_name(), b"pax")
        .dir("usr/share", 0o755)
        .dir("usr/share/zoneinfo", 0o755)
        .dir("usr/share/zoneinfo/Amérique", 0o755)
        .file("usr/share/zoneinfo/Amérique/Bogotá", b"co");
    let changes = LayerBuilder::new()
        .dir("etc", 0o755)
        .whiteout("etc/hosts")
        .file("etc/passwd", b"root:x:0:0:new")
        .dir("opt", 0o755)
        .dir("opt/old", 0o755)
        .opaque("opt/old")
        .file("opt/old/fresh", b"fresh")
        .dir("usr", 0o755)
        .hard_link("usr/bin-link", "bin/tool");
    let replacements = LayerBuilder::new()
        .dir("bin", 0o755)
        .file_mode("bin/tool", b"tool v2", 0o755)
        .dir("etc", 0o755)
        .file_mode("etc/shadow-a", b"shadow v2", 0o640)
        .owned(0, 42);
    // Without an entry for `data`: the base layer's (mode 0700, owner
    // 1000) comes after `data/new` in a top-down read.
    let last = LayerBuilder::new()
        .dir("run", 0o755)
        .whiteout("run/fifo")
        .file("data/new", b"new")
        .owned(1000, 1000);
    Ok(vec![
        base.build(style, Compression::Gzip)?,
        changes.build(style, second)?,
        replacements.build(style, Compression::Plain)?,
        last.build(style, fourth)?,
    ])
}

/// Two layers that try to leave the root: the base plants `evil -> /etc`;
/// the top writes `evil/passwd` through it, and has `..` names, absolute
/// names, a hard link out of the root and a symlink it then writes through.
pub fn hostile_layers() -> TestResult<Vec<Layer>> {
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .symlink("evil", "/etc")
        .file("ok", b"fine");
    let top = LayerBuilder::new()
        .file("evil/passwd", b"owned")
        .raw(b"../../escape", b'0', b"", b"out")
        .raw(b"/abs/file", b'0', b"", b"abs")
        .raw(b"a/../../b", b'0', b"", b"up")
        .raw(b"hl", b'1', b"../../etc/shadow", b"")
        .symlink("sneaky", "/etc")
        .file("sneaky/x", b"through");
    Ok(vec![
        base.build(Style::Oci, Compression::Gzip)?,
        top.build(Style::Oci, Compression::Gzip)?,
    ])
}

/// Docker's media type of an uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// One path of a root filesystem, as both a tar and a directory show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f` file, `d` directory, `l` symlink, `c`/`b` device, `p` FIFO.
    pub kind: char,
    /// The permission bits (`0o7777`).
    pub mode: u32,
    /// The owner, `(uid, gid)`.
    pub owner: (u64, u64),
    /// The size of a file's content.
    pub size: u64,
    /// A symlink's target.
    pub link: String,
    /// The SHA-256 of a file's content.
    pub content: String,
    /// A device's numbers.
    pub device: (u32, u32),
}

/// A root filesystem: every path but the root, and the groups of paths
/// that are hard links to one another.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    pub link_groups: BTreeSet<BTreeSet<String>>,
}

impl Tree {
    /// Reads a flat tar. A path that appears twice is an error: a flat
    /// tree has each path once. The exception is a directory given again,
    /// whose later entry sets its metadata, as extractors apply it (the
    /// flattener writes a stand-in for a directory a lower layer gives
    /// after the entries beneath it).
    pub fn of_tar(bytes: &[u8]) -> TestResult<Tree> {
        let mut tree = Tree::default();
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut archive = tar::Archive::new(bytes);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = String::from_utf8(entry.path_bytes().into_owned())?;
            let path = raw
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if path.is_empty() || path == "." {
                continue;
            }
            let header = entry.header().clone();
            let kind = match header.entry_type().as_byte() {
                b'0' => 'f',
                b'5' => 'd',
                b'2' => 'l',
                b'3' => 'c',
                b'4' => 'b',
                b'6' => 'p',
                b'1' => {
                    let target = String::from_utf8(
                        entry
                            .link_name_bytes()
                            .ok_or("a link without target")?
                            .into_owned(),
                    )?;
                    let node = tree
                        .nodes
                        .get(&target)
                        .ok_or_else(|| format!("`{path}` links to `{target}` before it"))?
                        .clone();
                    groups
                        .entry(target.clone())
                        .or_insert_with(|| BTreeSet::from([target]))
                        .insert(path.clone());
                    insert_once(&mut tree.nodes, path, node)?;
                    continue;
                }
                other => return Err(format!("`{path}` has tar type {}", other as char).into()),
            };
            let link = match kind {
                'l' => String::from_utf8(entry.link_name_bytes().unwrap_or_default().into_owned())?,
                _ => String::new(),
            };
            let device = match kind {
                'c' | 'b' => (
                    header.device_major()?.unwrap_or(0),
                    header.device_minor()?.unwrap_or(0),
                ),
                _ => (0, 0),
            };
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            let node = Node {
                kind,
                mode: header.mode()? & 0o7777,
                owner: (header.uid()?, header.gid()?),
                size: if kind == 'f' { content.len() as u64 } else { 0 },
                link,
                content: if kind == 'f' {
                    Digest::sha256_of(&content).to_string()
                } else {
                    String::new()
                },
                device,
            };
            insert_once(&mut tree.nodes, path, node)?;
        }
        tree.link_groups = groups.into_values().collect();
        Ok(tree)
    }

    /// Reads a directory tree, such as the `rootfs` of a bundle that
    /// `umoci unpack` made.
    pub fn of_dir(root: &Path) -> TestResult<Tree> {
        let mut tree = Tree::default();
        let mut inodes: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let full = entry.path();
                let path = full
                    .strip_prefix(root)?
                    .to_str()
                    .ok_or("a non-UTF-8 name")?
                    .to_string();
                let meta = std::fs::symlink_metadata(&full)?;
                let file_type = meta.file_type();
                let kind = if file_type.is_dir() {
                    pending.push(full.clone());
                    'd'
                } else if file_type.is_symlink() {
                    'l'
                } else if file_type.is_char_device() {
                    'c'
                } else if file_type.is_block_device() {
                    'b'
                } else if file_type.is_fifo() {
                    'p'
                } else {
                    'f'
                };
                if kind != 'd' && meta.nlink() > 1 {
                    inodes
                        .entry((meta.dev(), meta.ino()))
                        .or_default()
                        .insert(path.clone());
                }
                let rdev = meta.rdev();
                let node = Node {
                    kind,
                    mode: meta.mode() & 0o7777,
                    owner: (meta.uid() as u64, meta.gid() as u64),
                    size: if kind == 'f' { meta.len() } else { 0 },
                    link: match kind {
                        'l' => std::fs::read_link(&full)?
                            .to_str()
                            .ok_or("a non-UTF-8 link")?
                            .to_string(),
                        _ => String::new(),
                    },
                    content: if kind == 'f' {
                        Digest::sha256_of(&std::fs::read(&full)?).to_string()
                    } else {
                        String::new()
                    },
                    device: match kind {
                        'c' | 'b' => (
                            (((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff)) as u32,
                            ((rdev & 0xff) | ((rdev >> 12) & !0xff)) as u32,
                        ),
                        _ => (0, 0),
                    },
                };
                tree.nodes.insert(path, node);
            }
        }
        tree.link_groups = inodes.into_values().filter(|g| g.len() > 1).collect();
        Ok(tree)
    }

    /// Lists every path whose node differs between two trees, or that only
    /// one has.
    pub fn differences(&self, other: &Tree) -> Vec<String> {
        let paths: BTreeSet<&String> = self.nodes.keys().chain(other.nodes.keys()).collect();
        let mut out: Vec<String> = paths
            .into_iter()
            .filter_map(|path| {
                let (mine, theirs) = (self.nodes.get(path), other.nodes.get(path));
                (mine != theirs).then(|| format!("{path}: {mine:?} != {theirs:?}"))
            })
            .collect();
        if self.link_groups != other.link_groups {
            out.push(format!(
                "hard links: {:?} != {:?}",
                self.link_groups, other.link_groups
            ));
        }
        out
    }
}

fn insert_once(nodes: &mut BTreeMap<String, Node>, path: String, node: Node) -> TestResult<()> {
    let is_dir = node.kind == 'd';
    match nodes.insert(path.clone(), node) {
        Some(earlier) if !(is_dir && earlier.kind == 'd') => {
            Err(format!("`{path}` appears twice in the flat tar").into())
        }
        _ => Ok(()),
    }
}
