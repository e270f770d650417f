"""The compute host's side of the image store for snapshots: upload a
flattened disk as an image's data, or discard an image whose snapshot
failed. Both go to the API's Glance surface with this host's service token
([compute] image_api_url, image_api_token), which lets a compute host's
service user write (and, while not active, delete) snapshot images of
every project (nova_api/openstack/image/image_data.py).

The store sums what it receives (md5, sha256, sha512); the upload sends the
file's md5 (Content-MD5), without which match the store does not make the
image active: a corrupted transfer is a failed snapshot, never a usable image
with other data."""
import base64
import hashlib
import logging
import os
import urllib.error
import urllib.request

from common import exception

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest


class _Reader:
    """A file read by urllib for the request body, a chunk at a time."""

    def __init__(self, f):
        self._f = f

    def read(self, size=-1):
        return self._f.read(CHUNK if size is None or size < 0 else min(size, CHUNK))


class ImageUploader:
    def __init__(self, api_url, token=None, timeout=300):
        self.base = api_url.rstrip("/") + "/image/v2/images/"
        self.headers = {"X-Auth-Token": token} if token else {}
        self.timeout = timeout

    def upload(self, image_id, path):
        """Store the file at ``path`` as the data of ``image_id`` (queued ->
        active) if it arrives intact; {md5, sha256} of what was stored.
        ImageUnavailable if the store refused it."""
        md5 = file_md5(path)
        with open(path, "rb") as f:
            headers = dict(self.headers, **{
                "Content-Type": "application/octet-stream",
                "Content-Length": str(os.fstat(f.fileno()).st_size),
                "Content-MD5": base64.b64encode(md5.digest()).decode("ascii")})
            _, answer = self._request("PUT", image_id + "/file", _Reader(f), headers)
        return {"md5": answer.get("X-Image-Meta-Checksum"),
                "sha256": answer.get("X-Image-Sha256")}

    def discard(self, image_id):
        """Delete the image (it never became usable). Best effort: False if
        it could not be deleted; an image already gone is a success."""
        try:
            self._request("DELETE", image_id, None, self.headers)
        except exception.ImageNotFound:
            return True
        except exception.MininovaException as e:
            LOG.warning("image %s could not be discarded: %s", image_id, e.message)
            return False
        LOG.info("image %s discarded", image_id)
        return True

    def _request(self, method, path, body=None, headers=None):
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers=headers or self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as e:
            detail = e.read(2048).decode("utf-8", "replace")
            if e.code == 404:
                raise exception.ImageNotFound(image=path.split("/")[0]) from e
            raise exception.ImageUnavailable(
                image=path.split("/")[0], reason="%s %s: HTTP %d %s" % (
                    method, path, e.code, detail.strip()[:300])) from e
        except OSError as e:
            raise exception.ImageUnavailable(
                image=path.split("/")[0], reason="%s %s: %s" % (
                    method, path, getattr(e, "reason", None) or e)) from e
