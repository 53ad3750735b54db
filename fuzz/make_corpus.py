#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

usage: fuzz/make_corpus.py [CORPUS_DIR]

Seeds come from the conformance vectors in tests/data/conformance/
(reference inputs, platform specifiers, and the OCI schema documents when
oci-schema-vectors.json is there) and from small images built here: OCI
indexes and manifests, Docker manifests, caches (`index.json` plus blobs,
for the `index_json` target) and archives in every layout `lkcache import`
reads (OCI layout tar, `docker save` legacy and Docker 25 archives, plain,
gzip and, when the `zstd` command exists, zstd). Everything is
deterministic; file names are the sha1 of the content, as libFuzzer names
its own, so rerunning adds nothing twice. Uses the standard library only.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "tests", "data", "conformance")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

# Must match DECLARED_MEDIA_TYPES in fuzz/src/lib.rs: the manifest target's
# first input byte picks the declared media type from this list.
DECLARED = [
    "",
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/json",
    "application/octet-stream",
    OCI_CONFIG,
]

# Must match BLOB_SEPARATOR in fuzz/src/lib.rs.
BLOB_SEPARATOR = b"\n--lkcache-fuzz-blob--\n"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(value):
    return json.dumps(value, separators=(",", ":")).encode()


def descriptor(media_type, data, **extra):
    d = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    d.update(extra)
    return d


def load(name):
    path = os.path.join(VECTORS, name)
    if not os.path.exists(path):
        print(f"make_corpus: {name} is missing; its seeds are skipped", file=sys.stderr)
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- string targets -------------------------------------------------------


def reference_seeds():
    seeds = set()
    vectors = load("reference-vectors.json") or {}
    for row in vectors.get("inputs", []) + vectors.get("cases", []):
        for key in ("input", "normalized", "familiar", "docker_ref"):
            if isinstance(row.get(key), str):
                seeds.add(row[key])
    ggcr = load("ggcr-name-vectors.json") or {}
    for row in ggcr.get("cases", []) + ggcr.get("computed", []):
        if isinstance(row.get("input"), str):
            seeds.add(row["input"])
    seeds.update(["sha256:" + "a" * 64, "sha512:" + "0" * 128, "sha384:" + "f" * 96])
    return [s.encode() for s in sorted(seeds)]


def platform_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from platform_strings(item)


def platform_seeds():
    seeds = set()
    vectors = load("platform-vectors.json") or {}
    for row in vectors.get("parse", []) + vectors.get("computed_parse", []):
        seeds.update(platform_strings(row.get("input")))
        for key in ("format", "format_all"):
            seeds.update(platform_strings(row.get(key)))
    for row in vectors.get("format", []):
        seeds.update(platform_strings(row.get("expected")))
    for row in vectors.get("matchers", []):
        for key in ("platform", "match", "no_match"):
            seeds.update(platform_strings(row.get(key)))
    for row in vectors.get("ordering", []):
        seeds.update(platform_strings(row.get("input")))
    for row in vectors.get("computed_normalize", []):
        p = row.get("input", {})
        parts = [p.get("os", ""), p.get("architecture", ""), p.get("variant", "")]
        seeds.add("/".join(x for x in parts if x))
    seeds.update(["windows(10.0.17763%2Bbuild.42+win32k+a%28b%29)/amd64/v1", "linux(%25)/arm"])
    return [s.encode() for s in sorted(seeds) if "{" not in s]


# --- documents ------------------------------------------------------------


def layer_tar(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gz(data):
    return gzip.compress(data, mtime=0)


class Image:
    """One platform's image: a config, its layers (gzip) and a manifest."""

    def __init__(self, os_name, arch, variant=None, docker=False, seed=0):
        self.tar = layer_tar([(f"etc/{arch}-{seed}", f"{os_name}/{arch} {seed}\n".encode())])
        self.layer = gz(self.tar)
        config = {
            "architecture": arch,
            "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": [sha256(self.tar)]},
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        }
        if variant:
            config["variant"] = variant
        self.config = dumps(config)
        self.platform = {"architecture": arch, "os": os_name}
        if variant:
            self.platform["variant"] = variant
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, self.config),
            "layers": [descriptor(DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, self.layer)],
        }
        self.manifest = dumps(manifest)
        self.media_type = manifest["mediaType"]

    def descriptor(self, **extra):
        return descriptor(self.media_type, self.manifest, **extra)

    def blobs(self):
        return [self.manifest, self.config, self.layer]


