"""The README's main job: build a busybox image offline and run a container from it.

Until the engine lands this drives the OCI runtime directly: the image's layers are unpacked
into a bundle's rootfs, ``dockyard-runc spec`` writes its config.json, and the container is
created, started, listed and deleted through the real ``dockyard-runc`` command line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from dockyard.linux import libc
from testbed import images
from testbed.bundles import make_bundle

RUNC = str(Path(sys.executable).with_name("dockyard-runc"))


def _say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def _run(*argv: str) -> None:
    print("$ " + shlex.join(argv), flush=True)
    subprocess.run(argv, check=True)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root", file=sys.stderr)
        return 1
    _say("building the busybox image offline (Debian's static busybox)")
    image = images.busybox()
    print(f"OCI layout {image.oci_layout}\nmanifest   {image.manifest_digest}")
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)  # so we can collect the container's exit
    with tempfile.TemporaryDirectory(prefix="dockyard-demo-") as tmp:
        bundle = Path(tmp)
        _say("unpacking it into an OCI bundle; config.json from `dockyard-runc spec`")
        make_bundle(image, bundle, RUNC, [
            "sh", "-c", 'echo "Hello from a Dockyard container!"; '
            'echo "hostname: $(hostname)  pid: $$  user: $(id -un)"; '
            'echo "rootfs: $(ls /bin | wc -l) busybox applets"; sleep 1'])
        cid = f"demo-{os.getpid()}"
        _say("running a container from it")
        _run(RUNC, "create", "--bundle", str(bundle), cid)
        try:
            _run(RUNC, "start", cid)
            _run(RUNC, "list")
            pid = json.loads(subprocess.run([RUNC, "state", cid], check=True,
                                            capture_output=True, text=True).stdout)["pid"]
            _, status = os.waitpid(pid, 0)
            print(f"container exited with status {os.waitstatus_to_exitcode(status)}")
            _run(RUNC, "list")
        finally:
            _run(RUNC, "delete", "--force", cid)
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
