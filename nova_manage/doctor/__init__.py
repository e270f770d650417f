"""``mininova-manage doctor``: checks a host before and after deployment and
says, for each problem, what is wrong and the exact fix.

Every check is a small function taking its inputs (paths, URIs, config values)
as arguments and returning a list of ``Result``; ``command`` picks the checks
of a role, runs them and prints. Tests point the checks at broken fixtures.
"""
import dataclasses

OK = "ok"
WARN = "warn"
FAIL = "fail"


@dataclasses.dataclass
class Result:
    status: str          # ok | warn | fail
    check: str           # short name: kvm, libvirt, qemu.conf, virtlogd, ...
    what: str            # what is (wrong), one line
    fix: str | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


def ok(check, what):
    return Result(OK, check, what)


def warn(check, what, fix=None):
    return Result(WARN, check, what, fix)


def fail(check, what, fix=None):
    return Result(FAIL, check, what, fix)
