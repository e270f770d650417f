"""One answer to "is this VM's domain mine", and the reconcile plan with
moves: arriving, leaving, finished, evacuated."""
from nova_compute import ownership
from nova_compute.reconciler import EVACUATED, ORPHAN, SYNC_POWER, VANISHED, Step, plan

A, B = "host-a", "host-b"


def row(host, migration=None, vm_state="active", task_state=None, power_state="running",
        **extra):
    values = {"host": host, "vm_state": vm_state, "task_state": task_state,
              "power_state": power_state, "migration": migration}
    values.update(extra)
    return values


def migration(source=A, dest=B, status="migrating", type_="live-migration"):
    return {"id": 7, "type": type_, "status": status, "source_host": source,
            "dest_host": dest}


def test_relation():
    assert ownership.relation(None, A) == ownership.NONE
    assert ownership.relation(row(A), A) == ownership.OWNER
    assert ownership.relation(row(B), A) == ownership.NONE
    assert ownership.relation({"host": A}, A) == ownership.OWNER  # a row before moves
    moving = row(A, migration())
    assert ownership.relation(moving, A) == ownership.IN_TRANSIT   # leaving
    assert ownership.relation(moving, B) == ownership.IN_TRANSIT   # arriving
    assert ownership.relation(moving, "host-c") == ownership.NONE
    resized = row(B, migration(status="finished", type_="resize"))  # awaiting confirm
    assert ownership.relation(resized, A) == ownership.IN_TRANSIT
    for ended in ("confirmed", "reverted", "completed", "error", "failed", "cancelled"):
        done = row(B, migration(status=ended))
        assert ownership.relation(done, A) == ownership.NONE
        assert ownership.relation(done, B) == ownership.OWNER


def test_evacuated_from_only_the_old_host():
    evacuating = row(B, migration(type_="evacuation", status="accepted"))
    assert ownership.evacuated_from(evacuating, A)
    assert not ownership.evacuated_from(evacuating, B)
    assert not ownership.evacuated_from(row(B, migration()), A)  # a live migration
    assert not ownership.evacuated_from(row(A, migration(type_="evacuation")), A)


def test_describe_names_the_move():
    assert ownership.describe(None) == "gone"
    assert ownership.describe(row(A, migration())) == (
        "active/None on host-a, live-migration migrating from host-a to host-b")


def test_an_arriving_domain_is_no_orphan():
    desired = {"vm": row(A, migration(A, B))}
    assert plan(desired, {"vm": "paused"}, B) == []


def test_a_leaving_vm_without_its_domain_has_not_vanished():
    # Live migration done, the row not switched yet; or a cold migration's
    # source whose definition is gone already.
    assert plan({"vm": row(A, migration(A, B))}, {}, A) == []
    cold = row(B, migration(A, B, status="finished", type_="resize"), vm_state="resized")
    assert plan({"vm": cold}, {"vm": "shutdown"}, A) == []   # the copy kept for a revert
    assert plan({"vm": cold}, {"vm": "running"}, B) == []    # awaiting confirm there


def test_after_a_move_finished_its_leftovers_are_orphans_and_its_loss_is_vanished():
    moved = row(B, migration(A, B, status="completed"))
    assert plan({"vm": moved}, {"vm": "shutdown"}, A) == [Step(ORPHAN, "vm", "shutdown")]
    assert plan({}, {"vm": "shutdown"}, A) == [Step(ORPHAN, "vm", "shutdown")]
    assert plan({"vm": moved}, {}, B) == [Step(VANISHED, "vm")]
    assert plan({"vm": moved}, {"vm": "shutdown"}, B) == [Step(SYNC_POWER, "vm", "shutdown")]


def test_a_copy_left_by_an_evacuation_is_destroyed_not_reported():
    evacuated = row(B, migration(A, B, status="accepted", type_="evacuation"))
    assert plan({"vm": evacuated}, {"vm": "running"}, A) == [Step(EVACUATED, "vm", "running")]
    assert plan({"vm": evacuated}, {}, A) == []
    assert plan({"vm": evacuated}, {"vm": "running"}, B) == []  # the rebuild's own


def test_rows_and_domains_together():
    desired = {
        "mine": row(A, power_state="running"),
        "arriving": row(B, migration(B, A)),
        "leaving": row(A, migration(A, B)),
        "gone": row(A, vm_state="stopped", power_state="shutdown"),
    }
    actual = {"mine": "paused", "arriving": "paused", "stray": "running"}
    assert plan(desired, actual, A) == [
        Step(VANISHED, "gone"), Step(SYNC_POWER, "mine", "paused"),
        Step(ORPHAN, "stray", "running")]
