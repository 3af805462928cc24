"""Child process for one large transfer, so its peak RSS is the client's alone.

``python -m benchmarks._transfer '{"client": "statefs", "op": "write", ...}'``
prints one JSON line: seconds (transfer only, imports excluded), bytes,
bytes received over the sidecar socket, RSS after imports and peak RSS
(the kernel's ``VmHWM``, exact). Data is generated on the fly, never held whole.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.common import GeneratedStream, MiB, chunks


def _status_mib(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process. Not ``ru_maxrss``: Linux keeps
    that across ``execve``, so a child would inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def statefs(spec: dict[str, Any]) -> tuple[float, int, int]:
    from vfs_state import StateFS
    fs = StateFS(spec["socket"], spec["mode"], timeout=600)
    path, size = spec["path"], spec["size"]
    start = time.perf_counter()
    moved = 0
    if spec["op"] == "write":
        with fs.openbin(path, "w", create_parents=True) as f:
            for piece in chunks(size, MiB):
                f.write(piece)
                moved += len(piece)
    else:
        with fs.openbin(path, "r") as f:
            while piece := f.read(MiB):
                moved += len(piece)
    seconds = time.perf_counter() - start
    received = fs.client.transport.bytes_received
    fs.close()
    return seconds, moved, received


def boto3_client(spec: dict[str, Any]) -> tuple[float, int, int]:
    import boto3

    from tests.harness.moto_s3 import ACCESS_KEY, REGION, SECRET_KEY
    s3 = boto3.session.Session().client("s3", endpoint_url=spec["endpoint"], region_name=REGION,
                                        aws_access_key_id=ACCESS_KEY,
                                        aws_secret_access_key=SECRET_KEY)
    bucket, key, size = spec["bucket"], spec["key"], spec["size"]
    start = time.perf_counter()
    moved = 0
    if spec["op"] == "write":
        from boto3.s3.transfer import TransferConfig
        config = TransferConfig(max_concurrency=spec.get("concurrency") or 10)  # boto3's default
        s3.upload_fileobj(GeneratedStream(size), bucket, key, Config=config)
        moved = size
    else:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        for piece in body.iter_chunks(MiB):
            moved += len(piece)
    return time.perf_counter() - start, moved, moved


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    run = statefs if spec["client"] == "statefs" else boto3_client
    # import what the transfer needs before measuring the baseline
    if spec["client"] == "statefs":
        import vfs_state  # noqa: F401
    else:
        import boto3  # noqa: F401
    baseline = _status_mib("VmRSS")
    seconds, moved, received = run(spec)
    if moved != spec["size"]:
        raise SystemExit(f"moved {moved} bytes, expected {spec['size']}")
    peak = _status_mib("VmHWM")
    print(json.dumps({"seconds": seconds, "bytes": moved, "bytes_received": received,
                      "rss_after_imports_mib": round(baseline, 1),
                      "peak_rss_mib": round(peak, 1)}))


if __name__ == "__main__":
    main(sys.argv[1:])
