"""P2: N concurrent POSTs on one host -> all ACTIVE, against N floor boots
from N threads (each on its own libvirt connection), rounds interleaved."""
import concurrent.futures
import statistics
import threading
import time

from bench.harness import log


def run(bench):
    """Rounds of: N floor boots from N threads, then N concurrent POSTs;
    the median wall time of each (interleaved, so both see the same host)."""
    n, rounds = bench.args.p2_vms, bench.args.p2_rounds
    log("P2: %d round(s) of %d boots in parallel: floor (%d threads), then mininova "
        "(%d POSTs)", rounds, n, n, n)
    floor_walls, walls, posts, all_ids = [], [], [], []
    for round_ in range(rounds):
        floor_wall, _ = bench.floor.parallel(n)
        wall, posted, ids = one_round(bench, n, round_)
        all_ids += ids
        floor_walls.append(floor_wall)
        walls.append(wall)
        posts.append(posted)
        log("  round %d: floor all %d RUNNING in %.2f s; mininova %d POSTs answered in "
            "%.2f s, all ACTIVE in %.2f s", round_ + 1, n, floor_wall, n, posted, wall)
    r = bench.results
    r["p2_vms"] = n
    r["p2_rounds_s"] = [round(w, 2) for w in walls]
    r["p2_floor_rounds_s"] = [round(w, 2) for w in floor_walls]
    r["p2_wall_s"] = round(statistics.median(walls), 2)
    r["p2_floor_wall_s"] = round(statistics.median(floor_walls), 2)
    r["p2_posts_s"] = round(statistics.median(posts), 2)
    r["p2_ratio"] = round(r["p2_wall_s"] / r["p2_floor_wall_s"], 2)
    r["p2_steps"] = bench.breakdown(all_ids)
    # When compute started each build (its first step), ms after the POST
    # was accepted, all rounds: builds beyond [DEFAULT] rpc_workers wait.
    r["p2_build_starts_ms"] = bench.last_build_starts


def one_round(bench, n, round_):
    ids = [None] * n
    barrier = threading.Barrier(n + 1)
    clients = [bench.client() for _ in range(n)]
    for c in clients:
        c.request("GET", "/v1")

    def post(i):
        barrier.wait(timeout=60)
        _, ids[i], _ = bench.post_vm(clients[i], "p2-%d-%03d" % (round_, i))

    poller = bench.client()
    with bench.profiler.phase("p2-%d" % (round_ + 1), bench.daemon_pids()):
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(post, i) for i in range(n)]
            barrier.wait(timeout=60)
            t0 = time.monotonic()
            for f in futures:
                f.result()
        posted = time.monotonic() - t0

        wall = bench.seen_in_api(poller, ids, "ACTIVE", timeout=300, list_=True) - t0
    for c in clients + [poller]:
        c.close()
    bench.delete_and_wait(ids)
    return wall, posted, ids
