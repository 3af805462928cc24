"""Where the shim injects itself, and how it takes itself out again.

All knowledge of *where* to patch lives here. Each adapter module declares
what it replaces as ``{(module, attribute): replacement}`` (an attribute may
be dotted, ``"Path.touch"``); the patcher resolves owners, keeps one table
of originals ``(owner, attribute, original)``, applies the replacements, then
rebinds aliases in other modules (``aliases.rebind``). Uninstall restores in
reverse order, exactly (identity). Install when installed and uninstall when
not installed are no-ops.

Late patches keep start-up cheap: the adapters of modules a process need not
import (``tempfile``, ``mmap``, ``fcntl``) are applied at
install if the module is imported already, else by ``imported(name)``,
which the import hook (``shim.libraries.hook``) calls right after the
module's body ran, before any importer can bind its functions.
"""
from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import NamedTuple

from vfs_state.shim import aliases
from vfs_state.shim.router import MountTable

PatchKey = tuple[str, str]
Factory = Callable[[MountTable], Mapping[PatchKey, Callable]]
_MISSING = object()


class Original(NamedTuple):
    """One saved binding: ``owner.attribute`` was ``value`` (or absent).

    (A tuple, not a dataclass: ``dataclasses`` costs start-up time.)
    """

    owner: object
    attribute: str
    value: object
    own: bool  # False: the value was inherited (a class attribute); restore by deleting

    def restore(self) -> None:
        if self.own:
            setattr(self.owner, self.attribute, self.value)
        elif self.attribute in vars(self.owner):
            delattr(self.owner, self.attribute)


def _owner(key: PatchKey) -> tuple[object, str]:
    module_name, dotted = key
    owner: object = importlib.import_module(module_name)
    *path, attribute = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attribute


def _save(owner: object, attribute: str) -> Original | None:
    if isinstance(owner, type):
        own = attribute in vars(owner)
        value = vars(owner)[attribute] if own else getattr(owner, attribute, _MISSING)
    else:
        own = True
        value = getattr(owner, attribute, _MISSING)
    return None if value is _MISSING else Original(owner, attribute, value, own)


def _pickle_by_reference(plan: list[tuple[Original, Callable]]) -> None:
    """Let ``pickle`` find each replacement where it was installed (``pool.map(os.remove, ...)``).

    ``functools.wraps`` copied the original's ``__module__`` (``posix`` for
    ``os.stat``), where pickle would find the original instead and refuse.
    """
    for original, replacement in plan:
        owner = original.owner
        if not isinstance(owner, ModuleType):
            continue
        home = sys.modules.get(getattr(replacement, "__module__", None) or "")
        if getattr(home, getattr(replacement, "__qualname__", ""), None) is not replacement:
            replacement.__module__ = owner.__name__
            replacement.__qualname__ = original.attribute


class Patcher:
    """Applies the adapters' replacements against one ``MountTable``."""

    def __init__(self, factories: Sequence[Factory], table: MountTable,
                 late: Mapping[str, Factory] | None = None) -> None:
        self._factories = list(factories)
        self._late = dict(late or {})  # module name -> factory, applied once it is imported
        self._waiting: set[str] = set()  # late modules not imported yet
        self._table = table
        self._lock = threading.RLock()
        self._originals: list[Original] = []
        self._aliases: list[Original] = []
        self._replaced: dict[int, tuple[object, object]] = {}  # id(original) -> pair
        self.active = False

    @property
    def originals(self) -> list[Original]:
        """Every binding the shim changed, in the order it changed them."""
        return list(self._originals) + list(self._aliases)

    def install(self) -> None:
        """Patch everything (no-op when already installed)."""
        with self._lock:
            if self.active:
                return
            self._waiting = {name for name in self._late if name not in sys.modules}
            ready = [factory for name, factory in self._late.items()
                     if name not in self._waiting]
            plan = self._plan([*self._factories, *ready])
            try:
                self._apply(plan)
                self._aliases = [Original(m, a, v, True)
                                 for m, a, v in aliases.rebind(self._replaced)]
                _pickle_by_reference(plan)
            except BaseException:
                self._undo()
                raise
            self.active = True

    def imported(self, name: str) -> None:
        """Module ``name`` was just imported: apply its late patches (once per install).

        No alias scan: nothing can have copied the module's functions yet.
        """
        with self._lock:
            if not self.active or name not in self._waiting:
                return
            self._waiting.discard(name)
            plan = self._plan([self._late[name]])
            self._apply(plan)
            _pickle_by_reference(plan)

    def _apply(self, plan: list[tuple[Original, Callable]]) -> None:
        for original, replacement in plan:
            self._originals.append(original)
            setattr(original.owner, original.attribute, replacement)
            self._replaced.setdefault(id(original.value), (original.value, replacement))

    def _plan(self, factories: Sequence[Factory]) -> list[tuple[Original, Callable]]:
        """Build every replacement and resolve every owner before touching any."""
        plan: list[tuple[Original, Callable]] = []
        for factory in factories:
            for key, replacement in factory(self._table).items():
                owner, attribute = _owner(key)
                original = _save(owner, attribute)
                if original is not None:
                    plan.append((original, replacement))
        return plan

    def uninstall(self) -> None:
        """Restore every original (no-op when not installed)."""
        with self._lock:
            if not self.active:
                return
            self._undo()
            self.active = False

    def _undo(self) -> None:
        for original in reversed(self._originals):
            original.restore()
        # aliases found at install, and copies modules imported since have made
        aliases.rebind({id(new): (new, old) for old, new in self._replaced.values()})
        self._aliases = []
        self._originals = []
        self._replaced = {}
        self._waiting = set()
