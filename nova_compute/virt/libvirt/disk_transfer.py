"""A disk of another host, downloaded from that host's libvirtd.

The destination of a resize or cold migration to another host opens the
source's libvirtd at the URI the source named (the one other hosts already
reach it by for live migration: ``[libvirt] live_migration_inbound_uri``,
qemu+tcp/tls/ssh), exposes the set-aside directory there as a transient
'dir' storage pool and reads the disk with virStorageVolDownload as a sparse
stream: no shared filesystem, no SSH keys between computes, no transfer code
of our own beyond writing what arrives.

The pool is named after the instance and lives only for the download (the
destination destroys it; the source removes a leftover one when the move
ends there). The pool only reads: the source's files are never changed."""
import contextlib
import logging
import os
import xml.etree.ElementTree as ET

import libvirt

from common import exception

LOG = logging.getLogger(__name__)

POOL_PREFIX = "mininova-moving-"
# A peer gone silent (its host or the network) fails the download after
# about interval * (count + 1) seconds, not at the TCP timeout.
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3


def pool_name(instance_id):
    return POOL_PREFIX + instance_id


def pool_xml(name, directory):
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = name
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = directory
    return ET.tostring(pool, encoding="unicode")


class Sink:
    """Writes a download into an open file descriptor, holes as holes."""

    def __init__(self, fd):
        self.fd = fd
        self.received = 0  # bytes of the file so far, holes included

    def data(self, _stream, data, _opaque):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.received += len(data)
        return len(data)

    def hole(self, _stream, length, _opaque):
        os.lseek(self.fd, length, os.SEEK_CUR)
        self.received += length
        return 0


def download(uri, instance_id, directory, volume, target, expected_size, sink=Sink):
    """Write the file ``volume`` of ``directory`` on the libvirtd at ``uri``
    to ``target`` (created here; it must not exist), checking that
    ``expected_size`` bytes arrived. Post on failure: no ``target`` (the
    exception says why: libvirtError, OSError or HypervisorError), the
    source unchanged."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            with _remote_volume(uri, instance_id, directory, volume) as (conn, vol):
                got = _receive(conn, vol, sink(fd))
            if got != expected_size:
                raise exception.HypervisorError(
                    reason="%d bytes of %s/%s arrived from %s, not %d"
                    % (got, directory, volume, uri, expected_size))
            os.ftruncate(fd, got)  # a hole at the end leaves no bytes behind
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
    return got


def remove_pool(conn, instance_id):
    """Destroy a transient pool of this instance left on ``conn``'s host."""
    try:
        pool = conn.storagePoolLookupByName(pool_name(instance_id))
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        pool.destroy()


def _receive(conn, vol, out):
    stream = conn.newStream(0)
    try:
        vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
        stream.sparseRecvAll(out.data, out.hole, None)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return out.received


@contextlib.contextmanager
def _remote_volume(uri, instance_id, directory, volume):
    """(connection, volume) of the file in a transient pool over
    ``directory`` on the libvirtd at ``uri``; pool and connection gone after."""
    conn = libvirt.open(uri)
    try:
        with contextlib.suppress(libvirt.libvirtError):  # local drivers have none
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        remove_pool(conn, instance_id)  # a leftover of an earlier try: its view is stale
        pool = conn.storagePoolCreateXML(pool_xml(pool_name(instance_id), directory), 0)
        try:
            yield conn, pool.storageVolLookupByName(volume)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                pool.destroy()
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
