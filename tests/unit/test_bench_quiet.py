"""bench/quiet.py: the CPU others use before a phase, and the wait for quiet."""
from bench import quiet


def test_sample_splits_the_machine_cpu_into_own_and_foreign():
    # Two CPUs; one second of wall time: 2.0 CPU seconds in all.
    machine = iter([(10.0, 100.0, 1.0), (11.2, 102.0, 1.1)])
    tables = iter([
        {1: (0, "init", 0.0), 100: (1, "python", 5.0), 101: (100, "mininova-api", 1.0),
         200: (1, "qemu-system-x86", 3.0)},
        {1: (0, "init", 0.0), 100: (1, "python", 5.1), 101: (100, "mininova-api", 1.3),
         200: (1, "qemu-system-x86", 3.7), 300: (1, "new", 9.0)},
    ])
    s = quiet.sample([100], read_machine=lambda: next(machine),
                     read_processes=lambda: next(tables), sleep=lambda _: None)
    assert s["machine"] == 1.2 and s["own"] == 0.4 and s["foreign"] == 0.8
    assert s["steal"] == 0.1  # 0.1 CPU seconds kept by the hypervisor in the second
    assert s["top"] == [("qemu-system-x86", 200, 0.7)]  # a process born meanwhile: not timed


def test_wait_quiet_waits_for_quiet_and_gives_up_after_max_wait():
    now = [0.0]
    loads = iter([0.9, 0.5, 0.1])

    def sampler(_own):
        now[0] += 1.0
        return {"foreign": next(loads), "top": [("bench", 7, 0.9)]}
    logged = []
    s = quiet.wait_quiet([1], 0.25, 60, lambda *a: logged.append(a), sampler=sampler,
                         clock=lambda: now[0])
    assert s["quiet"] and s["foreign"] == 0.1 and len(logged) == 2

    now[0], loads = 0.0, iter([0.9, 0.9, 0.9])
    s = quiet.wait_quiet([1], 0.25, 2, lambda *a: None, sampler=sampler, clock=lambda: now[0])
    assert not s["quiet"] and s["waited_s"] >= 2


def test_descendants_follow_the_process_tree():
    table = {1: (0, "init", 0), 10: (1, "a", 0), 11: (10, "b", 0), 12: (11, "c", 0),
             20: (1, "d", 0)}
    assert quiet.descendants([10], table) == {10, 11, 12}


def test_reference_loop_is_cpu_time_of_a_fixed_loop():
    assert 0 < quiet.reference_loop_ms(100_000) < quiet.reference_loop_ms(2_000_000)