def attestation_for(image):
    """A BuildKit-style attestation manifest for `image`."""
    statement = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
    manifest = dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, b"{}"),
        "layers": [descriptor("application/vnd.in-toto+json", statement)],
    })
    entry = descriptor(
        OCI_MANIFEST,
        manifest,
        platform={"architecture": "unknown", "os": "unknown"},
        annotations={
            "vnd.docker.reference.digest": sha256(image.manifest),
            "vnd.docker.reference.type": "attestation-manifest",
        },
    )
    return entry, [manifest, b"{}", statement]


def images():
    return [
        Image("linux", "amd64"),
        Image("linux", "arm64", "v8", seed=1),
        Image("linux", "arm", "v7", seed=2),
        Image("windows", "amd64", seed=3),
    ]


def index_of(members, docker=False, **extra):
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": members,
    }
    doc.update(extra)
    return dumps(doc)


def documents():
    """Manifests and indexes for the manifest target, as (declared, bytes)."""
    imgs = images()
    att, _ = attestation_for(imgs[0])
    entries = [i.descriptor(platform=i.platform) for i in imgs] + [att]
    entries[3]["platform"].update({"os.version": "10.0.17763.1", "os.features": ["win32k"]})
    docs = [
        (OCI_INDEX, index_of(entries, annotations={"a": "b"}, subject=None)),
        (DOCKER_LIST, index_of(entries[:2], docker=True)),
        ("", dumps({"schemaVersion": 2, "manifests": entries[:1]})),
        ("", dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []})),
        (OCI_INDEX, dumps({"schemaVersion": 2, "manifests": [], "artifactType": "x/y"})),
    ]
    for image in imgs[:2]:
        docs.append((image.media_type, image.manifest))
        docs.append(("", json.dumps(json.loads(image.manifest), indent=2).encode()))
        docs.append((OCI_CONFIG, image.config))
    schema = load("oci-schema-vectors.json") or {}
    for row in schema.get("documents", schema.get("cases", [])):
        text = row.get("document_text")
        if isinstance(text, str):
            docs.append((row.get("media_type") or "", text.encode()))
    seeds = []
    for declared, doc in docs:
        selectors = {DECLARED.index(declared) if declared in DECLARED else 0, 0, 8}
        seeds.extend(bytes([s]) + doc for s in sorted(selectors))
    return seeds


# --- caches ---------------------------------------------------------------


def cache(index_entries, blobs, extra=None):
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
    doc.update(extra or {})
    return BLOB_SEPARATOR.join([json.dumps(doc, indent=1).encode()] + blobs)


def named(entry, name):
    entry = dict(entry)
    entry["annotations"] = dict(entry.get("annotations", {}), **{REF_NAME: name})
    return entry


def cache_seeds():
    imgs = images()
    att, att_blobs = attestation_for(imgs[0])
    members = [i.descriptor(platform=i.platform) for i in imgs] + [att]
    index = index_of(members)
    nested = index_of([descriptor(OCI_INDEX, index)])
    all_blobs = [b for i in imgs for b in i.blobs()] + att_blobs
    docker = Image("linux", "amd64", docker=True, seed=9)
    root = descriptor(OCI_INDEX, index)
    seeds = [
        b"",
        b"{}",
        cache([], []),
        cache([named(root, "docker.io/library/alpine:3.20")], [index] + all_blobs),
        cache(
            [
                named(root, "docker.io/library/alpine:3.20"),
                named(imgs[1].descriptor(), "ghcr.io/org/app:1.0"),
                named(docker.descriptor(), "localhost:5000/docker@" + sha256(docker.manifest)),
                named(descriptor(OCI_INDEX, nested), "example.com/nested:latest"),
                imgs[2].descriptor(),
            ],
            [index, nested] + all_blobs + docker.blobs(),
            extra={"annotations": {"x": "y"}},
        ),
        # An index whose platforms are only partly held, and a manifest
        # whose layer is missing.
        cache(
            [
                named(root, "docker.io/library/partial:1"),
                named(imgs[3].descriptor(), "docker.io/library/nolayer:1"),
            ],
            [index] + imgs[0].blobs() + [imgs[3].manifest, imgs[3].config],
        ),
        # Sizes that do not match, a config as the root, an unknown type.
        cache(
            [
                named(dict(root, size=root["size"] + 1), "example.com/size:1"),
                named(descriptor(OCI_MANIFEST, imgs[0].config), "example.com/config:1"),
                named(descriptor("text/plain", imgs[0].layer), "example.com/text:1"),
                named(descriptor(OCI_MANIFEST, b"{not json"), "example.com/broken:1"),
            ],
            [index, b"{not json"] + imgs[0].blobs(),
        ),
    ]
    return seeds


