"""``ConformanceSuite``: the Hypothesis suite as a pytest class to subclass."""
from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import settings as Settings

from vfs_state.testing.conformance import run_conformance


class ConformanceSuite:
    """Subclass as ``class TestMyConnector(ConformanceSuite)`` and set what you claim.

    The test takes the sidecar from your ``vfs_state_socket`` fixture. The
    class attributes state the connector's promises, and the suite holds it
    to them; claiming ``cas = True`` for a store that drops preconditions
    fails.

    Attributes:
        cas: compare-and-set (``If-Match``/``If-None-Match`` honoured); False
            checks last-writer-wins.
        write_mode: ``"buffered"`` or ``"passthrough"``.
        real_directories: empty directories survive (a real file tree).
        content_versions: equal bytes give equal versions (content hashes).
        settings: Hypothesis settings, e.g. ``settings(max_examples=10)``;
            None uses the loaded profile.
    """

    cas: ClassVar[bool] = True
    write_mode: ClassVar[str] = "buffered"
    real_directories: ClassVar[bool] = False
    content_versions: ClassVar[bool] = False
    settings: ClassVar[Settings | None] = None

    def test_conformance(self, vfs_state_socket: Any) -> None:
        run_conformance(str(vfs_state_socket), cas=self.cas, write_mode=self.write_mode,
                        real_directories=self.real_directories,
                        content_versions=self.content_versions, settings=self.settings)
