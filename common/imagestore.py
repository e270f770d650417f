"""The API side's image store: registered images are copied in and summed."""
import hashlib
import os
import uuid

from common import exception

QCOW2_MAGIC = b"QFI\xfb"
CHUNK = 1024 * 1024


def store_path(conf):
    return os.path.join(conf.state_path, "images")


def import_file(conf, source_path):
    """Copy ``source_path`` into the store. Returns (image_id, path, size, sha256)."""
    try:
        with open(source_path, "rb") as src:
            if src.read(4) != QCOW2_MAGIC:
                raise exception.Invalid(reason="%s is not a qcow2 image" % source_path)
            src.seek(0)
            image_id = str(uuid.uuid4())
            directory = store_path(conf)
            os.makedirs(directory, exist_ok=True)
            final = os.path.join(directory, image_id)
            tmp = final + ".part"
            digest, size = hashlib.sha256(), 0
            with open(tmp, "wb") as dst:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.rename(tmp, final)
    except FileNotFoundError as e:
        raise exception.Invalid(reason="no such file: %s" % source_path) from e
    return image_id, final, size, digest.hexdigest()


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


