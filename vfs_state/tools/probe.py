"""One health request to a sidecar, with a hard deadline (a Kubernetes probe)."""
from __future__ import annotations

import json
from typing import Any

from vfs_state.transport import UnixHTTPConnection


def probe(name: str, socket_path: str, route: str, timeout: float) -> dict[str, Any]:
    """``{"mount", "socket", "route", "ok", "error"}`` for one ``GET route``."""
    result: dict[str, Any] = {"mount": name, "socket": socket_path, "route": route,
                              "ok": False, "error": None}
    conn = UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        conn.request("GET", route)
        reply = conn.getresponse()
        body = reply.read()
    except TimeoutError:
        result["error"] = f"no answer within {timeout:g}s"
        return result
    except OSError as exc:
        result["error"] = f"unreachable: {exc.strerror or exc or type(exc).__name__}"
        return result
    finally:
        conn.close()
    if reply.status == 200:
        result["ok"] = True
    else:
        result["error"] = f"HTTP {reply.status}: {_message(body)}"
    return result


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message") or "")[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
