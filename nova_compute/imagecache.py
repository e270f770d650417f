"""Base images cached on the compute host, one file per image id.

``fetch`` returns the absolute path of ``<cache_dir>/<image_id>``, bringing the
image in first when it is not cached: read from the source in chunks by a
*fetcher* (today: a local file; later: HTTP from the image service), hashed
while written to a temp file, fsynced, then renamed into place, so the cache
never shows a partial or unverified image. One fetch per image at a time (a
thread lock plus a flock for other processes): concurrent first builds of one
image copy it once. A cached file is trusted (re-verification comes later).
"""
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import threading
import weakref

from common import exception

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# The id becomes a file name: no '/', no leading dot (temp and lock files use one).
_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def read_file_chunks(source_path):
    """The default fetcher: yield the bytes of a local file, chunk by chunk."""
    with open(source_path, "rb") as f:
        while True:
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


class ImageCache:
    def __init__(self, cache_dir, fetcher=read_file_chunks):
        """``fetcher(source)`` yields the image's bytes; OSError means the
        source is unavailable."""
        self.cache_dir = os.path.abspath(cache_dir)
        self._fetcher = fetcher
        self._locks = weakref.WeakValueDictionary()
        self._locks_lock = threading.Lock()

    def path_of(self, image_id):
        if not isinstance(image_id, str) or not _IMAGE_ID.match(image_id):
            raise exception.ImageUnavailable(image=image_id, reason="invalid image id")
        return os.path.join(self.cache_dir, image_id)

    def fetch(self, image_id, source_path, sha256):
        """Absolute path of the cached base of ``image_id``; copies it from
        ``source_path`` first if needed. Raises ImageUnavailable."""
        path = self.path_of(image_id)
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise exception.ImageUnavailable(image=image_id, reason="no valid sha256 given")
        if os.path.exists(path):
            return path
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as exc:
            raise exception.ImageUnavailable(
                image=image_id, reason="cannot create the cache: %s" % exc) from exc
        with self._image_lock(image_id), self._file_lock(image_id):
            if not os.path.exists(path):  # another thread/process may have done it
                self._copy_in(image_id, source_path, sha256.lower(), path)
        return path

    def _copy_in(self, image_id, source, sha256, path):
        try:
            fd, tmp_path = tempfile.mkstemp(dir=self.cache_dir, prefix=".%s." % image_id,
                                            suffix=".part")
        except OSError as exc:
            raise exception.ImageUnavailable(
                image=image_id, reason="cannot write to the cache: %s" % exc) from exc
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as tmp:
                for chunk in self._fetcher(source):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
                tmp.flush()
                os.fchmod(tmp.fileno(), 0o644)  # QEMU may run as another user
                os.fsync(tmp.fileno())
            if digest.hexdigest() != sha256:
                raise exception.ImageUnavailable(
                    image=image_id, reason="checksum mismatch: expected sha256 %s, got %s"
                    % (sha256, digest.hexdigest()))
            os.rename(tmp_path, path)
        except OSError as exc:
            self._remove(tmp_path)
            raise exception.ImageUnavailable(
                image=image_id, reason="copy from %s failed: %s"
                % (source, exc.strerror or exc)) from exc
        except BaseException:
            self._remove(tmp_path)
            raise
        self._fsync_dir()  # make the rename itself durable
        LOG.info("image %s cached at %s (%d bytes)", image_id, path, size)

    def _fsync_dir(self):
        fd = os.open(self.cache_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _remove(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _image_lock(self, image_id):
        # Weak values: a lock lives as long as someone holds or waits for it.
        with self._locks_lock:
            lock = self._locks.get(image_id)
            if lock is None:
                lock = self._locks[image_id] = threading.Lock()
            return lock

    def _file_lock(self, image_id):
        return _FileLock(os.path.join(self.cache_dir, ".%s.lock" % image_id))


class _FileLock:
    """An exclusive flock, for several compute processes sharing one cache."""

    def __init__(self, path):
        self._path = path
        self._fd = None

    def __enter__(self):
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        os.close(self._fd)  # releases the flock
        self._fd = None
