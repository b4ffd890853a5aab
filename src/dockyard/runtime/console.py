"""Terminals: the container side (a pty made inside the container, its master handed over a
console socket, runc's protocol) and the caller side (``run``/``exec`` in the foreground with a
terminal: receive the master and copy bytes between it and our own stdio)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty

from dockyard.errors import DockyardError, InvalidArgument

_TIOCSWINSZ = termios.TIOCSWINSZ
_TIOCGWINSZ = termios.TIOCGWINSZ


def connect(path: str) -> socket.socket:
    """Connect to a console socket (a path on the host), before the container's pivot_root."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        s.close()
        raise InvalidArgument(f"console socket {path}: {exc.strerror}") from None
    return s


def make_pty_and_send(sock: socket.socket, uid: int, gid: int,
                      size: tuple[int, int] | None) -> None:
    """In the container (after pivot_root): make a pty on its devpts, send the master over
    ``sock``, and make the slave our controlling terminal and stdio."""
    master, slave = os.openpty()
    os.fchown(slave, uid, gid)
    if size is not None:
        set_size(slave, *size)
    socket.send_fds(sock, [b"/dev/ptmx"], [master])
    os.close(master)
    sock.close()
    os.login_tty(slave)


def bind_console() -> None:
    """Bind our controlling pty (now on fd 0) over /dev/console, as runc does."""
    from dockyard.linux import libc as k

    slave = os.ttyname(0)
    if not os.path.exists("/dev/console"):
        with open("/dev/console", "a"):
            pass
    k.mount(slave, "/dev/console", None, k.MS_BIND)


def recv_master(sock: socket.socket) -> int:
    _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise DockyardError("console socket: the container sent no terminal")
    return fds[0]


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, _TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def copy_size(src: int, dst: int) -> None:
    with contextlib.suppress(OSError):
        buf = array.array("H", [0, 0, 0, 0])
        fcntl.ioctl(src, _TIOCGWINSZ, buf, True)
        fcntl.ioctl(dst, _TIOCSWINSZ, buf)


def proxy(master: int, init_pidfd: int) -> None:
    """Copy stdin → master and master → stdout until the container's process exits and its
    output is drained. Puts our terminal in raw mode meanwhile (restored on return)."""
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    if stdin_tty:
        # the handler first: a resize between the copy and the handler would be lost
        signal.signal(signal.SIGWINCH, lambda *_: copy_size(0, master))
        copy_size(0, master)
        tty.setraw(0)
    readers = [master, init_pidfd, 0]
    try:
        while True:
            ready, _, _ = select.select(readers, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    data = b""
                if not data:
                    return
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    readers.remove(0)
            if init_pidfd in ready:
                readers = [r for r in readers if r not in (0, init_pidfd)]
                # the process is gone: drain what it wrote, without blocking on a slave that
                # some grandchild may still hold open
                while select.select([master], [], [], 0.05)[0]:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        return
                    if not data:
                        return
                    os.write(1, data)
                return
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
