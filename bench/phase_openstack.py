"""P10: the OpenStack facade as its clients use it, beside /v1 on the same
stack and driver, interleaved sample by sample so that all see the same host:

- /v1: ``POST /v1/vms`` -> ACTIVE, seen as P1 sees it (the row polled, then
  confirmed by a GET);
- CLI: ``openstack server create --wait`` (a fresh process each time: its
  Keystone login, version discovery, image and flavor lookups, the POST
  and its polls, at OSC's own poll interval);
- SDK: openstacksdk's cloud layer ``create_server(wait=True)`` on one
  connection (the first sample opens it: login and discovery).

The first sample of each path is reported apart (cold); p50/p95 are over
the others. Between two scrapes of the API's /metrics around each create,
the API's request-duration histogram tells how many requests each path
sent and the API's own time answering them, by surface (/compute, /image,
/identity, /v1): the facade's server-side cost per request, which is
P10's goal. The API's CPU time over the same intervals is kept too.

Then a Rally-style loop with openstacksdk's proxy layer: create_server,
wait_for_server, delete_server, wait_for_delete, one at a time, p50/p95 per
boot + delete. The CLI's Python start-up (importing its modules in a fresh
interpreter) is client cost, measured apart."""
import datetime
import time

from bench import openstack_clients, scale_sim
from bench.harness import log, ms, pct
from bench.phases_latency import row_times

PATHS = ("v1", "cli", "sdk")
SDK_CALLS = {True: "create_server(wait=True)",
             False: "compute.create_server + wait_for_server"}
WAIT = 600   # seconds any one create or delete may take on a loaded host


def run(bench):
    a = bench.args
    n = a.p10_samples
    clients = openstack_clients.Clients(bench.stack, bench.workdir)
    api = {"api": bench.stack.procs["api"]}
    v1 = bench.client()
    conn = None
    took = {p: [] for p in PATHS}
    evidence = {p: [] for p in PATHS}
    server = {p: {} for p in PATHS}
    cpu = {p: 0.0 for p in PATHS}
    # The cloud layer deletes a server that is ACTIVE without an address and
    # raises: it needs a network (--network); without, the proxy layer's
    # create_server + wait_for_server stands in (the same requests, its
    # 2 s polls instead of the cloud layer's 5 s).
    cloud_layer = bool(a.network)
    sdk_call = SDK_CALLS[cloud_layer]
    log("P10: %d samples each of /v1, openstack server create --wait and openstacksdk "
        "%s, interleaved; %d boot+delete loops", n, sdk_call, a.p10_loops)
    try:
        with bench.profiler.phase("p10", bench.daemon_pids()):
            for i in range(n):
                for path in PATHS:
                    before, cpu0 = clients.metrics(), scale_sim.cpu_seconds(api)["api"]
                    t0, wall0 = time.monotonic(), time.time()
                    if path == "v1":
                        _, vm_id, _ = bench.post_vm(v1, "p10-v1-%03d" % i)
                        seconds = bench.seen_in_api(v1, [vm_id], "ACTIVE", timeout=WAIT) - t0
                    elif path == "cli":
                        seconds, shown = clients.cli(
                            "server", "create", "--image", bench.tiny["id"], "--flavor",
                            bench.flavor["name"], "--wait", "p10-cli-%03d" % i)
                        vm_id = _active(shown["id"], shown["status"])
                    else:
                        conn = conn or clients.sdk()
                        made = sdk_create(conn, "p10-sdk-%03d" % i, bench.tiny["id"],
                                          bench.flavor["name"], cloud_layer)
                        seconds = time.monotonic() - t0
                        vm_id = _active(made.id, made.status)
                    cpu[path] += scale_sim.cpu_seconds(api)["api"] - cpu0
                    _add(server[path], openstack_clients.by_surface(before, clients.metrics()))
                    took[path].append(seconds)
                    evidence[path].append(_evidence(bench, vm_id, seconds, wall0))
                    bench.delete_and_wait([vm_id], timeout=WAIT)
                log("  sample %d/%d: /v1 %.0f ms, CLI %.0f ms, SDK %.0f ms", i + 1, n,
                    *(took[p][-1] * 1000 for p in PATHS))
            conn = conn or clients.sdk()
            rally = boot_and_delete_loop(bench, clients, conn, a.p10_loops)
    finally:
        v1.close()
        if conn is not None:
            conn.close()
    imports = [openstack_clients.import_seconds() for _ in range(max(3, min(n, 10)))]
    _record(bench.results, took, evidence, server, cpu, rally, imports)
    bench.results["p10"]["sdk_call"] = sdk_call


def sdk_create(conn, name, image_id, flavor_name, cloud_layer):
    """A server created through openstacksdk, waited for until ACTIVE."""
    if cloud_layer:
        return conn.create_server(name, image=image_id, flavor=flavor_name, wait=True,
                                  timeout=WAIT, auto_ip=False)
    flavor = conn.compute.find_flavor(flavor_name, ignore_missing=False)
    made = conn.compute.create_server(name=name, image_id=image_id, flavor_id=flavor.id)
    return conn.compute.wait_for_server(made, status="ACTIVE", wait=WAIT)


