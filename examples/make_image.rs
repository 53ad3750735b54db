//! Writes realistic test images into an OCI image layout, for benchmarks
//! such as `bench/run`.
//!
//! ```text
//! cargo run --release --example make_image -- OUT_DIR [--tag NAME]
//!     [--platform OS/ARCH[/VARIANT]]... [--layers N] [--layer-mib M]
//!     [--seed S] [--base-seed B]
//! ```
//!
//! `OUT_DIR` is an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`), created when missing; the image is added to it under
//! the name `NAME` (default `latest`), replacing an image of that name, so
//! one layout can hold many images that share blobs.
//!
//! With one `--platform` (default `linux/amd64`) the image is one OCI
//! manifest; with several, one manifest per platform, gathered under an OCI
//! index. Each manifest has N gzip-compressed tar layers (default 5) of
//! about M MiB compressed each (default 45; fractions such as `0.5` work).
//!
//! Layers hold many text-like files of varied sizes, made of pseudo-random
//! words, so they compress about as well as real files (about 2.7x with
//! gzip's default level). Each layer is deterministic from its seed: the
//! seed `S` (default 0), the platform's position and the layer's position.
//! With `--base-seed B`, the first layer of every manifest comes from `B`
//! alone, so images made with the same base seed and layer size share their
//! base layer, as images built `FROM` one base do. One build always gives
//! the same digests; the compressed bytes, and the file at which a layer
//! reaches its size, depend on flate2's deflate backend. Layers are written
//! in parallel and stream to disk through a hasher, never held whole in
//! memory.

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

const USAGE: &str = "usage: make_image OUT_DIR [--tag NAME] [--platform OS/ARCH[/VARIANT]]... \
                     [--layers N] [--layer-mib M] [--seed S] [--base-seed B]";
/// The annotation that names an image in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// A fixed creation time for the config, so that it is reproducible.
const CREATED: &str = "2024-01-01T00:00:00Z";
/// A fixed modification time, so that the tar streams are reproducible.
const MTIME: u64 = 1_700_000_000;
/// How many files go into one directory of a layer.
const FILES_PER_DIR: usize = 64;
/// Mixed into every layer seed, so that seed 0 is not a degenerate state.
const SEED_SALT: u64 = 0x6c6b_6361_6368_6500;

/// The command line.
struct Options {
    out: PathBuf,
    tag: String,
    platforms: Vec<Vec<String>>,
    layers: usize,
    layer_bytes: u64,
    seed: u64,
    base_seed: Option<u64>,
}

/// What one layer is made from.
#[derive(Clone, Copy)]
struct LayerSpec {
    /// The layer's position in its manifest, which names its directory.
    position: usize,
    seed: u64,
    target_bytes: u64,
}

/// A layer written to `blobs/sha256/`.
struct Layer {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    uncompressed: u64,
}

/// A blob written to `blobs/sha256/`, as a descriptor needs it.
struct Blob {
    media_type: &'static str,
    digest: Digest,
    size: u64,
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
    let specs = layer_specs(&options);
    let layers = write_layers(&blobs, &specs.concat(), &vocabulary())?;
    let mut manifests = Vec::new();
    let mut rest = layers.as_slice();
    for platform in &options.platforms {
        let (own, others) = rest.split_at(options.layers);
        manifests.push(write_image(&blobs, platform, own)?);
        rest = others;
    }
    let root = if manifests.len() == 1 {
        manifests.pop().expect("one manifest")
    } else {
        write_index(&blobs, &options.platforms, &manifests)?
    };
    add_to_layout(&options.out, &options.tag, &root)?;
    print_summary(&options, &layers, &root);
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options> {
    let mut options = Options {
        out: PathBuf::new(),
        tag: "latest".into(),
        platforms: Vec::new(),
        layers: 5,
        layer_bytes: 45 << 20,
        seed: 0,
        base_seed: None,
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--tag" => options.tag = value()?,
            "--layers" => options.layers = value()?.parse()?,
            "--layer-mib" => options.layer_bytes = mib_to_bytes(&value()?)?,
            "--platform" => options.platforms.push(parse_platform(&value()?)?),
            "--seed" => options.seed = value()?.parse()?,
            "--base-seed" => options.base_seed = Some(value()?.parse()?),
            "-h" | "--help" => return Err(USAGE.into()),
            _ if arg.starts_with('-') || !options.out.as_os_str().is_empty() => {
                return Err(format!("unexpected argument `{arg}`\n{USAGE}").into());
            }
            _ => options.out = PathBuf::from(arg),
        }
    }
    if options.out.as_os_str().is_empty() || options.layers == 0 || options.tag.is_empty() {
        return Err(USAGE.into());
    }
    if options.platforms.is_empty() {
        options.platforms.push(vec!["linux".into(), "amd64".into()]);
    }
    Ok(options)
}

