"""The API side's image store: image data copied in and summed.

Files are named by image id under ``<state_path>/images``; compute hosts fetch
them over HTTP (``GET /v1/images/<id>/file``) and verify the sha256. Data is
read and written a chunk at a time, never held whole, and hashed on the way:
sha256 (what compute hosts verify), md5 and sha512 (Glance's ``checksum`` and
``os_hash_value``). A file appears under its final name only complete and
fsynced; nothing is left behind on failure."""
import hashlib
import os
import typing
import uuid

from common import exception
from nova_api import diskformats

CHUNK = 1024 * 1024
# Stored images are never world-readable (an image can hold secrets): the API
# serves them to compute hosts with a token. Set when the file is created
# (the umask can only narrow it); nothing else in the store is touched.
IMAGE_MODE = 0o640


class Stored(typing.NamedTuple):
    image_id: str
    path: str
    size: int
    checksum: str          # sha256, hex
    md5: str
    sha512: str
    virtual_size: int | None

    def columns(self):
        """The image row's values for this data."""
        return {"location": self.path, "size": self.size, "checksum": self.checksum,
                "md5": self.md5, "sha512": self.sha512, "virtual_size": self.virtual_size}


def store_path(conf):
    return os.path.join(conf.state_path, "images")


def _check_v1_header(header):
    # /v1 and mininova-manage take qcow2 only, recognized by its magic (the
    # compute host refuses a base with a backing file when it boots it).
    if not header.startswith(diskformats.QCOW2_MAGIC):
        raise exception.Invalid(reason="the image is not in qcow2 format")
    return None


def write(conf, image_id, stream, max_bytes=None, disk_format=None, allow_empty=False):
    """Copy the binary ``stream`` into the store as image ``image_id``.

    ``disk_format`` given: the data must be in it (diskformats.inspect,
    InvalidImageData); None: a qcow2 by its magic (/v1). PayloadTooLarge past
    ``max_bytes``. Returns a Stored."""
    check = (_check_v1_header if disk_format is None
             else lambda header: diskformats.inspect(disk_format, header))
    directory = store_path(conf)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, image_id)
    tmp = final + ".part"
    sha256, md5, sha512 = hashlib.sha256(), hashlib.md5(), hashlib.sha512()
    size, header, checked, virtual_size = 0, b"", False, None
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, IMAGE_MODE)  # ours from here
    try:
        with open(fd, "wb") as dst:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise exception.PayloadTooLarge(limit=max_bytes)
                if not checked:
                    header += chunk[:diskformats.HEADER_BYTES - len(header)]
                    if len(header) >= diskformats.HEADER_BYTES:
                        virtual_size, checked = check(header), True
                for digest in (sha256, md5, sha512):
                    digest.update(chunk)
                dst.write(chunk)
            if size == 0 and not allow_empty:
                raise exception.Invalid(reason="the image is empty")
            if not checked and size:
                virtual_size = check(header)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, final)
    except BaseException:
        remove(tmp)
        raise
    return Stored(image_id, final, size, sha256.hexdigest(), md5.hexdigest(),
                  sha512.hexdigest(), size if virtual_size is None else virtual_size)


def import_stream(conf, stream, max_bytes=None):
    """A qcow2 image from ``stream`` stored under a new id (/v1)."""
    return write(conf, str(uuid.uuid4()), stream, max_bytes)


def import_file(conf, source_path):
    try:
        with open(source_path, "rb") as src:
            return import_stream(conf, src)
    except FileNotFoundError as e:
        raise exception.Invalid(reason="no such file: %s" % source_path) from e
    except IsADirectoryError as e:
        raise exception.Invalid(reason="%s is a directory" % source_path) from e


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
