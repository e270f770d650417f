"""The bench harness: a private stack on the real services (set-up and
tear-down), the floor next to it, and the helpers every phase uses (posting
VMs, seeing a status in the API, the step breakdown of builds). The phases
are in bench/phases_latency.py (floor, P1, P5), phase_burst.py (P2),
phase_api.py (P4), phase_memory.py (P6) and phase_scale.py (P3)."""
import os
import statistics
import sys
import time

import libvirt
import sqlalchemy as sa

from bench import floor as bfloor
from bench import load, profiling
from common import states
from nova_compute.virt.libvirt import host as vhost
from nova_compute.virt.libvirt import imagebackend
from mininova_lab.stack import Stack
from mininova_lab.waiting import wait_for

TINY = os.environ.get("MININOVA_TINY_IMAGE", "/var/cache/mininova/tiny.qcow2")
URI = "qemu:///system"

# How the harness sees a VM reach a status (P1, P2, P5) without loading the
# host it measures (2 CPUs here: an API polled every few ms would take CPU
# from the QEMU being started): it polls the row's state in PostgreSQL, one
# primary-key SELECT every DB_POLL s (~0.2 ms of CPU), and once the row has
# the status it reads the VM through the API; the time that GET answers
# with the status is the one taken. Resolution: DB_POLL/2 on average, plus
# one GET.
DB_POLL = 0.005
API_POLL = 0.05       # only for the untimed waits (warm-ups)


def log(msg, *args):
    print("bench: " + (msg % args if args else msg), file=sys.stderr, flush=True)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def pct(values, p):
    return load.percentile(values, p)