def boot_and_delete_loop(bench, clients, conn, loops):
    """Rally's boot-and-delete with openstacksdk's proxy layer (its default
    poll intervals), one server at a time: seconds per boot + delete."""
    flavor = conn.compute.find_flavor(bench.flavor["name"], ignore_missing=False)
    took, served = [], {}
    for i in range(loops):
        before = clients.metrics()
        t0 = time.monotonic()
        made = conn.compute.create_server(name="p10-rally-%03d" % i,
                                          image_id=bench.tiny["id"], flavor_id=flavor.id)
        active = conn.compute.wait_for_server(made, status="ACTIVE", wait=WAIT)
        conn.compute.delete_server(active)
        conn.compute.wait_for_delete(active, wait=WAIT)
        took.append(time.monotonic() - t0)
        _add(served, openstack_clients.by_surface(before, clients.metrics()))
        log("  boot+delete %d/%d: %.0f ms", i + 1, loops, took[-1] * 1000)
    return {"loops": loops, "samples_ms": [ms(s) for s in took], "p50_ms": ms(pct(took, 50)),
            "p95_ms": ms(pct(took, 95)), "server": _per_request(served)}


def _active(vm_id, status):
    if status != "ACTIVE":
        raise RuntimeError("server %s came back %s, not ACTIVE" % (vm_id, status))
    return vm_id


def _add(total, answered):
    for name, (seconds, count) in answered.items():
        s, c = total.get(name, (0.0, 0))
        total[name] = (s + seconds, c + count)


def _per_request(served):
    """{surface: {requests, ms_per_request}}, the /metrics scrapes left out."""
    return {name: {"requests": count, "ms_per_request": ms(seconds / count)}
            for name, (seconds, count) in sorted(served.items())
            if count and name != "other"}


def _evidence(bench, vm_id, seconds, wall0):
    """When the API created the row and the conductor marked it launched,
    in ms from the sample's start (the same for every path: the build is
    one; what differs is the client)."""
    row = row_times(bench, vm_id)

    def offset(naive_utc):
        if naive_utc is None:
            return None
        at = naive_utc.replace(tzinfo=datetime.timezone.utc).timestamp()
        return round((at - wall0) * 1000.0, 1)
    return {"sample_ms": ms(seconds), "created_ms": offset(row.created_at),
            "launched_ms": offset(row.launched_at)}


def _record(r, took, evidence, server, cpu, rally, imports):
    p10 = {"paths": {}, "rally": rally,
           "cli_import_samples_ms": [ms(s) for s in imports],
           "cli_import_p50_ms": ms(pct(imports, 50))}
    for path in PATHS:
        warm = took[path][1:]
        per_request = _per_request(server[path])
        requests = sum(x["requests"] for x in per_request.values())
        p10["paths"][path] = {
            "cold_ms": ms(took[path][0]), "samples_ms": [ms(s) for s in warm],
            "p50_ms": ms(pct(warm, 50)), "p95_ms": ms(pct(warm, 95)),
            "launched_p50_ms": ms(pct([e["launched_ms"] / 1000.0 for e in evidence[path]
                                       if e["launched_ms"] is not None], 50)),
            "evidence": evidence[path], "server": per_request,
            "requests_per_create": round(requests / len(took[path]), 1),
            "api_cpu_ms_per_request": ms(cpu[path] / requests) if requests else None}
    r["p10"] = p10
    for path in PATHS:
        for key in ("p50_ms", "p95_ms", "cold_ms"):
            r["p10_%s_%s" % (path, key)] = p10["paths"][path][key]
    r["p10_rally_p50_ms"], r["p10_rally_p95_ms"] = rally["p50_ms"], rally["p95_ms"]
    r["p10_cli_import_p50_ms"] = p10["cli_import_p50_ms"]
    # The facade's server-side ms per /compute request, over every create of
    # the CLI and the SDK and the boot+delete loop; /v1's beside it.
    compute = [server["cli"].get("compute"), server["sdk"].get("compute")]
    loop = rally["server"].get("compute")
    seconds = sum(c[0] for c in compute if c) + (loop["ms_per_request"] * loop["requests"]
                                                 / 1000.0 if loop else 0.0)
    count = sum(c[1] for c in compute if c) + (loop["requests"] if loop else 0)
    r["p10_compute_server_ms"] = ms(seconds / count) if count else None
    r["p10_compute_requests"] = count
    v1 = server["v1"].get("v1")
    r["p10_v1_server_ms"] = ms(v1[0] / v1[1]) if v1 else None
    log("P10: /v1 %s, CLI %s, SDK %s ms (p50); server-side %s ms per /compute request "
        "(/v1 %s); boot+delete p50 %s ms", r["p10_v1_p50_ms"], r["p10_cli_p50_ms"],
        r["p10_sdk_p50_ms"], r["p10_compute_server_ms"], r["p10_v1_server_ms"],
        r["p10_rally_p50_ms"])

