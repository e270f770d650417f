"""What an uploaded image's first bytes say it is, checked against the disk
format it was declared with (as Glance's format inspector does), before a
compute host ever hands it to QEMU.

- ``qcow2``: the magic, version 2 or 3, no backing file (it would name a
  file on the compute host) and no external data file;
- ``raw``: anything that is not one of the formats QEMU would otherwise
  recognize (a qcow2 posing as raw would be opened with its backing file
  by anything that probes).

Only the header is read (``HEADER_BYTES``); the rest of the data is not
looked at."""
import struct

from common import exception

HEADER_BYTES = 512
QCOW2_MAGIC = b"QFI\xfb"
# qcow2 v3's incompatible feature bit 2: the guest data lives in another file.
_QCOW2_EXTERNAL_DATA = 1 << 2
# Signatures of formats a raw image must not carry: (offset, bytes, name).
_SIGNATURES = (
    (0, QCOW2_MAGIC, "qcow2"),
    (0, b"KDMV", "vmdk"),
    (0, b"vhdxfile", "vhdx"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0, b"QEVM", "qed"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
)
DISK_FORMATS = ("raw", "qcow2")


def detect(header):
    """The name of the format ``header`` carries the signature of, else None."""
    for offset, magic, name in _SIGNATURES:
        if header[offset:offset + len(magic)] == magic:
            return name
    return None


def _invalid(disk_format, reason):
    return exception.InvalidImageData(disk_format=disk_format, reason=reason)


def qcow2_virtual_size(header):
    """The guest-visible size of the qcow2 ``header``; raises
    InvalidImageData unless it is a qcow2 image with its data in itself."""
    if len(header) < 72 or header[:4] != QCOW2_MAGIC:
        raise _invalid("qcow2", "no qcow2 header")
    version, backing_offset = struct.unpack(">IQ", header[4:16])
    if version not in (2, 3):
        raise _invalid("qcow2", "unknown qcow2 version %d" % version)
    if backing_offset:
        raise _invalid("qcow2", "it has a backing file")
    if version == 3:
        if len(header) < 104:
            raise _invalid("qcow2", "truncated qcow2 v3 header")
        (incompatible,) = struct.unpack(">Q", header[72:80])
        if incompatible & _QCOW2_EXTERNAL_DATA:
            raise _invalid("qcow2", "it has an external data file")
    return struct.unpack(">Q", header[24:32])[0]


def inspect(disk_format, header):
    """Raise InvalidImageData unless the image whose first bytes are
    ``header`` (HEADER_BYTES, or all of a shorter image) is in
    ``disk_format``; its virtual size if the header says (qcow2), else None
    (raw: its size)."""
    if disk_format == "qcow2":
        return qcow2_virtual_size(header)
    if disk_format == "raw":
        found = detect(header)
        if found is not None:
            raise _invalid("raw", "it is a %s image" % found)
        return None
    raise _invalid(disk_format, "unsupported disk format")
