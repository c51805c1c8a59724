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
SERVER = [
    "pocketsphinx>=5.0.3,<6",
    "espeakng-loader>=0.2,<0.3",
]
GCP = [
    "apache-beam[gcp]>=2.60,<3",
    "google-cloud-storage>=2.14,<4",
    "google-cloud-secret-manager>=2.16,<3",
]
TEST = SERVER + GCP + [
    "matplotlib>=3.7,<4",
    "pytest>=8,<10",
    "pytest-timeout>=2.2,<3",
    "hypothesis>=6.100,<7",
    "gcp-storage-emulator>=2024.1",
    "jiwer>=3,<5",
    "whisper-normalizer>=0.1.12,<0.2",
    "psutil>=5.9,<8",
    "mypy>=1.10",
    "ruff>=0.5",
]
# WER in bench/accuracy.py: jiwer, and OpenAI Whisper's English normaliser as packaged on PyPI.
BENCH = SERVER + ["matplotlib>=3.7,<4", "psutil>=5.9,<8", "jiwer>=3,<5", "whisper-normalizer>=0.1.12,<0.2"]

setup(
    name="voxbeam",
    version="0.1.0",
    description="Bulk speech-to-text and text-to-speech on Apache Beam over pooled VoxNexus WebSocket sessions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["voxbeam", "voxbeam.*"]),
    package_data={"voxbeam": ["py.typed"]},
    install_requires=BASE,
    extras_require={
        "server": SERVER,
        "gcp": GCP,
        "bench": BENCH,
        "test": TEST,
        "all": sorted(set(SERVER + GCP + BENCH)),
    },
    entry_points={"console_scripts": ["voxbeam=voxbeam.cli:main"]},
)
