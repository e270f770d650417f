"""What the API does for VMs, apart from HTTP: the DB writes and the casts.

Long work is never done here: create writes a BUILD row and casts its build
to the conductor; delete marks the row and casts to the owning compute host."""
import logging
import secrets
import uuid

from common import exception, payloads, states
from common.db import actions
from common.db import api as db_api
from common.db import auth as db_auth
from common.db import hosts as db_hosts
from common.db import images as db_images
from common.db import instance_metadata, keypairs, vm_migrations
from common.timeline import DbSink, Timeline
from nova_api import idempotency, lookups, vm_fields, vm_locks, vm_metadata

LOG = logging.getLogger(__name__)
UNSET = object()  # update(): a field not given (None clears an access IP)


def random_mac():
    """A locally administered MAC in QEMU's 52:54:00 range."""
    return "52:54:00:%02x:%02x:%02x" % tuple(secrets.token_bytes(3))


class VMService:
    def __init__(self, db, build_client, compute_rpcapi, host="api", quota_defaults=None,
                 name_scope="project", idempotency_seconds=86400):
        """``name_scope``: [api] unique_vm_name_scope (project, global or "");
        ``idempotency_seconds``: [api] idempotency_key_seconds."""
        self.db = db
        self.keys = idempotency.IdempotentCreates(db, idempotency_seconds)
        self.name_scope = name_scope
        self.host = host
        self.quota_defaults = quota_defaults or {"instances": -1, "cores": -1, "ram": -1}
        self.timeline = Timeline(DbSink(db), host)
        self.lookups = lookups.Lookups(db)
        self.build_client = build_client
        self.compute_rpcapi = compute_rpcapi

    def create(self, ctxt, name, image_ref, flavor_ref, group_ref=None, *, metadata=None,
               key_name=None, user_data=None, access_ipv4=None, access_ipv6=None,
               disk_config="MANUAL", idempotency_key=None, request_hash=""):
        """Store a VM in BUILD and cast its build to the conductor; returns its
        fields as a dict (``db_api.instance_insert``) plus its ``metadata``.
        ``key_name``: one of the caller's keypairs, whose public key the VM
        keeps (Invalid if the caller has none by that name).
        ``idempotency_key``: the project's create with that key (and
        ``request_hash``, of its body) within ``idempotency_seconds`` made a
        VM already: that VM is returned as it is now (an ORM object, plus
        ``replayed = True``) instead of a second one (nova_api/idempotency.py)."""
        held = self.keys.held(ctxt, idempotency_key) if idempotency_key is not None else None
        if held is not None:  # a retry: no lookups, no quota
            return self.keys.replay(ctxt, idempotency_key, request_hash, held)
        metadata = vm_fields.metadata_items(metadata or {})
        fields = {"user_data": vm_fields.user_data(user_data),
                  "access_ipv4": vm_fields.access_ip(access_ipv4, 4, "accessIPv4"),
                  "access_ipv6": vm_fields.access_ip(access_ipv6, 6, "accessIPv6"),
                  "disk_config": vm_fields.disk_config(disk_config)}
        image = self.lookups.image(image_ref, ctxt)
        if image.status != "active":
            raise exception.Invalid(reason="image %s is %s, not active" % (image_ref,
                                                                          image.status))
        flavor = self.lookups.flavor(flavor_ref, ctxt.project_id, ctxt.is_admin)
        if flavor.memory_mb < image.min_ram:
            raise exception.Invalid(reason="flavor %s has %d MB RAM; image %s needs %d MB"
                                    % (flavor.name, flavor.memory_mb, image.name, image.min_ram))
        if flavor.root_gb < image.min_disk:
            raise exception.Invalid(reason="flavor %s has a %d GB disk; image %s needs %d GB"
                                    % (flavor.name, flavor.root_gb, image.name, image.min_disk))
        vm_id = str(uuid.uuid4())
        try:
            vm, action_id = self._store(ctxt, vm_id, name, image, flavor, group_ref, key_name,
                                        metadata, fields, idempotency_key, request_hash)
        except idempotency.KeyHeld as e:
            held = self.keys.replay(ctxt, idempotency_key, request_hash, e.row)
            if e.row.instance_id == vm_id:
                # This create's own commit, whose answer was lost with the
                # database connection (run again, it found its own key): the
                # VM is stored, its build not yet cast.
                with self.db.transaction() as s:
                    action_id = actions.action_id(s, vm_id, ctxt.request_id)
                self._cast_build(ctxt, vm_id, action_id, idempotency_key)
            return held
        LOG.info("VM %s (%s) accepted, scheduling", vm["id"], name)
        self._cast_build(ctxt, vm["id"], action_id, idempotency_key)
        if idempotency_key is not None:
            self.keys.purge_expired()
        return vm

    def _cast_build(self, ctxt, vm_id, action_id, idempotency_key):
        try:
            # The action id travels with the build: nobody looks it up again.
            self.build_client.build_instances(ctxt, vm_id, action_id=action_id)
        except exception.ServiceUnavailable as e:
            # Nothing may be left behind: the row goes, the user gets the 503,
            # and a retry with the same key creates anew.
            with self.db.transaction() as s:
                db_api.instance_soft_delete(s, vm_id)
                if idempotency_key is not None:
                    self.keys.release(s, ctxt, idempotency_key, vm_id)
            self.timeline.finish(ctxt, vm_id, "error", e.message)
            raise

    def _store(self, ctxt, vm_id, name, image, flavor, group_ref, key_name, metadata, fields,
               idempotency_key, request_hash):
        """One transaction: the key claimed (first: a racing create with it
        waits here, holding nothing), the VM, its metadata, its action, the
        quota. (vm, action id); KeyHeld (rolled back) if the key is another
        create's."""
        def store(s):
            if idempotency_key is not None:
                self.keys.claim(s, ctxt, idempotency_key, vm_id, request_hash)
            group = db_hosts.group_get(s, ctxt.project_id, group_ref) if group_ref else None
            if key_name is not None:
                fields.update(key_name=key_name, key_data=self._public_key(s, ctxt, key_name))
            if metadata:  # none: nothing to count against the limit, nothing to store
                vm_fields.metadata_count(len(metadata), vm_metadata.metadata_limit(
                    s, ctxt.project_id, self.quota_defaults))
            vm = db_api.instance_insert(
                s, id=vm_id, name=name, project_id=ctxt.project_id, user_id=ctxt.user_id,
                image_id=image.id, flavor_id=flavor.id, vcpus=flavor.vcpus,
                memory_mb=flavor.memory_mb, root_gb=flavor.root_gb,
                vm_state=states.BUILDING, task_state=states.SCHEDULING,
                mac_address=random_mac(), group_id=group.id if group else None,
                name_scope=self._name_scope_key(ctxt), **fields)
            vm["metadata"] = (instance_metadata.replace(s, vm["id"], metadata) if metadata
                              else {})
            # In the same transaction: a create costs one commit, not three.
            action_id = self._action_accepted(s, ctxt, vm["id"], "create",
                                              "stored; cast to the conductor")
            # Quota and row in one transaction: a burst cannot overshoot. Last
            # before the commit: the UPDATE locks one of the project's usage
            # rows (with a limit, the one every limited create waits for).
            db_auth.quota_reserve(s, ctxt.project_id, self.quota_defaults,
                                  flavor.vcpus, flavor.memory_mb)
            return vm, action_id

        # Run again if the database went away before the commit (nothing was
        # stored). Lost at the commit itself: run again too with a key (the
        # claim, first, finds the key held by this VM if the commit was made:
        # KeyHeld), else 503 saying the outcome is unknown.
        return self.db.run(store, idempotent=idempotency_key is not None)

    def _name_scope_key(self, ctxt):
        """The VM's ``name_scope``: a unique index on (name_scope, name) among
        live VMs makes its name unique there; NULL never collides."""
        return {"project": ctxt.project_id, "global": ""}.get(self.name_scope)

    @staticmethod
    def _public_key(s, ctxt, key_name):
        try:
            return keypairs.public_key(s, ctxt.user_id, key_name)
        except exception.KeypairNotFound:
            raise exception.ValidationError(
                field="key_name", reason="you have no keypair named %r" % str(key_name)[:255]
            ) from None

    def _action_accepted(self, s, ctxt, instance_id, action, details):
        return actions.action_begin(s, instance_id, ctxt.request_id, action, ctxt.project_id,
                             ctxt.user_id, "accepted", self.host, details)

    def action(self, ctxt, ref, name, hard=False):
        """Start a power action: an atomic guarded move to its task state
        (409 naming the state if not allowed now), then a cast to the host."""
        guard = "reboot_hard" if name == "reboot" and hard else name
        allowed, task = states.ACTION_GUARDS[guard]
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            moved = inst.host is not None and db_api.instance_update_if(
                s, inst.id, {"task_state": task, "fault": None},
                expected_task_state=None, expected_vm_state=tuple(allowed),
                **vm_locks.guard(ctxt))
            if not moved:
                s.refresh(inst)  # why not: as it is now
        if not moved:
            vm_locks.refuse_if_locked(ctxt, inst, name.replace("_", " "))
            status = states.status(inst.vm_state, inst.task_state)
            why = ("while task %s is in progress" % inst.task_state if inst.task_state
                   else "while it is %s" % status)
            raise exception.Conflict(reason="cannot %s VM %s %s" % (
                name.replace("_", " "), inst.name, why))
        LOG.info("VM %s: %s accepted (task %s)", inst.id, name, task)
        self.timeline.start_action(ctxt, inst.id, guard)
        rpc_method = getattr(self.compute_rpcapi, "%s_instance" % name)
        try:
            if name == "reboot":
                rpc_method(ctxt, inst.host, inst.id, hard)
            else:
                rpc_method(ctxt, inst.host, inst.id)
        except exception.ServiceUnavailable as e:
            with self.db.transaction() as s:  # undo the task: nothing will carry it out
                db_api.instance_update_if(s, inst.id, {"task_state": None},
                                          expected_task_state=task)
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            raise
        self.timeline.record(ctxt, inst.id, "accepted", details="cast to compute.%s" % inst.host)

    def rebuild(self, ctxt, ref, image_ref, name=UNSET, metadata=None):
        """Rebuild a VM from ``image_ref`` (Nova's rebuild): the guarded move
        to ``rebuilding`` with the new image, and the new name and metadata
        when given, in one transaction (409 as the power actions: the state,
        a task in progress, the lock), then a cast to its host; the row after.
        ImageNotFound for an image the caller cannot see."""
        image = self.lookups.image(image_ref, ctxt)
        if image.status != "active":
            raise exception.Invalid(reason="image %s is %s, not active" % (image_ref,
                                                                          image.status))
        name = vm_fields.name(name) if name is not UNSET else UNSET
        metadata = vm_fields.metadata_items(metadata) if metadata is not None else None
        allowed, task = states.ACTION_GUARDS["rebuild"]
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            if inst.memory_mb < image.min_ram or inst.root_gb < image.min_disk:
                raise exception.Invalid(reason="image %s needs %d MB RAM and a %d GB disk; VM "
                                        "%s has %d MB and %d GB" % (
                                            image.name, image.min_ram, image.min_disk,
                                            inst.name, inst.memory_mb, inst.root_gb))
            image_row = db_images.image_row(s, image.id)
            if image_row is None:
                raise exception.ImageNotFound(image=image_ref)
            old_image_id = inst.image_id
            moved = inst.host is not None and db_api.instance_update_if(
                s, inst.id, {"task_state": task, "fault": None, "image_id": image.id},
                expected_task_state=None, expected_vm_state=tuple(allowed),
                **vm_locks.guard(ctxt))
            if moved and name is not UNSET and name != inst.name:
                db_api.instance_rename(s, inst.id, name)
            if moved and metadata is not None:
                instance_metadata.replace(s, inst.id, metadata)
                vm_fields.metadata_count(len(metadata), vm_metadata.metadata_limit(
                    s, inst.project_id, self.quota_defaults))
            s.refresh(inst)
        if not moved:
            vm_locks.refuse_if_locked(ctxt, inst, "rebuild")
            why = ("while task %s is in progress" % inst.task_state if inst.task_state
                   else "while it is %s" % states.status(inst.vm_state, inst.task_state))
            raise exception.Conflict(reason="cannot rebuild VM %s %s" % (inst.name, why))
        LOG.info("VM %s: rebuild from image %s accepted", inst.id, image.id)
        self.timeline.start_action(ctxt, inst.id, "rebuild")
        try:
            self.compute_rpcapi.rebuild_instance(ctxt, inst.host, inst.id,
                                                 payloads.image(image_row))
        except (exception.ServiceUnavailable, exception.RPCVersionCapError) as e:
            with self.db.transaction() as s:  # undo: nothing will carry it out
                db_api.instance_update_if(s, inst.id, {"task_state": None,
                                                       "image_id": old_image_id},
                                          expected_task_state=task)
            self.timeline.finish(ctxt, inst.id, "error", e.message)
            if isinstance(e, exception.RPCVersionCapError):
                raise exception.Conflict(reason="the compute hosts are not all upgraded to "
                                         "take a rebuild yet") from e
            raise
        self.timeline.record(ctxt, inst.id, "accepted", details="cast to compute.%s" % inst.host)
        return inst

    def get_console_output(self, ctxt, ref, lines):
        inst = self.get(ctxt, ref)
        if inst.host is None:
            raise exception.Conflict(reason="VM %s is not on a host yet (status %s)"
                                     % (inst.name, states.status(inst.vm_state, inst.task_state)))
        return self.compute_rpcapi.get_console_output(ctxt, inst.host, inst.id, lines)

    def get(self, ctxt, ref):
        with self.db.transaction() as s:
            return db_api.instance_get_by_ref(s, ctxt.project_id, ref)

    def list(self, ctxt, columns, limit, marker=None):
        """(rows, more): a page of up to ``limit`` of the project's VMs as
        rows of ``columns``, read by name (see ``db_api.instance_page``), and
        whether more VMs follow it."""
        with self.db.transaction() as s:
            rows = db_api.instance_page(s, ctxt.project_id, columns, limit + 1, marker)
        return rows[:limit], len(rows) > limit

    def delete(self, ctxt, ref):
        """Delete wins over any task in progress; deleting twice is harmless.
        A locked VM: InstanceLocked (409) unless the caller is an admin."""
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
        vm_locks.refuse_if_locked(ctxt, inst, "delete")
        self.timeline.start_action(ctxt, inst.id, "delete")
        if inst.host is None:
            with self.db.transaction() as s:
                deleted = db_api.instance_soft_delete(s, inst.id, expected_host=None,
                                                      **vm_locks.guard(ctxt))
            if deleted:
                LOG.info("VM %s never reached a host; deleted by the API", inst.id)
                self.timeline.record(ctxt, inst.id, "deleted", details="never reached a host")
                self.timeline.finish(ctxt, inst.id, "success")
                return

        def mark_deleting(s):
            # Re-read: the scheduler may have placed it meanwhile.
            row = db_api.instance_get(s, inst.id)
            if not db_api.instance_update_if(s, row.id, {"task_state": states.DELETING},
                                             **vm_locks.guard(ctxt)):
                s.refresh(row)  # locked meanwhile? (gone meanwhile: the host is told anyway)
                vm_locks.refuse_if_locked(ctxt, row, "delete")
            return row.host, _resize_source_kept(s, row.id, row.host)

        # Marking it deleting twice is harmless: run again after a lost
        # connection, even one lost at the commit.
        host, kept_on = self.db.run(mark_deleting, idempotent=True)
        LOG.info("VM %s: delete cast to compute.%s", inst.id, host)
        self.compute_rpcapi.terminate_instance(ctxt, host, inst.id)
        self.timeline.record(ctxt, inst.id, "accepted", details="cast to compute.%s" % host)
        if kept_on is not None:  # what a revert would have needed goes too
            self.compute_rpcapi.terminate_instance(ctxt, kept_on, inst.id)
            self.timeline.record(ctxt, inst.id, "accepted",
                                 details="cast to compute.%s (the resize's source)" % kept_on)

    # -- Nova's update, metadata and lock -------------------------------------

    def update(self, ctxt, ref, name=UNSET, access_ipv4=UNSET, access_ipv6=UNSET):
        """Rename a VM and/or set its access IPs (None clears one); the row
        after. DuplicateName (409) where its name scope has that name."""
        values = {}
        if access_ipv4 is not UNSET:
            values["access_ipv4"] = vm_fields.access_ip(access_ipv4, 4, "accessIPv4")
        if access_ipv6 is not UNSET:
            values["access_ipv6"] = vm_fields.access_ip(access_ipv6, 6, "accessIPv6")
        if name is not UNSET:
            name = vm_fields.name(name)
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            if name is not UNSET and name != inst.name:
                db_api.instance_rename(s, inst.id, name)
            db_api.instance_update_if(s, inst.id, values)
            s.refresh(inst)
            return inst

    def lock(self, ctxt, ref):
        """Lock a VM: non-admins can neither act on it, change its metadata
        nor delete it until it is unlocked. Locking a locked VM changes nothing."""
        by = "admin" if ctxt.is_admin else "owner"
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            db_api.instance_update_if(s, inst.id, {"locked": True, "locked_by": by},
                                      expected_locked=False)
        LOG.info("VM %s locked by its %s", inst.id, by)

    def unlock(self, ctxt, ref):
        """Unlock a VM; a lock an admin set only an admin may lift (Forbidden)."""
        with self.db.transaction() as s:
            inst = db_api.instance_get_by_ref(s, ctxt.project_id, ref)
            if inst.locked and inst.locked_by == "admin" and not ctxt.is_admin:
                raise exception.Forbidden("VM %s was locked by an admin; only an admin may "
                                          "unlock it." % inst.name)
            db_api.instance_update_if(s, inst.id, {"locked": False, "locked_by": None})
        LOG.info("VM %s unlocked", inst.id)


def _resize_source_kept(s, instance_id, host):
    """A VM deleted in VERIFY_RESIZE: its resize or cold migration is
    confirmed by the delete, as in Nova, and the source host that kept the
    VM's shut-off domain and disk for a revert (when not ``host``) is
    returned, to be told too."""
    move = vm_migrations.in_progress_for_instance(s, instance_id)
    if (move is None or move.migration_type not in ("resize", "migration")
            or move.status != "finished"):
        return None
    vm_migrations.update_if(s, move.uuid, {"status": "confirmed"}, expected_status="finished")
    return move.source_host if move.source_host != host else None
