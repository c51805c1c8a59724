"""gcp-storage-emulator for the tests, with the one part of GCS it lacks that VoxBeam relies on.

Its uploads ignore ``ifGenerationMatch``, so a create-only write (``if_generation_match=0``)
overwrites instead of failing with 412 as Cloud Storage does; our writes would then never take
their "already there" path in a test. ``start`` wraps its upload handler to honour the
precondition as the JSON API documents it (a generation that differs, or 0 for an object that
exists: 412 Precondition Failed), and starts the emulator on a free port.
"""

from __future__ import annotations

import functools
import logging
from http import HTTPStatus
from typing import Any

PRECONDITION_FAILED = {
    "error": {
        "code": 412,
        "message": "At least one of the pre-conditions you specified did not hold.",
        "errors": [{"domain": "global", "reason": "conditionNotMet", "message": "Precondition Failed"}],
    }
}


def _object_name(request: Any) -> str | None:
    if request.query.get("name"):
        return str(request.query["name"][0])
    meta = request.data.get("meta") if isinstance(request.data, dict) else None
    return str(meta["name"]) if isinstance(meta, dict) and meta.get("name") else None


def _honouring_preconditions(insert: Any) -> Any:
    from gcp_storage_emulator.exceptions import NotFound

    @functools.wraps(insert)
    def wrapped(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
        wanted = request.query.get("ifGenerationMatch")
        name = _object_name(request)
        if wanted and name is not None:
            try:
                current = str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
            except NotFound:
                current = "0"
            if current != wanted[0]:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json(PRECONDITION_FAILED)
                return None
        return insert(request, response, storage, *args, **kwargs)

    wrapped.honours_preconditions = True  # type: ignore[attr-defined]
    return wrapped


def _extend() -> None:
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    if getattr(objects.insert, "honours_preconditions", False):
        return
    wrapped = _honouring_preconditions(objects.insert)
    for _, methods in server.HANDLERS:
        for method, handler in list(methods.items()):
            if handler is objects.insert:
                methods[method] = wrapped
    objects.insert = wrapped  # the server's fallback for uploads posted without the /upload prefix


def start() -> tuple[Any, str]:
    """An in-memory emulator on a free port; (server, its http://host:port)."""
    from gcp_storage_emulator.server import create_server

    _extend()
    # The emulator warns on every download; that noise hides real log lines.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    return server, f"http://127.0.0.1:{server._api._httpd.server_address[1]}"