/// Parses a size in MiB, fractions allowed, into a positive byte count.
fn mib_to_bytes(text: &str) -> Result<u64> {
    let mib: f64 = text.parse()?;
    let bytes = (mib * 1024.0 * 1024.0).round();
    if !(1.0..1e15).contains(&bytes) {
        return Err(format!("--layer-mib `{text}` is not a usable size").into());
    }
    Ok(bytes as u64)
}

fn parse_platform(text: &str) -> Result<Vec<String>> {
    let parts: Vec<String> = text.split('/').map(String::from).collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(String::is_empty) {
        return Err(format!("--platform `{text}` is not OS/ARCH or OS/ARCH/VARIANT").into());
    }
    Ok(parts)
}

/// The layers of each platform's manifest, bottom first.
fn layer_specs(options: &Options) -> Vec<Vec<LayerSpec>> {
    (0..options.platforms.len())
        .map(|platform| {
            (0..options.layers)
                .map(|layer| {
                    let seed = match options.base_seed {
                        Some(base) if layer == 0 => mix(&[base]),
                        _ => mix(&[options.seed, platform as u64 + 1, layer as u64 + 1]),
                    };
                    LayerSpec {
                        position: layer,
                        seed,
                        target_bytes: options.layer_bytes,
                    }
                })
                .collect()
        })
        .collect()
}

/// Combines numbers into one well-spread seed.
fn mix(parts: &[u64]) -> u64 {
    let mut rng = Rng(SEED_SALT);
    for part in parts {
        rng.0 ^= part;
        rng.next();
    }
    rng.next()
}

/// Writes the layers in parallel, one thread each; returns them in order.
fn write_layers(blobs: &Path, specs: &[LayerSpec], words: &[String]) -> Result<Vec<Layer>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| scope.spawn(move || write_layer(blobs, *spec, words)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| "a layer thread panicked")?)
            .collect()
    })
}

