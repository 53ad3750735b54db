//! Writes a large, realistic test image as an OCI image layout, for benchmarks
//! such as `bench/cold-pull`.
//!
//! ```text
//! cargo run --release --example make_image -- OUT_DIR
//!     [--layers N] [--layer-mib M] [--platform linux/amd64]
//! ```
//!
//! `OUT_DIR` receives `oci-layout`, `index.json` (one manifest, named `latest`)
//! and `blobs/sha256/`: one single-platform image of N gzip-compressed tar
//! layers (default 5) of about M MiB compressed each (default 45), its config
//! and its OCI manifest. Layers hold many text-like files of varied sizes,
//! made of pseudo-random words, so they compress about as well as real files
//! (about 2.7x with gzip's default level). Every layer is deterministic from
//! its own seed, so one build always gives the same digests; the compressed
//! bytes, and the file at which a layer reaches its size, depend on flate2's
//! deflate backend. Layers stream to disk through a hasher and are never
//! held in memory whole.

use std::error::Error;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use lkcache::digest::{Algorithm, Digest, Hasher};
use lkcache::media_type::{self, OCI_LAYER_GZIP};
use serde_json::{Value, json};
use tempfile::NamedTempFile;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const USAGE: &str =
    "usage: make_image OUT_DIR [--layers N] [--layer-mib M] [--platform OS/ARCH[/VARIANT]]";
/// The annotation that names an image in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// A fixed creation time for the config, so that it is reproducible.
const CREATED: &str = "2024-01-01T00:00:00Z";
/// A fixed modification time, so that the tar streams are reproducible.
const MTIME: u64 = 1_700_000_000;
/// How many files go into one directory of a layer.
const FILES_PER_DIR: usize = 64;

/// The command line.
struct Options {
    out: PathBuf,
    layers: usize,
    layer_mib: u64,
    platform: Vec<String>,
}

/// A layer written to `blobs/sha256/`.
struct Layer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    uncompressed: u64,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("make_image: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let options = parse_args(std::env::args().skip(1))?;
    let blobs = options.out.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;
    let vocabulary = vocabulary();
    let target = options.layer_mib * 1024 * 1024;
    let layers = write_layers(&blobs, options.layers, target, &vocabulary)?;
    let config = write_blob(&blobs, &config_json(&options.platform, &layers))?;
    let manifest = manifest_json(config, &layers);
    let (manifest_digest, manifest_size) = write_blob(&blobs, &manifest)?;
    write_layout(&options, &manifest_digest, manifest_size)?;
    let compressed: u64 = layers.iter().map(|l| l.size).sum();
    let uncompressed: u64 = layers.iter().map(|l| l.uncompressed).sum();
    println!(
        "{}: {} layers, {compressed} bytes compressed ({:.1} MB), {uncompressed} bytes \
         uncompressed, gzip ratio {:.2}, manifest {manifest_digest}",
        options.out.display(),
        layers.len(),
        compressed as f64 / 1e6,
        uncompressed as f64 / compressed as f64,
    );
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        out: PathBuf::new(),
        layers: 5,
        layer_mib: 45,
        platform: vec!["linux".into(), "amd64".into()],
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--layers" => options.layers = value()?.parse()?,
            "--layer-mib" => options.layer_mib = value()?.parse()?,
            "--platform" => options.platform = value()?.split('/').map(String::from).collect(),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if arg.starts_with('-') || !options.out.as_os_str().is_empty() => {
                return Err(format!("unexpected argument `{arg}`\n{USAGE}").into());
            }
            _ => options.out = PathBuf::from(arg),
        }
    }
    if options.out.as_os_str().is_empty() || options.layers == 0 || options.layer_mib == 0 {
        return Err(USAGE.into());
    }
    if !(2..=3).contains(&options.platform.len()) {
        return Err("--platform must be OS/ARCH or OS/ARCH/VARIANT".into());
    }
    Ok(options)
}

/// Writes the layers in parallel, one thread each; returns them in order.
fn write_layers(blobs: &Path, count: usize, target: u64, words: &[String]) -> Result<Vec<Layer>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|index| scope.spawn(move || write_layer(blobs, index, target, words)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| "a layer thread panicked")?)
            .collect()
    })
}

/// Streams one layer: tar → hash (diff_id) → gzip → hash (digest) → a
/// temporary file, renamed to its digest once complete. Files are added
/// until the compressed stream reaches `target` bytes.
fn write_layer(blobs: &Path, index: usize, target: u64, words: &[String]) -> Result<Layer> {
    let file = BufWriter::new(NamedTempFile::new_in(blobs)?);
    let gzip = GzEncoder::new(HashingWriter::new(file), Compression::default());
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    let mut rng = Rng(0x6c6b_6361_6368_6500 ^ index as u64);
    let mut file_number = 0;
    while tar.get_ref().inner.get_ref().hasher.len_bytes() < target {
        let dir = format!(
            "opt/bench/layer{index}/d{:03}/",
            file_number / FILES_PER_DIR
        );
        if file_number % FILES_PER_DIR == 0 {
            append(&mut tar, tar::EntryType::Directory, &dir, 0o755, &[])?;
        }
        let (extension, content) = file_content(&mut rng, words);
        let path = format!("{dir}f{file_number:05}.{extension}");
        append(&mut tar, tar::EntryType::Regular, &path, 0o644, &content)?;
        file_number += 1;
    }
    let tar_hash = tar.into_inner()?;
    let gzip_hash = tar_hash.inner.finish()?;
    let temp = gzip_hash.inner.into_inner().map_err(|e| e.into_error())?;
    let digest = gzip_hash.hasher.finish();
    let size = fs::metadata(temp.path())?.len();
    persist(temp, blobs, &digest)?;
    Ok(Layer {
        digest,
        size,
        uncompressed: tar_hash.hasher.len_bytes(),
        diff_id: tar_hash.hasher.finish(),
    })
}

