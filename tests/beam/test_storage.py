"""Object reads, listings and idempotent writes: local paths and gs:// on the emulator."""

import os

from voxbeam.beam import storage


def test_local_match_stat_and_atomic_write(tmp_path):
    target = str(tmp_path / "out" / "a.wav")
    assert storage.write_object(target, b"abc", content_type="audio/wav")
    assert storage.write_object(target, b"abcd", content_type="audio/wav")
    assert open(target, "rb").read() == b"abcd"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.wav"]  # no temp files left behind
    (tmp_path / "out" / "sub").mkdir()
    (tmp_path / "out" / "sub" / "b.flac").write_bytes(b"x" * 10)
    found = storage.match(str(tmp_path / "out"))
    assert [os.path.basename(f.uri) for f in found] == ["a.wav", "b.flac"]
    assert storage.stat(target).size == 4
    assert storage.match(str(tmp_path / "out" / "*.wav"))[0].uri == target


def test_gcs_write_is_create_only_and_carries_metadata(bucket):
    uri = f"gs://{bucket}/audio/one.wav"
    meta = {"text_sha256": "aa"}
    assert storage.write_object(uri, b"RIFF....", content_type="audio/wav", metadata=meta) is True
    first = storage.gcs_client().bucket(bucket).get_blob("audio/one.wav")
    # A retried bundle writes the same bytes again: nothing is written, the object stays as it was.
    assert storage.write_object(uri, b"RIFF....", content_type="audio/wav", metadata=meta) is False
    again = storage.gcs_client().bucket(bucket).get_blob("audio/one.wav")
    assert again.generation == first.generation and again.md5_hash == first.md5_hash
    assert [b.name for b in storage.gcs_client().list_blobs(bucket)] == ["audio/one.wav"]
    assert again.content_type == "audio/wav" and again.metadata == meta
    assert storage.read_bytes(uri) == b"RIFF...."
    # Other bytes under the same name (the record changed): replaced, in one upload.
    assert storage.write_object(uri, b"RIFF,,,,", content_type="audio/wav", metadata=meta) is True
    changed = storage.gcs_client().bucket(bucket).get_blob("audio/one.wav")
    assert changed.generation != first.generation and storage.read_bytes(uri) == b"RIFF,,,,"


def test_gcs_match_glob_folder_and_versions(bucket):
    for name in ("in/a.wav", "in/b.mp3", "in/deep/c.wav", "other/d.wav"):
        storage.write_object(f"gs://{bucket}/{name}", name.encode(), content_type="audio/wav")
    assert [f.uri.rsplit("/", 1)[-1] for f in storage.match(f"gs://{bucket}/in/*.wav")] == ["a.wav"]
    assert len(storage.match(f"gs://{bucket}/in")) == 3
    one = storage.stat(f"gs://{bucket}/in/a.wav")
    assert one.size == len(b"in/a.wav") and one.version.isdigit()
    with storage.open_read(f"gs://{bucket}/in/b.mp3") as fh:
        fh.seek(3)
        assert fh.read(1) == b"b"
