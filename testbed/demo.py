"""The README's main job: build a busybox image offline and run a container from it.

The image is built from Debian's static busybox (no registry, no internet), loaded into the
engine with ``dockyard load``, and a container runs from it with ``dockyard run``; ``dockyard
ps -a`` then lists it, and ``dockyard rm`` removes it. Everything goes through the real
``dockyard`` command line, on the engine's default root (``/var/lib/dockyard``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from testbed import images

DOCKYARD = str(Path(sys.executable).with_name("dockyard"))


def _say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    print("$ " + shlex.join(["dockyard", *argv[1:]] if argv[0] == DOCKYARD else argv),
          flush=True)
    return subprocess.run(argv, check=check)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root", file=sys.stderr)
        return 1
    _say("building the busybox image offline (Debian's static busybox)")
    image = images.busybox()
    assert image.docker_archive is not None
    print(f"docker archive {image.docker_archive}\nmanifest       {image.manifest_digest}")
    _say("loading it into the engine")
    _run(DOCKYARD, "load", "-i", str(image.docker_archive))
    _run(DOCKYARD, "images", "busybox")
    name = f"dockyard-demo-{os.getpid()}"
    _say("running a container from it")
    try:
        _run(DOCKYARD, "run", "--name", name, "--hostname", "demo", "busybox", "sh", "-c",
             'echo "Hello from a Dockyard container!"; '
             'echo "hostname: $(hostname)  pid: $$  user: $(id -un)"; '
             'echo "rootfs: $(ls /bin | wc -l) busybox applets"')
        _say("listing it")
        _run(DOCKYARD, "ps", "-a", "--filter", f"name={name}")
    finally:
        _run(DOCKYARD, "rm", "-f", name, check=False)
        # the default bridge stays once made, as docker0 does; the demo leaves none behind
        _run(DOCKYARD, "system", "teardown", check=False)
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
