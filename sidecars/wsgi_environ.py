"""The WSGI environ of a parsed request, with the keys gunicorn's ``wsgi.create`` sets.

The same values as gunicorn for what Flask, werkzeug and the sidecar's views
read: ``REQUEST_METHOD``, ``PATH_INFO`` (percent-decoded, as latin-1),
``RAW_URI``, ``QUERY_STRING``, ``SERVER_PROTOCOL``, ``CONTENT_TYPE``,
``CONTENT_LENGTH``, ``HTTP_*`` (repeated headers joined with ``,``),
``SERVER_NAME``/``SERVER_PORT`` (from ``Host`` on a Unix socket),
``REMOTE_ADDR``, ``SCRIPT_NAME`` (from the environment) and the ``wsgi.*``
keys. Left out, as the sidecar needs none: ``wsgi.file_wrapper`` (werkzeug
falls back to its own), ``wsgi.early_hints``, the PROXY protocol and
forwarded-scheme headers.
"""
from __future__ import annotations

import os
from typing import Any

from gunicorn import SERVER_SOFTWARE
from gunicorn.http.errors import ConfigurationProblem
from gunicorn.http.wsgi import WSGIErrorsWrapper
from gunicorn.util import unquote_to_wsgi_str

from sidecars.http_request import Request

_KEYS: dict[str, str] = {}  # header name -> environ key, for the names seen most
_KEYS_MAX = 256


def worker_environ(cfg: Any) -> dict[str, Any]:
    """The keys every request of a worker shares (built once per worker)."""
    return {
        "wsgi.errors": WSGIErrorsWrapper(cfg),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": cfg.workers > 1,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.url_scheme": "http",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SCRIPT_NAME": os.environ.get("SCRIPT_NAME", ""),
    }


def connection_environ(base: dict[str, Any], sock: Any, client: Any) -> dict[str, Any]:
    """``base`` plus the keys of one client connection."""
    env = dict(base)
    env["gunicorn.socket"] = sock
    if isinstance(client, str):  # a Unix socket's peer: usually ""
        env["REMOTE_ADDR"] = client
    elif isinstance(client, bytes):
        env["REMOTE_ADDR"] = client.decode()
    else:
        env["REMOTE_ADDR"] = client[0]
        env["REMOTE_PORT"] = str(client[1])
    return env


def request_environ(req: Request, conn: dict[str, Any], server: Any) -> dict[str, Any]:
    """The environ of ``req`` on a connection whose keys are ``conn``."""
    env = dict(conn)
    env["wsgi.input"] = req.body
    env["REQUEST_METHOD"] = req.method
    env["QUERY_STRING"] = req.query
    env["RAW_URI"] = req.uri
    env["SERVER_PROTOCOL"] = "HTTP/1.1" if req.version == (1, 1) else "HTTP/1.0"
    host = None
    repeated: dict[str, list[str]] | None = None
    for name, value in req.headers:
        if name == "CONTENT-TYPE":
            env["CONTENT_TYPE"] = value
            continue
        if name == "CONTENT-LENGTH":
            env["CONTENT_LENGTH"] = value
            continue
        if name == "HOST":
            host = value
        key = _KEYS.get(name)
        if key is None:
            key = "HTTP_" + name.replace("-", "_")
            if len(_KEYS) < _KEYS_MAX:
                _KEYS[name] = key
        if key in env:  # joined once at the end, as gunicorn does
            if repeated is None:
                repeated = {}
            repeated.setdefault(key, [env[key]]).append(value)
        else:
            env[key] = value
    if repeated:
        for key, values in repeated.items():
            env[key] = ",".join(values)
    _server_keys(env, server, host)
    path = req.path
    script_name = env["SCRIPT_NAME"]
    if script_name:
        if not path.startswith(script_name):
            raise ConfigurationProblem(f"Request path {path!r} does not start with "
                                       f"SCRIPT_NAME {script_name!r}")
        path = path[len(script_name):]
    env["PATH_INFO"] = unquote_to_wsgi_str(path) if "%" in path else path
    return env


def _server_keys(env: dict[str, Any], server: Any, host: str | None) -> None:
    """``SERVER_NAME``/``PORT``: a Unix socket has neither, so gunicorn takes ``Host``."""
    if isinstance(server, str):
        parts: list[Any] = server.split(":")
        if len(parts) == 1:
            if host:
                parts = host.split(":")
                if len(parts) == 1:
                    parts.append("80")
            else:
                parts.append("")
    else:
        parts = list(server)
    env["SERVER_NAME"] = parts[0]
    env["SERVER_PORT"] = str(parts[1])
