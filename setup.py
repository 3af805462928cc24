"""Metadata lives in setup.cfg; this file only ships the start-up ``.pth`` hook.

setuptools has no declarative way to put a ``.pth`` file at the root of
site-packages, which is what lets ``VFS_STATE_MOUNTS`` activate the shim in
an unmodified handler process.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "vfs_state_autoinstall.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
