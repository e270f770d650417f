"""POST /v1/vms with ``X-Idempotency-Key``: the same key from the same
project within ``[api] idempotency_key_seconds`` creates one VM, however
often it is sent and to whichever API process; the repeats answer 202 with
that VM as it is now. The database decides (common/db/idempotency.py), so it
holds across processes; the key is claimed first in the create's own
transaction, so a VM and its key commit together or not at all."""
import hashlib
import json
import logging
import re
import time

from common import exception
from common.db import api as db_api
from common.db import idempotency as db_keys
from common.db import instance_metadata

LOG = logging.getLogger(__name__)
HEADER = "X-Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII: what any HTTP client can send
_KEY = re.compile(KEY_PATTERN)


def parse_key(value):
    """The header's value (None when absent); 400 naming the header if bad."""
    if value is None:
        return None
    if not _KEY.match(value):
        raise exception.ValidationError(field=HEADER, reason="must be 1 to 255 visible ASCII "
                                        "characters (no spaces), e.g. a UUID")
    return value


def body_hash(body):
    """The same request, however its JSON was spelled."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class KeyHeld(Exception):
    """The key belongs to another create (``row``): abandon this one."""

    def __init__(self, row):
        super().__init__(row.instance_id)
        self.row = row


class IdempotentCreates:
    def __init__(self, db, seconds):
        self.db = db
        self.seconds = seconds
        self._next_purge = 0.0  # monotonic: when expired keys are deleted next

    def held(self, ctxt, key):
        """The create holding ``key`` (a row), or None: read before the
        lookups so that a retry costs one read."""
        with self.db.transaction() as s:
            return db_keys.get(s, ctxt.project_id, key, self.seconds)

    def claim(self, s, ctxt, key, vm_id, request_hash):
        """First in the create's transaction; KeyHeld if another create has it."""
        held = db_keys.claim(s, ctxt.project_id, key, vm_id, request_hash, self.seconds)
        if held is not None:
            raise KeyHeld(held)

    def release(self, s, ctxt, key, vm_id):
        db_keys.release(s, ctxt.project_id, key, vm_id)

    def replay(self, ctxt, key, request_hash, held):
        """The VM ``held`` created, as it is now (``replayed`` set and its
        ``metadata_items``); 409 if the key came with another body or the VM
        is deleted."""
        if held.request_hash != request_hash:
            raise exception.IdempotencyKeyReused(key=key, seconds=self.seconds,
                                                 vm=held.instance_id)
        with self.db.transaction() as s:
            try:
                vm = db_api.instance_get_by_ref(s, ctxt.project_id, held.instance_id)
            except exception.InstanceNotFound:
                raise exception.IdempotentVMGone(vm=held.instance_id, key=key) from None
            vm.metadata_items = instance_metadata.get(s, vm.id)
        vm.replayed = True
        LOG.info("VM %s: create replayed for its %s", vm.id, HEADER)
        return vm

    def purge_expired(self):
        """At most once a minute per process: the table holds one window's keys."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + 60
        with self.db.transaction() as s:
            db_keys.purge(s, self.seconds)
