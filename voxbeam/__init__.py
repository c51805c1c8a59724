"""VoxBeam: bulk speech-to-text and text-to-speech on Apache Beam over VoxNexus WebSocket sessions."""

__version__ = "0.1.0"