class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.results = {}
        self.profiler = profiling.Profiler(args.profile_dir,
                                           enabled=args.profile, mode=args.profile_mode)
        self.stack = None
        self.floor = None
        self.engine = None
        self.conn = None
        self._poll_conn = None

    # -- helpers ---------------------------------------------------------------

    def client(self):
        return load.Client(self.stack.url, self.stack.http.headers["X-Auth-Token"])

    def pids(self, *names):
        return {n: self.stack.procs[n].pid for n in names if n in self.stack.procs}

    def admin_project_id(self):
        with self.engine.connect() as c:
            return c.execute(sa.text(
                "SELECT project_id FROM users WHERE name = 'admin'")).scalar()

    def daemon_pids(self):
        return self.pids("api", "scheduler", "conductor", "compute")

    def post_vm(self, client, name, image="tiny", flavor="m1.tiny"):
        seconds, status, body, headers = client.timed(
            "POST", "/v1/vms", {"name": name, "image": image, "flavor": flavor})
        if status != 202:
            raise RuntimeError("POST /v1/vms -> %s: %s" % (status, body))
        return seconds, body["vm"]["id"], headers.get("X-Request-Id")

    def db_statuses(self, cur, ids):
        """{id: API status} of live VMs, straight from their rows."""
        cur.execute("SELECT id, vm_state, task_state, fault FROM instances "
                    "WHERE id = ANY(%s) AND deleted_at IS NULL", (list(ids),))
        out = {}
        for vm_id, vm_state, task_state, fault in cur.fetchall():
            out[vm_id] = states.status(vm_state, task_state)
            if out[vm_id] == "ERROR":
                raise RuntimeError("VM %s went ERROR: %s" % (vm_id, fault))
        return out

    def seen_in_api(self, client, ids, status, timeout=120, list_=False):
        """Wait until every VM of ``ids`` has ``status`` in its row (DB_POLL),
        then until the API shows it (GET /v1/vms/<id>, or GET /v1/vms with
        ``list_``); the monotonic time the API's answer showed it."""
        ids = set(ids)
        deadline = time.monotonic() + timeout
        if self._poll_conn is None:  # one connection for the whole run
            self._poll_conn = self.engine.raw_connection()
            self._poll_conn.driver_connection.autocommit = True
        with self._poll_conn.cursor() as cur:
            while True:
                rows = self.db_statuses(cur, ids)
                if all(rows.get(i) == status for i in ids):
                    if list_:
                        _, body, _ = client.request("GET", "/v1/vms")
                        shown = {v["id"]: v["status"] for v in body["vms"]}
                    else:
                        shown = {}
                        for i in ids:
                            code, body, _ = client.request("GET", "/v1/vms/" + i)
                            shown[i] = body["vm"]["status"] if code == 200 else None
                    seen = time.monotonic()
                    if all(shown.get(i) == status for i in ids):
                        return seen
                if time.monotonic() > deadline:
                    raise RuntimeError("%d VM(s) not %s after %d s (rows: %s)" % (
                        len(ids), status, timeout, sorted(set(rows.values()))))
                time.sleep(DB_POLL)

    def wait_status(self, client, vm_id, status, timeout=120, interval=API_POLL):
        """Poll GET /v1/vms/<id> until ``status`` (untimed waits)."""
        deadline = time.monotonic() + timeout
        while True:
            code, body, _ = client.request("GET", "/v1/vms/" + vm_id)
            seen = time.monotonic()
            vm = body["vm"] if code == 200 else None
            if vm is not None and vm["status"] == status:
                return seen
            if vm is not None and vm["status"] == "ERROR" and status != "ERROR":
                raise RuntimeError("VM %s went ERROR: %s" % (vm_id, vm["fault"]))
            if seen > deadline:
                raise RuntimeError("VM %s not %s after %d s (now %s)" % (
                    vm_id, status, timeout, vm and vm["status"]))
            time.sleep(interval)

    def delete_and_wait(self, ids, timeout=180):
        ids = list(ids)
        if not ids:
            return
        client = self.client()
        for vm_id in ids:
            client.request("DELETE", "/v1/vms/" + vm_id)

        def gone():
            _, body, _ = client.request("GET", "/v1/vms")
            live = {v["id"] for v in body["vms"]} & set(ids)
            return not live
        wait_for(gone, timeout, interval=0.1, what="%d VMs to be deleted" % len(ids))
        client.close()

    # -- set-up ------------------------------------------------------------------

    def start(self):
        a = self.args
        log("starting a private stack (RabbitMQ vhost, PostgreSQL DB, libvirt compute)")
        # virt_type pinned to qemu (TCG): never type='kvm' here.
        self.stack = Stack(os.path.join(self.workdir, "stack"), compute_driver="libvirt",
                           network=a.network, debug=False, extra_conf="virt_type = qemu\n")
        os.makedirs(self.stack.workdir, exist_ok=True)
        self.stack.start()
        self.results["stack_host"] = self.stack.host
        self.engine = sa.create_engine(self.stack.db_url)
        self.tiny = self.stack.add_image("tiny", TINY)
        self.conn = libvirt.open(URI)
        flavors = {f["name"]: f for f in self.stack.get("/v1/flavors").json()["flavors"]}
        self.flavor = flavors["m1.tiny"]

        # Warm-up (untimed): fetches the image into compute's cache, opens pools.
        client = self.client()
        _, vm_id, _ = self.post_vm(client, "warmup")
        self.wait_status(client, vm_id, "ACTIVE")
        mininova_settings = bfloor.settings(self.conn.lookupByUUIDString(vm_id).XMLDesc(0))
        base = os.path.join(self.stack.cache_path, self.tiny["id"])

        floor_dir = os.path.join(self.workdir, "floor")
        os.makedirs(floor_dir, exist_ok=True)
        # Chosen as the driver chooses, then checked against the real domain.
        cache = "none" if imagebackend.supports_direct_io(floor_dir) else "writeback"
        self.floor = bfloor.Floor(URI, base, floor_dir, vhost.detect_virt_type("qemu"),
                                  self.flavor["ram"], self.flavor["vcpus"], self.flavor["disk"],
                                  cache, network=a.network, tag=self.stack.tag)
        _, floor_id = self.floor.boot()
        floor_settings = bfloor.settings(self.floor.domain_xml(floor_id))
        self.floor.destroy(floor_id)
        if floor_settings != mininova_settings:
            diff = {k: (mininova_settings[k], floor_settings.get(k)) for k in mininova_settings
                    if mininova_settings[k] != floor_settings.get(k)}
            raise RuntimeError("the floor's domain differs from mininova's: %s" % diff)
        self.results["domain_settings"] = mininova_settings
        log("same domain settings for floor and mininova: %s", mininova_settings)
        self.delete_and_wait([vm_id])
        client.close()

    def breakdown(self, vm_ids):
        """Median offsets (ms after the API accepted the POST) at which each
        recorded step of the create action started and ended, and when the
        conductor marked the VM launched."""
        with self.engine.connect() as c:
            rows = c.execute(sa.text(
                "SELECT a.instance_id, e.event, "
                "extract(epoch FROM e.start_time - a.start_time), "
                "extract(epoch FROM e.finish_time - a.start_time) "
                "FROM instance_actions a JOIN instance_action_events e ON e.action_id = a.id "
                "WHERE a.action = 'create' AND a.instance_id = ANY(:ids)"),
                {"ids": list(vm_ids)}).all()
            launched = [float(x) for (x,) in c.execute(sa.text(
                "SELECT extract(epoch FROM launched_at - created_at) FROM instances "
                "WHERE id = ANY(:ids) AND launched_at IS NOT NULL"), {"ids": list(vm_ids)})]
        by_event = {}
        for _, event, start, finish in rows:
            by_event.setdefault(event, []).append((float(start), float(finish or start)))
        self.last_build_starts = sorted(ms(s) for s, _ in by_event.get("image fetched", []))
        steps = []
        for event, spans in by_event.items():
            steps.append({"event": event,
                          "start_ms": ms(statistics.median(s for s, _ in spans)),
                          "end_ms": ms(statistics.median(f for _, f in spans)),
                          "n": len(spans)})
        steps.sort(key=lambda s: (s["start_ms"], s["end_ms"]))
        if launched:
            steps.append({"event": "launched_at (conductor)", "start_ms": None,
                          "end_ms": ms(statistics.median(launched)), "n": len(launched)})
        return steps

    # -- tear-down -------------------------------------------------------------

    def stop(self):
        stack = self.stack
        if stack is None:
            return
        try:
            if self.conn is not None:
                vms = stack.get("/v1/vms").json().get("vms", [])
                real = [v["id"] for v in vms if v["host"] == stack.host]
                if real:
                    self.delete_and_wait(real, timeout=120)
        except Exception as exc:
            log("clean-up through the API failed (%s); removing domains directly", exc)
        finally:
            if self.floor is not None:
                self.floor.close()
            if self._poll_conn is not None:
                try:
                    self._poll_conn.driver_connection.autocommit = False
                    self._poll_conn.close()
                except Exception as exc:  # PostgreSQL restarted under the run:
                    log("closing the DB poll connection: %s", exc)  # stop the rest anyway
            stack.stop()
            if self.engine is not None:
                self.engine.dispose()
            if self.conn is not None:
                left = bfloor.remove_domains(self.conn, stack.host)
                if left:
                    log("removed %d domain(s) the stack left behind", left)
                self.conn.close()

