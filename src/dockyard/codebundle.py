"""One file with the bytecode of every module ``dockyard-runc`` imports, for a faster start.

``dockyard-runc`` is a new interpreter for every verb an engine calls (create, start, state,
delete...), and importing its ~60 modules one by one is a third of its start: for each, the
path finder stats directories, the loader stats the source, opens, reads and validates the
``.pyc``, and unmarshals code that carries every docstring. The bundle holds those modules'
code objects (docstrings stripped, line numbers kept) in one file: an index, read at start,
then each module's code, read (one ``pread``) only when it is imported, so a light verb such
as ``state`` pays for the few modules it loads. A meta path finder serves a module from it
when the source file still has the size and mtime it was compiled from, and otherwise lets
the normal import find it, so an edited or missing module is never served stale.

Build it (``./dev setup`` does, after every install)::

    python -IS -m dockyard.codebundle        # writes dockyard/__pycache__/runtime.<tag>.bundle

The runtime's launcher imports this module first; :func:`install` is a no-op without a bundle.
This module imports only built-in modules, and not even ``os`` (~1 ms: its ABCs) on the
runtime's path: the bundle's loader must not cost what it saves.
"""

from __future__ import annotations

import marshal
import posix
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import CodeType, ModuleType
else:
    from _frozen_importlib import ModuleSpec  # importlib.machinery's, already loaded

#: name -> (origin, is a package, source mtime_ns, source size, code offset, code length)
Entry = tuple[str, bool, int, int, int, int]

MAGIC = b"DYCB"
FORMAT = 3
_HEAD = 12  # MAGIC, then the index's length (8 bytes, little-endian)
#: what the runtime imports: the bundle holds these and everything they import
ROOTS = (
    "dockyard.runtime.fastpath", "dockyard.runtime.cli", "dockyard.runtime.run",
    "dockyard.runtime.create", "dockyard.runtime.start", "dockyard.runtime.delete",
    "dockyard.runtime.kill",
    "dockyard.runtime.state", "dockyard.runtime.exec", "dockyard.runtime.ps",
    "dockyard.runtime.pause", "dockyard.runtime.lsm", "dockyard.runtime.userns",
    "dockyard.runtime.hooks", "dockyard.runtime.console", "dockyard.runtime.seccomp",
    "dockyard.cgroups.v1", "dockyard.cgroups.v2", "dockyard.linux.netdev",
)


def interpreter() -> str:
    """Who may use a bundle: the interpreter that built it (its stdlib modules are in it)."""
    return f"{sys.version} {sys.base_prefix}"


def bundle_path() -> str:
    return f"{_dirname(__file__)}/__pycache__/runtime.{sys.implementation.cache_tag}.bundle"


def _dirname(path: str) -> str:
    """``os.path.dirname`` of an absolute file path."""
    return path.rpartition("/")[0] or "/"


class BundleFinder:
    """A meta path finder and loader for the modules of one bundle."""

    def __init__(self, fd: int, base: int, entries: dict[str, Entry]) -> None:
        self.fd = fd          # the bundle, open (close-on-exec) for the process's life
        self.base = base      # where the code starts
        self.entries = entries

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        entry = self.entries.get(name)
        if entry is None:
            return None
        origin, is_pkg, mtime_ns, size, _offset, _length = entry
        try:
            st = posix.stat(origin)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # edited since the bundle was built: the normal import compiles it
        spec = ModuleSpec(name, self, origin=origin, is_package=is_pkg)  # type: ignore[arg-type]
        spec.has_location = True
        if is_pkg:
            spec.submodule_search_locations = [_dirname(origin)]
        return spec

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        # the bundle is as trusted as a .pyc beside the source: written by the package's owner
        offset, length = self.entries[module.__name__][4:]
        code = marshal.loads(posix.pread(self.fd, length, self.base + offset))  # noqa: S302
        exec(code, module.__dict__)  # noqa: S102


def install(path: str | None = None) -> bool:
    """Put the bundle's finder first on ``sys.meta_path``; False when there is no usable
    bundle (none built, another interpreter's, unreadable)."""
    try:
        fd = posix.open(path or bundle_path(), posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        head = posix.pread(fd, _HEAD, 0)
        if len(head) != _HEAD or head[:4] != MAGIC:
            raise ValueError("not a bundle")
        size = int.from_bytes(head[4:], "little")
        doc = marshal.loads(posix.pread(fd, size, _HEAD))  # noqa: S302 - see exec_module
        if not isinstance(doc, tuple) or len(doc) != 3 or doc[0] != FORMAT \
                or doc[1] != interpreter() or not isinstance(doc[2], dict):
            raise ValueError("another format or interpreter")
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        return False
    sys.meta_path.insert(0, BundleFinder(fd, _HEAD + size, doc[2]))
    return True


# --- building (not on the runtime's path) ---------------------------------------------------

def _strip_docstrings(source: bytes, filename: str) -> CodeType:
    """The module's code without docstrings (module, class, function), line numbers kept."""
    import ast

    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                first = body[0]
                if len(body) == 1:  # keep a body: a pass on the docstring's line
                    body[0] = ast.copy_location(ast.Pass(), first)
                else:
                    del body[0]
    return compile(tree, filename, "exec", dont_inherit=True)


def build(path: str | None = None, roots: Sequence[str] = ROOTS) -> int:
    """Import ``roots`` and write every pure-Python module that brought in (dockyard's and the
    standard library's) into the bundle; returns how many modules it holds."""
    import importlib
    import os

    before = set(sys.modules)
    for name in roots:
        importlib.import_module(name)
    entries: dict[str, Entry] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(set(sys.modules) - before | {n for n in sys.modules
                                                      if n.startswith("dockyard.")}):
        mod = sys.modules.get(name)
        spec = getattr(mod, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if spec is None or not origin or not origin.endswith(".py") \
                or type(spec.loader).__name__ != "SourceFileLoader" \
                or name == __name__:
            continue
        with open(origin, "rb") as f:
            source = f.read()
        st = os.stat(origin)
        blob = marshal.dumps(_strip_docstrings(source, origin))
        entries[name] = (origin, spec.submodule_search_locations is not None,
                         st.st_mtime_ns, st.st_size, offset, len(blob))
        blobs.append(blob)
        offset += len(blob)
    out = path or bundle_path()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    index = marshal.dumps((FORMAT, interpreter(), entries))
    with open(tmp, "wb") as f:
        f.write(MAGIC + len(index).to_bytes(8, "little") + index)
        f.writelines(blobs)
    os.replace(tmp, out)
    return len(entries)


if __name__ == "__main__":
    n = build(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"{bundle_path() if len(sys.argv) < 2 else sys.argv[1]}: {n} modules")
