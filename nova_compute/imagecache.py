"""Base images cached on the compute host, one file per image id.

``fetch`` returns the absolute path of ``<cache_dir>/<image_id>``, bringing the
image in first when it is not cached: read from the source in chunks by a
*fetcher* (compute uses HTTP from the API's image store; tests a local file),
hashed while written to a temp file, fsynced, then renamed into place, so the
cache never shows a partial or unverified image. One fetch per image at a time
(a thread lock plus a flock for other processes): concurrent first builds of
one image download it once.

A cached file is verified against its sha256 once per process and again
whenever its inode, size or mtime change; a corrupt one is fetched anew,
never booted.
"""
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import urllib.request

from common import exception
from common.locks import KeyedLocks

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
# The id becomes a file name: no '/', no leading dot (temp and lock files use one).
_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
IMAGE_MODE = 0o640  # cached images: never world-readable


def read_file_chunks(source_path):
    """The default fetcher: yield the bytes of a local file, chunk by chunk."""
    with open(source_path, "rb") as f:
        while True:
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


class HttpFetcher:
    """Yields the bytes at a URL (the API's ``GET /v1/images/<id>/file``)."""

    def __init__(self, timeout=30, token=None):
        self.timeout = timeout
        self.headers = {"X-Auth-Token": token} if token else {}

    def __call__(self, url):
        request = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            while True:
                chunk = response.read(CHUNK_SIZE)
                if not chunk:
                    return
                yield chunk


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ImageCache:
    def __init__(self, cache_dir, fetcher=read_file_chunks):
        """``fetcher(source)`` yields the image's bytes; OSError means the
        source is unavailable."""
        self.cache_dir = os.path.abspath(cache_dir)
        self._fetcher = fetcher
        self._image_locks = KeyedLocks()
        self._verified = {}  # path -> (inode, size, mtime_ns, sha256) last checked good

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
        sha256 = sha256.lower()
        if self._known_good(path, sha256):
            return path
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as exc:
            raise exception.ImageUnavailable(
                image=image_id, reason="cannot create the cache: %s" % exc) from exc
        with self._image_locks.lock(image_id), self._file_lock(image_id):
            # Another thread or process may have fetched it meanwhile.
            if os.path.exists(path) and not self._verify(image_id, path, sha256):
                self._remove(path)
            if not os.path.exists(path):
                self._copy_in(image_id, source_path, sha256, path)
                self._remember(path, sha256)
        return path

    def _stat_key(self, path, sha256):
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns, sha256)

    def _known_good(self, path, sha256):
        try:
            return self._verified.get(path) == self._stat_key(path, sha256)
        except FileNotFoundError:
            return False

    def _remember(self, path, sha256):
        self._verified[path] = self._stat_key(path, sha256)

    def _verify(self, image_id, path, sha256):
        """True if the cached file still has the image's checksum."""
        if self._known_good(path, sha256):
            return True
        actual = file_sha256(path)
        if actual != sha256:
            LOG.warning("cached image %s is corrupt (sha256 %s, expected %s); fetching it "
                        "again", image_id, actual, sha256)
            return False
        self._remember(path, sha256)
        return True

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
                # mkstemp made it 0600; the owner's group may read it too, others
                # not (an image can hold secrets). QEMU runs as compute's user
                # (deploy/install-host.sh's qemu.conf, checked by doctor).
                os.fchmod(tmp.fileno(), IMAGE_MODE)
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

    def _file_lock(self, image_id):
        return _FileLock(os.path.join(self.cache_dir, ".%s.lock" % image_id))


class _FileLock:
    """An exclusive flock, for several compute processes sharing one cache."""

    def __init__(self, path):
        self._path = path
        self._fd = None

    def __enter__(self):
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        os.close(self._fd)  # releases the flock
        self._fd = None
