"""Is this VM's domain mine? One answer for every decision of this host.

A VM row (a dict of the conductor's, or None for a VM that is gone) relates
to a host in one of three ways:

- ``OWNER``: the row puts the VM on this host and no move involves it: this
  host builds it, runs its power tasks, syncs its state and reports it
  vanished when its domain is missing.
- ``IN_TRANSIT``: the VM's move in progress has this host as source or
  destination (``row["migration"]``), whichever host the row names: its
  domain here may be arriving, leaving or a copy kept for a revert. Neither
  reaped as an orphan nor reported as vanished; the move's own steps report.
- ``NONE``: nothing of this VM belongs here; a domain of it is an orphan.

Rows without a ``"migration"`` key (a conductor older than moves) are rows
without a move.
"""
from common import states

OWNER = "owner"
IN_TRANSIT = "in-transit"
NONE = "none"


def migration_in_progress(row):
    """The row's move in progress as a dict, or None."""
    migration = row.get("migration") if row is not None else None
    # The conductor sends only moves in progress; this is a safeguard.
    if not migration or migration.get("status") in states.MIGRATION_ENDED:
        return None
    return migration


def relation(row, host):
    """OWNER, IN_TRANSIT or NONE: how ``host`` relates to the VM of ``row``."""
    if row is None:
        return NONE
    migration = migration_in_progress(row)
    if migration is not None and host in (migration.get("source_host"),
                                          migration.get("dest_host")):
        return IN_TRANSIT
    return OWNER if row.get("host") == host else NONE


def evacuated_from(row, host):
    """True when ``row``'s VM is being (or was) evacuated away from ``host``:
    any copy of it left here is stale (its host was down and the VM is
    rebuilt elsewhere) and must not run beside the new one."""
    migration = migration_in_progress(row)
    return (migration is not None and migration.get("type") == "evacuation"
            and migration.get("source_host") == host and row.get("host") != host)


def describe(row):
    """A short "where is it" for logs and skip reasons."""
    if row is None:
        return "gone"
    text = "%s/%s on %s" % (row.get("vm_state"), row.get("task_state"), row.get("host"))
    migration = migration_in_progress(row)
    if migration is not None:
        text += ", %s %s from %s to %s" % (migration.get("type"), migration.get("status"),
                                           migration.get("source_host"),
                                           migration.get("dest_host"))
    return text
