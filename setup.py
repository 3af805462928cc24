"""Metadata lives in setup.cfg; this file only ships the start-up ``.pth`` hook.

setuptools has no declarative way to put a ``.pth`` file at the root of
site-packages, which is what lets ``VFS_STATE_MOUNTS`` activate the shim in
an unmodified handler process. Regular wheels get it from ``build_py``;
editable (PEP 660) wheels skip ``build_py``, so ``editable_wheel`` adds it too.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "vfs_state_autoinstall.pth"
HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


class _StrategyWithPth:
    """Wraps setuptools' editable strategy so the wheel also carries our ``.pth``."""

    def __init__(self, strategy):
        self._strategy = strategy

    def __enter__(self):
        self._strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self._strategy.__exit__(*exc)

    def __call__(self, wheel, files, mapping):
        self._strategy(wheel, files, mapping)
        with open(os.path.join(HERE, PTH), encoding="utf-8") as handle:
            wheel.writestr(PTH, handle.read())


class EditableWheelWithPth(editable_wheel):
    # PRIVATE HOOK: ``editable_wheel._select_strategy(name, tag, build_lib)``,
    # checked on setuptools 65.5 and 84.2. If setuptools renames it, the
    # AttributeError below fails the editable build loudly, and
    # tests/test_activation.py (editable install) fails too.
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
