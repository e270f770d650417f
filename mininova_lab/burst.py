"""A burst of VM creates with deletes against a Stack, for the failure tests
(tests/functional/test_ha_failures.py): what each request answered, and the
checks that nothing was lost, built twice or left behind."""
import collections
import concurrent.futures
import glob
import os
import re
import time

import requests
import sqlalchemy as sa

from mininova_lab.waiting import wait_for

# Light compute hosts: in-memory fake hypervisor, nothing reserved, slow
# periodic work. Two of them hold 50 m1.tiny (1 vCPU, 128 MiB) with room.
LIGHT_COMPUTE_CONF = ("reserved_host_memory_mb = 0\nsync_interval = 300\n"
                      "address_poll_interval = 5\nheartbeat_interval = 2\n")


class Burst:
    """``total`` POSTs from ``threads`` workers; every ``delete_every``-th VM
    is deleted right after its 202 (mostly while it builds). ``fault(burst)``
    runs once, when ``fault_after`` POSTs have been answered; its monotonic
    and wall-clock times are kept (``fault_at``, ``fault_wall``)."""

    def __init__(self, stack, total=50, threads=6, delete_every=5, fault_after=20, fault=None,
                 prefix="b"):
        self.stack, self.total, self.threads, self.prefix = stack, total, threads, prefix
        self.delete_every, self.fault_after, self.fault = delete_every, fault_after, fault
        self.answers = []        # (kind, index, status, seconds, monotonic start)
        self.created = {}        # index -> VM id
        self.deleted = set()     # VM ids whose DELETE was accepted
        self.fault_at = self.fault_wall = None
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))
        self.session.headers["X-Auth-Token"] = stack.http.headers["X-Auth-Token"]

    def _request(self, kind, index, method, path, body=None):
        started = time.monotonic()
        try:
            r = self.session.request(method, self.stack.url + path, json=body, timeout=60)
            status = r.status_code
        except requests.RequestException as e:
            r, status = None, "exception: %s" % e
        self.answers.append((kind, index, status, time.monotonic() - started, started))
        return r

    def _one(self, i):
        r = self._request("POST", i, "POST", "/v1/vms", {
            "name": "%s%03d" % (self.prefix, i), "image": "blank", "flavor": "m1.tiny"})
        if r is None or r.status_code != 202:
            return
        vm_id = r.json()["vm"]["id"]
        self.created[i] = vm_id
        if i % self.delete_every == self.delete_every - 1:
            d = self._request("DELETE", i, "DELETE", "/v1/vms/" + vm_id)
            if d is not None and d.status_code in (202, 204):
                self.deleted.add(vm_id)

    def run(self):
        """Post the burst around the fault; returns self."""
        with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(self._one, range(self.fault_after)))
            if self.fault is not None:
                self.fault_at, self.fault_wall = time.monotonic(), time.time()
                self.fault(self)
            list(pool.map(self._one, range(self.fault_after, self.total)))
        return self

    @property
    def kept(self):
        return {vm_id for vm_id in self.created.values() if vm_id not in self.deleted}

    def bad_answers(self):
        """Requests answered otherwise than 202 (204 for a DELETE): 503s above all."""
        return [a for a in self.answers
                if a[2] not in ((202,) if a[0] == "POST" else (202, 204))]

    # -- after the burst --------------------------------------------------
    def wait_settled(self, timeout=300):
        """Every kept VM ACTIVE (an ERROR fails at once), every deleted one gone."""
        engine = sa.create_engine(self.stack.db_url)
        kept, deleted = self.kept, self.deleted

        def settled():
            with engine.connect() as c:
                rows = {r[0]: r[1:] for r in c.execute(sa.text(
                    "SELECT id, vm_state, task_state, host FROM instances "
                    "WHERE deleted_at IS NULL")).all()}
            errors = {i: r for i, r in rows.items() if r[0] == "error"}
            assert not errors, "VMs in ERROR: %s" % errors
            pending = {i: rows.get(i) for i in kept if (rows.get(i) or ("gone",))[0] != "active"}
            pending.update({i: ("deleted",) + rows[i] for i in deleted & set(rows)})
            assert not pending, "not settled: %s" % pending
            return True
        try:
            wait_for(settled, timeout, interval=0.2, what="kept VMs ACTIVE, deleted ones gone")
        finally:
            engine.dispose()
        for vm_id in kept:  # the API agrees with the DB
            assert self.stack.vm(vm_id)["status"] == "ACTIVE", vm_id
        for vm_id in deleted:
            assert self.stack.get("/v1/vms/" + vm_id).status_code == 404, vm_id

    def builds_per_vm(self):
        """{VM id: number of completed spawns} from every compute's log."""
        counts = collections.Counter()
        pattern = re.compile(r"VM ([0-9a-f-]{36}): running after")
        for path in glob.glob(os.path.join(self.stack.logs, "compute*.log")):
            with open(path) as f:
                counts.update(pattern.findall(f.read()))
        return counts

    def api_warnings(self, last=30):
        """The API's last warnings and errors: why it answered what it did."""
        try:
            with open(os.path.join(self.stack.logs, "api.log")) as f:
                lines = [line for line in f if " WARNING " in line or " ERROR " in line]
        except OSError:
            return []
        return lines[-last:]

    def log_count(self, text):
        """Lines of the daemons' logs holding ``text``."""
        count = 0
        for path in glob.glob(os.path.join(self.stack.logs, "*.log")):
            with open(path) as f:
                count += sum(1 for line in f if text in line)
        return count

    def leftovers(self):
        """Rows and allocations the deleted VMs still have (should be none)."""
        engine = sa.create_engine(self.stack.db_url)
        ids = list(self.deleted) or ["none"]
        try:
            with engine.connect() as c:
                rows = c.execute(sa.text(
                    "SELECT id FROM instances WHERE deleted_at IS NULL AND id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).all()
                allocs = c.execute(sa.text(
                    "SELECT consumer_id FROM allocations WHERE consumer_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids}).all()
        finally:
            engine.dispose()
        return [r[0] for r in rows], [r[0] for r in allocs]

    def recovery(self):
        """Seconds from the fault to: the first POST sent after it answered,
        the first VM posted after it launched (the conductor's record of its
        spawn: the whole path API -> conductor -> scheduler -> compute ->
        conductor crossed the bus)."""
        if self.fault_at is None:
            return {}
        after = [a for a in self.answers if a[0] == "POST" and a[4] >= self.fault_at]
        first_post = min((a[4] + a[3] for a in after), default=None)
        # VMs whose POST was sent after the fault (not builds in flight at it).
        posted_after = [self.created[a[1]] for a in after if a[1] in self.created]
        engine = sa.create_engine(self.stack.db_url)
        try:
            with engine.connect() as c:
                launched = [r[0] for r in c.execute(sa.text(
                    "SELECT extract(epoch FROM launched_at) FROM instances "
                    "WHERE launched_at IS NOT NULL AND id IN :ids").bindparams(
                        sa.bindparam("ids", expanding=True)), {"ids": posted_after or ["none"]})]
        finally:
            engine.dispose()
        # launched_at is naive UTC: its epoch is the wall clock's.
        later = [float(t) - self.fault_wall for t in launched]
        return {"first_post_answered_s": None if first_post is None
                else round(first_post - self.fault_at, 3),
                "first_new_vm_launched_s": round(min(later), 3) if later else None,
                "longest_post_s": round(max(a[3] for a in self.answers if a[0] == "POST"), 3)}

    def check(self):
        """The correctness every failure test asserts; returns the figures."""
        assert not self.bad_answers(), (self.bad_answers(), self.api_warnings())
        assert len(self.created) == self.total
        self.wait_settled()
        builds = self.builds_per_vm()
        twice = {vm_id: n for vm_id, n in builds.items() if n > 1}
        assert not twice, "built more than once: %s" % twice
        missing = [vm_id for vm_id in self.kept if builds[vm_id] != 1]
        assert not missing, "kept VMs with no spawn logged: %s" % missing
        rows, allocs = self.leftovers()
        assert not rows and not allocs, (rows, allocs)
        # Domains, directories, allocations and rows: the hosts agree with the DB.
        self.stack.manage("audit")
        return dict(self.recovery(), posts=self.total, deleted=len(self.deleted),
                    active=len(self.kept),
                    # with debug logs: messages that came again, placements
                    # answered again, builds a compute found done or gone
                    redelivered=self.log_count(", redelivered)"),
                    placed_again=self.log_count("answering it again"),
                    build_skipped=self.log_count("build skipped"))

    def close(self):
        self.session.close()