# --- archives -------------------------------------------------------------


def tar_of(files, prefix="", fmt=tarfile.GNU_FORMAT):
    """Builds a tar from (name, bytes) files and (name, "->", target) links."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for item in files:
            info = tarfile.TarInfo(prefix + item[0])
            info.mtime, info.mode = 1700000000, 0o644
            if item[1] == "->":
                info.type, info.linkname = tarfile.SYMTYPE, item[2]
                tar.addfile(info)
            elif item[1] == "=>":
                info.type, info.linkname = tarfile.LNKTYPE, item[2]
                tar.addfile(info)
            else:
                info.size = len(item[1])
                tar.addfile(info, io.BytesIO(item[1]))
    return out.getvalue()


def blob_files(blobs):
    unique = {sha256(b): b for b in blobs}
    return [(f"blobs/sha256/{d[7:]}", b) for d, b in sorted(unique.items())]


def layout_files(entries, blobs):
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + blob_files(
        blobs
    )


def docker_legacy(image, repo_tags, link=False):
    """A `docker save` archive before Docker 25: <id>/layer.tar files."""
    config_name = sha256(image.config)[7:] + ".json"
    layer_id = hashlib.sha256(b"layer" + image.tar).hexdigest()
    files = [(config_name, image.config)]
    if link:
        files += [(sha256(image.tar)[7:] + ".tar", image.tar)]
        files += [(f"{layer_id}/layer.tar", "->", "../" + sha256(image.tar)[7:] + ".tar")]
    else:
        files += [(f"{layer_id}/VERSION", b"1.0"), (f"{layer_id}/layer.tar", image.tar)]
    manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": [f"{layer_id}/layer.tar"]}]
    files.append(("manifest.json", dumps(manifest)))
    if repo_tags:
        repo, tag = repo_tags[0].rsplit(":", 1)
        files.append(("repositories", dumps({repo: {tag: layer_id}})))
    return files


def archive_seeds():
    imgs = images()
    att, att_blobs = attestation_for(imgs[0])
    members = [i.descriptor(platform=i.platform) for i in imgs[:2]] + [att]
    index = index_of(members)
    all_blobs = [index] + imgs[0].blobs() + imgs[1].blobs() + att_blobs
    root = descriptor(OCI_INDEX, index)
    buildkit = dict(root, annotations={REF_NAME: "latest", CONTAINERD_NAME: "docker.io/org/app:latest"})
    single = imgs[2].descriptor(annotations={REF_NAME: "example.com/arm:v7"})
    layouts = [
        layout_files([dict(root, annotations={REF_NAME: "docker.io/library/alpine:3.20"})], all_blobs),
        layout_files([buildkit], all_blobs),
        layout_files([dict(root, annotations={REF_NAME: "3.20"})], all_blobs),
        layout_files([single, imgs[3].descriptor()], imgs[2].blobs() + imgs[3].blobs()),
    ]
    docker25 = layout_files([dict(single, annotations={CONTAINERD_NAME: "example.com/arm:v7"})],
                            imgs[2].blobs())
    docker25.append(("manifest.json", dumps([{
        "Config": "blobs/sha256/" + sha256(imgs[2].config)[7:],
        "RepoTags": ["example.com/arm:v7"],
        "Layers": ["blobs/sha256/" + sha256(imgs[2].layer)[7:]],
    }])))
    tars = [tar_of(files) for files in layouts]
    tars.append(tar_of(layouts[0], prefix="./", fmt=tarfile.PAX_FORMAT))
    tars.append(tar_of(docker25))
    tars.append(tar_of(docker_legacy(imgs[0], ["alpine:3.20"])))
    tars.append(tar_of(docker_legacy(imgs[1], ["ghcr.io/org/app:1.0"], link=True)))
    tars.append(tar_of(docker_legacy(imgs[3], None)))
    compressed = [gz(tars[0]), gz(tars[6])]
    if shutil.which("zstd"):
        for plain in (tars[3], tars[7]):
            run = subprocess.run(["zstd", "-q", "-c", "-3"], input=plain, capture_output=True)
            if run.returncode == 0:
                compressed.append(run.stdout)
    return tars + compressed + edge_archives(imgs)


def edge_archives(imgs):
    """Archives at the edges of what import accepts: one image listed twice
    or under two names, a layer used twice, a config used as a layer, two
    `index.json` entries in one tar, sha512 blobs."""
    image = imgs[0]
    legacy = docker_legacy(image, ["a:1"])
    listed = json.loads(dict((f[0], f[1]) for f in legacy if len(f) == 2)["manifest.json"])
    others = [f for f in legacy if f[0] != "manifest.json"]
    layer = listed[0]["Layers"][0]
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] *= 2
    root = image.descriptor()
    a = dict(root, annotations={REF_NAME: "example.com/a:1"})
    b = dict(root, annotations={REF_NAME: "example.com/b:1"})
    as_layer = dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, image.config),
        "layers": [descriptor(OCI_CONFIG, image.config)],
    })
    twice = layout_files([a], image.blobs())
    twice.append(("index.json", dumps({"schemaVersion": 2, "manifests": [b]})))
    return [
        tar_of(others + [("manifest.json", dumps(listed * 2))]),
        tar_of(others + [("manifest.json", dumps([dict(listed[0], RepoTags=["a:1", "b:2"])]))]),
        tar_of([("c.json", dumps(config)), (layer, image.tar), ("manifest.json", dumps([
            {"Config": "c.json", "RepoTags": ["x:1"], "Layers": [layer, layer]}
        ]))]),
        tar_of(layout_files([a, b, a], image.blobs())),
        tar_of(layout_files([descriptor(OCI_MANIFEST, as_layer, annotations=a["annotations"])],
                            [as_layer, image.config])),
        tar_of(twice),
        sha512_layout(image),
    ]


def sha512_layout(image):
    def d512(data):
        return "sha512:" + hashlib.sha512(data).hexdigest()

    def desc(media_type, data, **extra):
        return dict({"mediaType": media_type, "digest": d512(data), "size": len(data)}, **extra)

    manifest = dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(OCI_CONFIG, image.config),
        "layers": [desc(OCI_LAYER_GZIP, image.layer)],
    })
    entry = desc(OCI_MANIFEST, manifest, annotations={REF_NAME: "example.com/s:512"})
    files = [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", dumps({"schemaVersion": 2, "manifests": [entry]})),
    ]
    for blob in (manifest, image.config, image.layer):
        files.append(("blobs/sha512/" + hashlib.sha512(blob).hexdigest(), blob))
    return tar_of(files)


# --- output ---------------------------------------------------------------


def write(corpus, target, seeds):
    directory = os.path.join(corpus, target)
    os.makedirs(directory, exist_ok=True)
    for seed in seeds:
        with open(os.path.join(directory, hashlib.sha1(seed).hexdigest()), "wb") as f:
            f.write(seed)
    print(f"{target}: {len(seeds)} seeds")


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    write(corpus, "reference", reference_seeds())
    write(corpus, "platform", platform_seeds())
    write(corpus, "manifest", documents())
    write(corpus, "index_json", cache_seeds())
    write(corpus, "import", archive_seeds())


if __name__ == "__main__":
    main()
