"""The runtime's code bundle: modules served from one file, never stale."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dockyard import codebundle

SRC = str(Path(codebundle.__file__).parents[1])


def _python(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-IS", "-c", code, SRC, *args], check=True,
                          capture_output=True, text=True).stdout


def test_serves_runtime_modules_from_the_bundle(tmp_path: Path) -> None:
    bundle = str(tmp_path / "runtime.bundle")
    out = _python("import sys; sys.path.insert(0, sys.argv[1]); import dockyard.codebundle as b;"
                  "print(b.build(sys.argv[2]))", bundle)
    assert int(out) > 40
    out = _python(
        "import sys; sys.path.insert(0, sys.argv[1]); import dockyard.codebundle as b;"
        "assert b.install(sys.argv[2]);"
        "import dockyard.runtime.create as c, ctypes;"
        "print(type(c.__loader__).__name__, c.__file__, type(ctypes.__loader__).__name__);"
        "print(c.__doc__, c.now.__doc__)", bundle)
    first, second = out.splitlines()
    assert first.split() == ["BundleFinder", os.path.join(SRC, "dockyard/runtime/create.py"),
                             "BundleFinder"]
    assert second == "None None"     # docstrings stripped


def test_a_changed_source_is_imported_normally(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    subprocess.run(["cp", "-r", os.path.join(SRC, "dockyard"), str(tree)], check=True)
    bundle = str(tmp_path / "runtime.bundle")
    build = ("import sys; sys.path.insert(0, sys.argv[1]); import dockyard.codebundle as b;"
             "b.build(sys.argv[2])")
    subprocess.run([sys.executable, "-IS", "-c", build, str(tree), bundle], check=True)
    target = tree / "dockyard" / "charset.py"
    target.write_text(target.read_text() + "\nEDITED = True\n")
    out = subprocess.run(
        [sys.executable, "-IS", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import dockyard.codebundle as b;"
         "b.install(sys.argv[2]); import dockyard.charset as c, dockyard.values as v;"
         "print(c.EDITED, type(c.__loader__).__name__, type(v.__loader__).__name__)",
         str(tree), bundle], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["True", "SourceFileLoader", "BundleFinder"]


def test_no_bundle_or_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    assert not codebundle.install(str(tmp_path / "missing"))
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00garbage")
    assert not codebundle.install(str(bad))


def test_the_runtime_launcher_runs_with_the_bundle() -> None:
    launcher = Path(sys.executable).parent / "dockyard-runc"
    text = launcher.read_text()
    assert "codebundle.install()" in text
    out = subprocess.run([str(launcher), "--version"], check=True, capture_output=True,
                         text=True).stdout
    assert "dockyard-runc" in out or "version" in out
