"""The API side's image store: registered images are copied in and summed.

Files are named by image id under ``<state_path>/images``; compute hosts fetch
them over HTTP (``GET /v1/images/<id>/file``) and verify the sha256."""
import hashlib
import os
import uuid

from common import exception

QCOW2_MAGIC = b"QFI\xfb"
CHUNK = 1024 * 1024
# Stored images are never world-readable (an image can hold secrets): the API
# serves them to compute hosts with a token. Set when the file is created
# (the umask can only narrow it); nothing else in the store is touched.
IMAGE_MODE = 0o640


def store_path(conf):
    return os.path.join(conf.state_path, "images")


def import_stream(conf, stream, max_bytes=None):
    """Copy a qcow2 image from a binary ``stream`` into the store.

    Returns (image_id, path, size, sha256). Nothing is left on failure."""
    image_id = str(uuid.uuid4())
    directory = store_path(conf)
    os.makedirs(directory, exist_ok=True)
    final = os.path.join(directory, image_id)
    tmp = final + ".part"
    digest, size = hashlib.sha256(), 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, IMAGE_MODE)  # ours from here
    try:
        with open(fd, "wb") as dst:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if size == 0 and not chunk.startswith(QCOW2_MAGIC):
                    raise exception.Invalid(reason="the image is not in qcow2 format")
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise exception.PayloadTooLarge(limit=max_bytes)
                digest.update(chunk)
                dst.write(chunk)
            if size == 0:
                raise exception.Invalid(reason="the image is empty")
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, final)
    except BaseException:
        remove(tmp)
        raise
    return image_id, final, size, digest.hexdigest()


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
