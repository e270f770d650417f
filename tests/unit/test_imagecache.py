import hashlib
import os
import threading

import pytest

from common import exception
from nova_compute import imagecache
from nova_compute.imagecache import ImageCache

IMAGE_ID = "5b9d3c6e-0e84-4c5f-9a57-0f1b9f3c2a11"
DATA = os.urandom(3 * imagecache.CHUNK_SIZE + 123)  # several chunks, ragged end
SHA256 = hashlib.sha256(DATA).hexdigest()


class CountingFetcher:
    """The file fetcher, counting how often it is asked for the image."""

    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, source):
        with self._lock:
            self.calls += 1
        yield from imagecache.read_file_chunks(source)


class RacingImageCache(ImageCache):
    """Holds the copy back until ``expected`` fetch() calls have begun, so that
    they really race for the one image instead of finding it cached."""

    def __init__(self, cache_dir, fetcher, expected):
        super().__init__(cache_dir, fetcher=fetcher)
        self._expected = expected
        self._entered = 0
        self._count_lock = threading.Lock()
        self._all_entered = threading.Event()

    def fetch(self, image_id, source_path, sha256):
        with self._count_lock:
            self._entered += 1
            if self._entered == self._expected:
                self._all_entered.set()
        return super().fetch(image_id, source_path, sha256)

    def _copy_in(self, *args):
        assert self._all_entered.wait(timeout=10), "not all fetches started"
        super()._copy_in(*args)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "source.img"
    path.write_bytes(DATA)
    return str(path)


def leftovers(cache_dir):
    return [n for n in os.listdir(cache_dir) if n.endswith(".part")]


def test_fetch_copies_once_and_returns_absolute_path(tmp_path, source):
    fetcher = CountingFetcher()
    cache = ImageCache(str(tmp_path / "cache"), fetcher=fetcher)
    path = cache.fetch(IMAGE_ID, source, SHA256)
    assert path == os.path.join(str(tmp_path / "cache"), IMAGE_ID) and os.path.isabs(path)
    with open(path, "rb") as f:
        assert f.read() == DATA
    assert cache.fetch(IMAGE_ID, source, SHA256.upper()) == path  # cached: no copy
    assert fetcher.calls == 1
    assert leftovers(cache.cache_dir) == []


def test_cached_images_are_not_world_readable(tmp_path, source):
    old_umask = os.umask(0o022)
    try:
        os.chmod(source, 0o644)
        cache = ImageCache(str(tmp_path / "cache"))
        path = cache.fetch(IMAGE_ID, source, SHA256)
    finally:
        os.umask(old_umask)
    assert os.stat(path).st_mode & 0o777 == 0o640
    lock = os.path.join(cache.cache_dir, ".%s.lock" % IMAGE_ID)
    assert os.stat(lock).st_mode & 0o777 == 0o600
    assert os.stat(source).st_mode & 0o777 == 0o644  # not ours: left as it was


def test_eight_concurrent_fetches_copy_once(tmp_path, source):
    fetches = 8
    fetcher = CountingFetcher()
    cache = RacingImageCache(str(tmp_path / "cache"), fetcher, expected=fetches)
    results, errors = [], []

    def worker():
        try:
            results.append(cache.fetch(IMAGE_ID, source, SHA256))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(fetches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == fetches and len(set(results)) == 1
    assert fetcher.calls == 1
    with open(results[0], "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == SHA256


def test_checksum_mismatch_caches_nothing(tmp_path, source):
    cache = ImageCache(str(tmp_path / "cache"))
    with pytest.raises(exception.ImageUnavailable, match="checksum mismatch") as info:
        cache.fetch(IMAGE_ID, source, "0" * 64)
    assert info.value.kwargs["image"] == IMAGE_ID
    assert not os.path.exists(os.path.join(cache.cache_dir, IMAGE_ID))
    assert leftovers(cache.cache_dir) == []
    # the right checksum still works afterwards
    assert cache.fetch(IMAGE_ID, source, SHA256)


def test_missing_source(tmp_path):
    cache = ImageCache(str(tmp_path / "cache"))
    with pytest.raises(exception.ImageUnavailable, match="No such file") as info:
        cache.fetch(IMAGE_ID, str(tmp_path / "nope.img"), SHA256)
    assert IMAGE_ID in info.value.message
    assert not os.path.exists(os.path.join(cache.cache_dir, IMAGE_ID))
    assert leftovers(cache.cache_dir) == []


def test_fetcher_failing_midway_leaves_no_partial_file(tmp_path, source):
    def broken_fetcher(src):
        yield b"first chunk"
        raise ConnectionResetError("peer went away")

    cache = ImageCache(str(tmp_path / "cache"), fetcher=broken_fetcher)
    with pytest.raises(exception.ImageUnavailable, match="peer went away"):
        cache.fetch(IMAGE_ID, source, SHA256)
    assert os.listdir(cache.cache_dir) == [".%s.lock" % IMAGE_ID]


@pytest.mark.parametrize("image_id", ["../etc", ".hidden", "a/b", "", None])
def test_unsafe_image_ids_are_refused(tmp_path, source, image_id):
    cache = ImageCache(str(tmp_path / "cache"))
    with pytest.raises(exception.ImageUnavailable, match="invalid image id"):
        cache.fetch(image_id, source, SHA256)


def test_missing_checksum_is_refused(tmp_path, source):
    cache = ImageCache(str(tmp_path / "cache"))
    with pytest.raises(exception.ImageUnavailable, match="sha256"):
        cache.fetch(IMAGE_ID, source, None)
