"""A libvirt live migration: the destination's domain XML, and the job run
with progress reports and abort.

The guest moves with its ownership: the XML sent along names the
destination host in its metadata and the destination's instance directory in
its file paths. Peer to peer (the source's libvirtd talks to the
destination's), the definition made persistent there and removed here, the
disk copied incrementally over its base (the destination prepared an empty
overlay on its own cached copy of the base)."""
import logging
import threading
import time
import xml.etree.ElementTree as ET

import libvirt

from common import exception
from nova_compute.virt.libvirt import config as vconfig

LOG = logging.getLogger(__name__)

FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
         | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
         | libvirt.VIR_MIGRATE_NON_SHARED_INC)
# Seconds between two looks at the job (progress, abort). Each look is a
# query to the source's QEMU, competing with the copy for the CPU: looking
# more often lengthened the guest's pause at the switch-over here.
POLL_INTERVAL = 0.5


def destination_xml(domain_xml, dest_host, source_dir, dest_dir):
    """``domain_xml`` with the metadata's host set to ``dest_host`` and every
    file under ``source_dir`` moved under ``dest_dir``."""
    root = ET.fromstring(domain_xml)
    host = root.find("metadata/{%s}instance/{%s}host" % (vconfig.METADATA_NS,
                                                         vconfig.METADATA_NS))
    if host is None:
        raise exception.Invalid(reason="domain XML without mininova metadata")
    host.text = dest_host
    for elem in root.iter():
        path = elem.get("file")
        if path and (path == source_dir or path.startswith(source_dir + "/")):
            elem.set("file", dest_dir + path[len(source_dir):])
    return ET.tostring(root, encoding="unicode")


def job_progress(dom):
    """``dict(processed_bytes, remaining_bytes, total_bytes)`` of the
    domain's job now, with the same of its memory and disk apart
    (``memory_processed_bytes``, ``disk_total_bytes``, ...), or None when
    there is none (any more)."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return None
    if not stats or stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    progress = {"processed_bytes": stats.get("data_processed", 0),
                "remaining_bytes": stats.get("data_remaining", 0),
                "total_bytes": stats.get("data_total", 0)}
    for kind in ("memory", "disk"):
        for key in ("processed", "remaining", "total"):
            if "%s_%s" % (kind, key) in stats:
                progress["%s_%s_bytes" % (kind, key)] = stats["%s_%s" % (kind, key)]
    return progress


def run(dom, dest_uri, params, flags=FLAGS, progress=None, abort=None,
        poll_interval=POLL_INTERVAL):
    """Run ``dom.migrateToURI3`` and watch it: ``progress(dict)`` after each
    look at the job, ``abort`` (an Event) set means abortJob().

    Returns when the guest runs on the destination. Raises MigrationAborted
    when an abort stopped it, MigrationError when it failed: libvirt then
    leaves the guest running here."""
    instance_id = dom.UUIDString()
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        flags |= libvirt.VIR_MIGRATE_PAUSED  # it stays paused on the destination
    failure = []

    def migrate():
        try:
            dom.migrateToURI3(dest_uri, params, flags)
        except BaseException as exc:  # handed to the watching thread
            failure.append(exc)

    worker = threading.Thread(target=migrate, daemon=True,
                              name="live-migration-%s" % instance_id)
    worker.start()
    aborted = False
    while True:
        worker.join(poll_interval)
        if not worker.is_alive():
            break
        if abort is not None and abort.is_set() and not aborted:
            aborted = True
            LOG.info("VM %s: aborting its live migration to %s", instance_id, dest_uri)
            try:
                dom.abortJob()
            except libvirt.libvirtError as exc:  # it may have just ended
                LOG.warning("VM %s: abortJob: %s", instance_id, exc)
        if progress is not None:
            now = job_progress(dom)
            if now is not None:
                progress(now)
    if failure:
        if aborted:
            raise exception.MigrationAborted(instance=instance_id) from failure[0]
        raise exception.MigrationError(instance=instance_id,
                                       reason="libvirt: %s" % failure[0]) from failure[0]


def settle(dom, timeout=120.0, interval=0.2):
    """A migration job of ``dom`` that its client no longer watches (the
    compute restarted; libvirtd goes on with a peer-to-peer migration on
    its own): abort it (refused once past the switch-over: then it ends by
    itself) and wait until no job is left, at most ``timeout`` s."""
    if job_progress(dom) is None:
        return
    LOG.warning("VM %s: a live migration nobody watches any more; aborting it",
                dom.UUIDString())
    try:
        dom.abortJob()
    except libvirt.libvirtError as exc:
        LOG.warning("VM %s: abortJob: %s", dom.UUIDString(), exc)
    deadline = time.monotonic() + timeout
    while job_progress(dom) is not None and time.monotonic() < deadline:
        time.sleep(interval)
