"""Fixtures for the Beam tests: a gcp-storage-emulator for gs:// paths."""

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def gcs_emulator():
    """An in-memory GCS emulator on a free port (honouring preconditions); STORAGE_EMULATOR_HOST points at it."""
    from tests import gcs

    server, host = gcs.start()
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = host
    from voxbeam.beam import storage

    storage.gcs_client.cache_clear()
    yield storage.gcs_client()
    storage.gcs_client.cache_clear()
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    server.stop()


@pytest.fixture
def bucket(gcs_emulator):
    """A fresh bucket name in the emulator."""
    name = f"voxbeam-test-{uuid.uuid4().hex[:10]}"
    gcs_emulator.create_bucket(name)
    return name
