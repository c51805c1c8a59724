"""The Google Cloud CLI's Pub/Sub emulator for the tests (and bench): found, started on a free port, stopped.

It is the CLI's ``pubsub-emulator`` component, a jar run with Java: ``gcloud beta emulators pubsub
start`` runs the same jar. ``command`` finds it (or says why it cannot), ``Emulator`` runs it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

_JAR_GLOBS = (
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
    "/usr/share/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
    "/opt/google-cloud-sdk/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar",
)
PROJECT = "voxbeam-test"


def _sdk_jars() -> list[str]:
    roots = []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(gcloud))))
    found = [j for root in roots for j in glob.glob(f"{root}/platform/pubsub-emulator/lib/cloud-pubsub-emulator-*.jar")]
    return found + [j for pattern in _JAR_GLOBS for j in glob.glob(pattern)]


def command(port: int) -> list[str] | str:
    """The emulator's command line on ``port``, or why there is none here."""
    java = shutil.which("java")
    if java is None:
        return "no java on PATH (the Pub/Sub emulator is a Java program)"
    jars = _sdk_jars()
    if not jars:
        return "the Google Cloud CLI's pubsub-emulator component is not installed (gcloud components install)"
    return [java, "-jar", sorted(jars)[-1], "--host=127.0.0.1", f"--port={port}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """A running emulator; ``host`` is what ``PUBSUB_EMULATOR_HOST`` takes."""

    def __init__(self, log_path: str) -> None:
        self.port = free_port()
        argv = command(self.port)
        if isinstance(argv, str):
            raise RuntimeError(argv)
        self.host = f"127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the Pub/Sub emulator exited ({self._proc.returncode}); see {log_path}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Pub/Sub emulator did not listen on {self.host} within 60 s; see {log_path}")

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def topic_and_subscription(name: str) -> tuple[str, str, Any]:
    """A new topic and its subscription in the emulator (``PUBSUB_EMULATOR_HOST`` set); (topic, sub, publisher)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(PROJECT, f"{name}-topic")
    publisher.create_topic(name=topic)
    with pubsub_v1.SubscriberClient() as subscriber:
        subscription = subscriber.subscription_path(PROJECT, f"{name}-sub")
        subscriber.create_subscription(name=subscription, topic=topic)
    return topic, subscription, publisher


def notification(
    bucket: str, name: str, generation: str, event: str = "OBJECT_FINALIZE"
) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) of a Cloud Storage notification as Pub/Sub delivers it (JSON_API_V1 payload)."""
    payload = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": generation}
    attributes = {
        "eventType": event,
        "bucketId": bucket,
        "objectId": name,
        "objectGeneration": generation,
        "payloadFormat": "JSON_API_V1",
        "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1",
    }
    return json.dumps(payload).encode(), attributes