/// Appends one entry owned by root, with the fixed modification time.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    kind: tar::EntryType,
    path: &str,
    mode: u32,
    content: &[u8],
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_cksum();
    tar.append_data(&mut header, path, content)
}

/// Makes one file: prose, a config file or a log, of a size between 128
/// bytes and 1 MiB, spread evenly over the powers of two.
fn file_content(rng: &mut Rng, words: &[String]) -> (&'static str, Vec<u8>) {
    let size = 128usize << rng.below(14);
    let size = size + rng.below(size as u64) as usize;
    let kind = rng.below(3);
    let mut out = Vec::with_capacity(size + 256);
    let mut line = 0u64;
    while out.len() < size {
        line += 1;
        match kind {
            0 => prose_line(rng, words, &mut out),
            1 => config_line(rng, words, &mut out),
            _ => log_line(rng, words, line, &mut out),
        }
    }
    out.truncate(size);
    (["txt", "conf", "log"][kind as usize], out)
}

fn prose_line(rng: &mut Rng, words: &[String], out: &mut Vec<u8>) {
    let count = 6 + rng.below(10);
    for i in 0..count {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word(rng, words).as_bytes());
    }
    out.extend_from_slice(if rng.below(4) == 0 { b".\n\n" } else { b".\n" });
}

fn config_line(rng: &mut Rng, words: &[String], out: &mut Vec<u8>) {
    let (key, section) = (word(rng, words), word(rng, words));
    let line = match rng.below(4) {
        0 => format!("{section}.{key} = {}\n", rng.below(100_000)),
        1 => format!("{key} = \"{} {}\"\n", word(rng, words), word(rng, words)),
        2 => format!("{key}_enabled = {}\n", rng.below(2) == 1),
        _ => format!("\n[{section}]\n"),
    };
    out.extend_from_slice(line.as_bytes());
}

fn log_line(rng: &mut Rng, words: &[String], line: u64, out: &mut Vec<u8>) {
    let level = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"][rng.below(6) as usize];
    let text = format!(
        "2024-03-{:02}T{:02}:{:02}:{:02}.{:03}Z {level} [{}] request={:08x} {} {} {} took={}ms\n",
        1 + line / 86_400 % 28,
        line / 3600 % 24,
        line / 60 % 60,
        line % 60,
        rng.below(1000),
        word(rng, words),
        rng.next() as u32,
        word(rng, words),
        word(rng, words),
        word(rng, words),
        rng.below(5000),
    );
    out.extend_from_slice(text.as_bytes());
}

/// Picks a word, common words more often than rare ones (roughly Zipf).
fn word<'a>(rng: &mut Rng, words: &'a [String]) -> &'a str {
    let n = words.len() as u64;
    let index = rng.below(n).min(rng.below(n)).min(rng.below(n));
    &words[index as usize]
}

/// Makes 8192 pronounceable words of 1 to 5 syllables, the same every run.
fn vocabulary() -> Vec<String> {
    const ONSETS: [&str; 20] = [
        "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr",
        "ch", "pl",
    ];
    const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ea", "io", "ou"];
    let mut rng = Rng(0x766f_6361_6275_6c61);
    (0..8192)
        .map(|_| {
            let syllables = 1 + rng.below(5);
            let mut word = String::new();
            for _ in 0..syllables {
                word.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
                word.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
            }
            word
        })
        .collect()
}

fn config_json(platform: &[String], layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let history: Vec<Value> = (0..layers.len())
        .map(|i| json!({"created": CREATED, "created_by": format!("make_image layer {i}")}))
        .collect();
    let mut config = json!({
        "created": CREATED,
        "architecture": platform[1],
        "os": platform[0],
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    if let Some(variant) = platform.get(2) {
        config["variant"] = json!(variant);
    }
    serde_json::to_vec(&config).expect("JSON values always serialize")
}

fn manifest_json(config: (Digest, u64), layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    });
    serde_json::to_vec(&manifest).expect("JSON values always serialize")
}

/// Writes `oci-layout` and `index.json`, naming the manifest `latest`.
fn write_layout(options: &Options, manifest: &Digest, size: u64) -> Result<()> {
    let mut platform = json!({"os": options.platform[0], "architecture": options.platform[1]});
    if let Some(variant) = options.platform.get(2) {
        platform["variant"] = json!(variant);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": manifest.to_string(),
            "size": size,
            "platform": platform,
            "annotations": {REF_NAME: "latest"},
        }],
    });
    fs::write(
        options.out.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    fs::write(options.out.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// Writes a small blob and returns its digest and size.
fn write_blob(blobs: &Path, bytes: &[u8]) -> Result<(Digest, u64)> {
    let digest = Digest::sha256_of(bytes);
    let mut temp = NamedTempFile::new_in(blobs)?;
    temp.write_all(bytes)?;
    persist(temp, blobs, &digest)?;
    Ok((digest, bytes.len() as u64))
}

/// Moves a complete temporary file to `blobs/sha256/<hex>`, readable by all.
fn persist(temp: NamedTempFile, blobs: &Path, digest: &Digest) -> Result<()> {
    let path = blobs.join(digest.hex());
    temp.persist(&path)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// A writer that hashes (SHA-256) everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
        }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// SplitMix64: a tiny, fast, deterministic pseudo-random generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
