"""Who may send what: the RPC server's check of a message's sender.

With per-role broker accounts (README "Broker accounts") every message
carries the AMQP ``user_id`` property, which RabbitMQ checks against the
publishing connection's user: a publisher cannot lie about it. The broker
user names a role (and, for a compute, its host):

    <base>.api  <base>.scheduler  <base>.conductor  <base>.manage
    <base>.compute.<host>

(``base`` without dots, e.g. ``mininova``; a host may contain dots.)

Each endpoint declares ``RPC_POLICY``: for every entry point a ``Rule``, the
roles that may call it and whether it carries a user's request (acts with the
authority of the request context: only roles that authenticate users or
relay their requests may send those). On top of that, a compute host speaks
only for itself: a message from ``<base>.compute.h1`` whose ``host``
argument names another host is refused.

A server whose own broker user names no role (one shared account, the
single-user install) accepts senders that name none (or no ``user_id``);
a server with a role account refuses them.
"""
import dataclasses

from common import exception

ROLES = frozenset({"api", "scheduler", "conductor", "compute", "manage"})
# The API authenticated the user, mininova-manage runs as the operator; the
# scheduler and the conductor relay what those asked. A compute host only
# reports on its own VMs: it never originates a request on a user's behalf.
REQUEST_CARRIERS = frozenset({"api", "manage", "scheduler", "conductor"})


@dataclasses.dataclass(frozen=True)
class Sender:
    role: str
    host: str | None = None
    user: str | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """``roles``: who may call the entry point; ``user_request``: it acts with
    the authority of the request context (a user's create, an admin's live
    migration), so only ``REQUEST_CARRIERS`` may send it."""
    roles: frozenset
    user_request: bool = False

    def __post_init__(self):
        roles = frozenset(self.roles)
        object.__setattr__(self, "roles", roles)
        unknown = roles - ROLES
        if unknown:
            raise TypeError("unknown RPC roles %s" % sorted(unknown))
        if self.user_request and roles - REQUEST_CARRIERS:
            raise TypeError("roles %s cannot carry a user's request"
                            % sorted(roles - REQUEST_CARRIERS))


def allow(*roles, user_request=False):
    return Rule(frozenset(roles), user_request)


def sender_of(user):
    """Broker user name -> Sender, or None for a name that names no role."""
    if not isinstance(user, str) or not user:
        return None
    base, sep, rest = user.partition(".")
    if not sep or not base:
        return None
    role, _, host = rest.partition(".")
    if role == "compute":
        return Sender("compute", host, user) if host else None
    if role in ROLES and not host:
        return Sender(role, None, user)
    return None


def check(rule, method, sender, args, strict):
    """Raise RPCForbidden unless ``sender`` (a Sender or None) may send
    ``method`` with ``args``. ``rule`` None: the endpoint declares no policy
    (only allowed to senders of no role). ``strict``: this server runs with a
    role account, so a sender without one is refused."""
    if sender is None:
        if strict:
            raise exception.RPCForbidden(sender="an unidentified sender", method=method,
                                         reason="messages must carry a role's broker user_id")
        return
    name = "%s (role %s)" % (sender.user, sender.role)
    if rule is None:
        raise exception.RPCForbidden(sender=name, method=method,
                                     reason="the entry point declares no policy")
    if sender.role not in rule.roles:
        raise exception.RPCForbidden(
            sender=name, method=method,
            reason="only %s may call it" % ", ".join(sorted(rule.roles)))
    if sender.role == "compute":
        claimed = args.get("host")
        if claimed is not None and claimed != sender.host:
            raise exception.RPCForbidden(
                sender=name, method=method,
                reason="a compute host speaks for itself, not for host %r" % (claimed,))


def declared(endpoint, methods):
    """The endpoint's RPC_POLICY, checked: a Rule for each of ``methods``
    (TypeError at start-up otherwise). None if it declares none."""
    rules = getattr(endpoint, "RPC_POLICY", None)
    if rules is None:
        return None
    name = type(endpoint).__name__
    if not isinstance(rules, dict) or not all(isinstance(r, Rule) for r in rules.values()):
        raise TypeError("%s.RPC_POLICY must map method names to policy.Rule" % name)
    if set(rules) != set(methods):
        raise TypeError("%s.RPC_POLICY must have a rule for each of RPC_METHODS and no "
                        "other: missing %s, extra %s" % (name, sorted(set(methods) - set(rules)),
                                                         sorted(set(rules) - set(methods))))
    return rules
