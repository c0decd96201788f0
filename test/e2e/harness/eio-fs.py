"""A pass-through FUSE filesystem whose writes fail with EIO while a flag file exists.

Usage: eio-fs.py BACKING_DIR MOUNT_POINT FLAG_FILE

Reads always pass through; creating, writing, renaming and making directories fail with EIO
while FLAG_FILE exists, as on a disk whose writes fail. Runs in the foreground until unmounted.
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations

STAT_FIELDS = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid", "st_ino")
STATVFS_FIELDS = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")


class FailingWrites(Operations):
    def __init__(self, root, flag):
        self.root = root
        self.flag = flag

    def _path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def _write_check(self):
        if os.path.exists(self.flag):
            raise FuseOSError(errno.EIO)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        return {k: getattr(st, k) for k in STAT_FIELDS}

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {k: getattr(st, k) for k in STATVFS_FIELDS}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR):
            self._write_check()
        return os.open(self._path(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def create(self, path, mode, fi=None):
        self._write_check()
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def write(self, path, data, offset, fh):
        self._write_check()
        return os.pwrite(fh, data, offset)

    def fsync(self, path, datasync, fh):
        self._write_check()
        return os.fsync(fh)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return os.close(fh)

    def mkdir(self, path, mode):
        self._write_check()
        return os.mkdir(self._path(path), mode)

    def rename(self, old, new):
        self._write_check()
        return os.rename(self._path(old), self._path(new))

    def rmdir(self, path):
        return os.rmdir(self._path(path))

    def unlink(self, path):
        return os.unlink(self._path(path))

    def truncate(self, path, length, fh=None):
        self._write_check()
        os.truncate(self._path(path), length)

    def chmod(self, path, mode):
        return os.chmod(self._path(path), mode)

    def utimens(self, path, times=None):
        return os.utime(self._path(path), times)


if __name__ == "__main__":
    FUSE(FailingWrites(sys.argv[1], sys.argv[3]), sys.argv[2], foreground=True, nothreads=False)