/// Streams one layer: tar → hash (diff_id) → gzip → hash (digest) → a
/// temporary file, renamed to its digest once complete. Files are added
/// until the compressed stream reaches the target size.
fn write_layer(blobs: &Path, spec: LayerSpec, words: &[String]) -> Result<Layer> {
    let file = BufWriter::new(NamedTempFile::new_in(blobs)?);
    let gzip = GzEncoder::new(HashingWriter::new(file), Compression::default());
    let mut tar = tar::Builder::new(HashingWriter::new(gzip));
    let mut rng = Rng(spec.seed);
    let mut file_number = 0;
    while tar.get_ref().inner.get_ref().hasher.len_bytes() < spec.target_bytes {
        let dir = format!(
            "opt/bench/layer{}/d{:03}/",
            spec.position,
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

/// Writes one platform's config and manifest; returns the manifest.
fn write_image(blobs: &Path, platform: &[String], layers: &[Layer]) -> Result<Blob> {
    let config = write_blob(
        blobs,
        media_type::OCI_CONFIG,
        &config_json(platform, layers),
    )?;
    write_blob(
        blobs,
        media_type::OCI_MANIFEST,
        &manifest_json(&config, layers),
    )
}

fn config_json(platform: &[String], layers: &[Layer]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let history: Vec<Value> = (0..layers.len())
        .map(|i| json!({"created": CREATED, "created_by": format!("make_image layer {i}")}))
        .collect();
    let mut config = json!({
        "created": CREATED,
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    merge(&mut config, platform_json(platform));
    serde_json::to_vec(&config).expect("JSON values always serialize")
}

fn manifest_json(config: &Blob, layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": OCI_LAYER_GZIP, "digest": l.digest, "size": l.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(config),
        "layers": layers,
    });
    serde_json::to_vec(&manifest).expect("JSON values always serialize")
}

/// Writes the OCI index of several platforms' manifests.
fn write_index(blobs: &Path, platforms: &[Vec<String>], manifests: &[Blob]) -> Result<Blob> {
    let entries: Vec<Value> = platforms
        .iter()
        .zip(manifests)
        .map(|(platform, manifest)| {
            let mut entry = descriptor(manifest);
            entry["platform"] = platform_json(platform);
            entry
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).expect("JSON values always serialize");
    write_blob(blobs, media_type::OCI_INDEX, &bytes)
}

fn platform_json(platform: &[String]) -> Value {
    let mut json = json!({"os": platform[0], "architecture": platform[1]});
    if let Some(variant) = platform.get(2) {
        json["variant"] = json!(variant);
    }
    json
}

fn descriptor(blob: &Blob) -> Value {
    json!({"mediaType": blob.media_type, "digest": blob.digest.to_string(), "size": blob.size})
}

/// Copies the members of the object `from` into the object `into`.
fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Names `root` `tag` in the layout's `index.json`, replacing an earlier
/// image of that name and keeping the others; writes `oci-layout` if
/// missing. The index is replaced atomically.
fn add_to_layout(out: &Path, tag: &str, root: &Blob) -> Result<()> {
    let layout_file = out.join("oci-layout");
    if !layout_file.exists() {
        fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let index_path = out.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []})
        }
        Err(e) => return Err(e.into()),
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .ok_or("index.json has no `manifests` array")?;
    manifests.retain(|entry| entry["annotations"][REF_NAME] != tag);
    let mut entry = descriptor(root);
    entry["annotations"] = json!({REF_NAME: tag});
    manifests.push(entry);
    let mut temp = NamedTempFile::new_in(out)?;
    temp.write_all(&serde_json::to_vec(&index)?)?;
    temp.persist(&index_path)?;
    Ok(())
}

/// Writes a small blob and returns it.
fn write_blob(blobs: &Path, media_type: &'static str, bytes: &[u8]) -> Result<Blob> {
    let digest = Digest::sha256_of(bytes);
    let mut temp = NamedTempFile::new_in(blobs)?;
    temp.write_all(bytes)?;
    persist(temp, blobs, &digest)?;
    Ok(Blob {
        media_type,
        digest,
        size: bytes.len() as u64,
    })
}

/// Moves a complete temporary file to `blobs/sha256/<hex>`, readable by all.
fn persist(temp: NamedTempFile, blobs: &Path, digest: &Digest) -> Result<()> {
    let path = blobs.join(digest.hex());
    temp.persist(&path)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn print_summary(options: &Options, layers: &[Layer], root: &Blob) {
    let compressed: u64 = layers.iter().map(|l| l.size).sum();
    let uncompressed: u64 = layers.iter().map(|l| l.uncompressed).sum();
    println!(
        "{}:{}: {} platform(s), {} layers, {compressed} bytes compressed ({:.1} MB), \
         {uncompressed} bytes uncompressed, gzip ratio {:.2}, {} {}",
        options.out.display(),
        options.tag,
        options.platforms.len(),
        layers.len(),
        compressed as f64 / 1e6,
        uncompressed as f64 / compressed as f64,
        root.media_type,
        root.digest,
    );
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
