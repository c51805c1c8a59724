"""Fixtures for the Beam tests: the gs:// emulator is in tests/conftest.py (the jobs use it too)."""
