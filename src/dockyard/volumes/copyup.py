"""docker's copy-up: an empty volume mounted where the image has content is filled with that
content (files, directories, symlinks, devices, hard links; owners, modes, times and
extended attributes kept) before the container starts, and takes the owner and mode of the
image's directory (moby ``copyExistingContents`` + ``copyOwnership``).

The source is a container's rootfs, which is untrusted: the path is resolved with
:func:`~dockyard.linux.paths.secure_join` and nothing below it is followed as a link; files are
created with ``O_EXCL | O_NOFOLLOW`` in the destination.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.linux.paths import secure_join


def copy_up(rootfs: str, destination: str, volume_dir: str) -> bool:
    """Fill ``volume_dir`` from ``destination`` inside ``rootfs`` if the volume is empty and
    the image has a directory there; whether anything was done."""
    source = secure_join(rootfs, destination)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode) or os.listdir(volume_dir):
        return False
    links: dict[tuple[int, int], str] = {}
    _copy_tree(source, volume_dir, links)
    _copy_meta(source, volume_dir, st)
    return True


def _copy_tree(src: str, dst: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        s = entry.path
        d = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_tree(s, d, links)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
            os.link(links[(st.st_dev, st.st_ino)], d)
            continue
        elif stat.S_ISREG(mode):
            _copy_file(s, d)
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = d
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or \
                stat.S_ISSOCK(mode):
            os.mknod(d, mode, st.st_rdev)
        else:
            continue
        _copy_meta(s, d, st)


def _copy_file(src: str, dst: str) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
        try:
            while True:
                try:
                    n = os.copy_file_range(fin, fout, 1 << 30)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                       errno.EINVAL):
                        raise
                    _copy_plain(fin, fout)
                    break
                if n == 0:
                    break
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_plain(fin: int, fout: int) -> None:
    while chunk := os.read(fin, 1 << 20):
        os.write(fout, chunk)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))     # after chown, which clears setuid bits
        try:
            for name in os.listxattr(src, follow_symlinks=False):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                            follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
                raise
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
