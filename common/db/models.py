"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations in
``common/db/migrations``; a test checks that both agree."""
import datetime

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint, false, text, true)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow():
    """Naive UTC: SQLite keeps no time zone, so every timestamp is UTC by rule."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Flavor(Base):
    """A VM size. A private flavor (``is_public`` false) is seen by admins
    and the projects in its access list (FlavorAccess) only."""
    __tablename__ = "flavors"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    swap_mb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")
    is_public: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class FlavorAccess(Base):
    """A project that may use a private flavor."""
    __tablename__ = "flavor_projects"
    flavor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("flavors.id", ondelete="CASCADE",
                               name="fk_flavor_projects_flavor_id"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class FlavorExtraSpec(Base):
    """A key/value pair an admin attached to a flavor (Nova's extra specs)."""
    __tablename__ = "flavor_extra_specs"
    flavor_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("flavors.id", ondelete="CASCADE",
                               name="fk_flavor_extra_specs_flavor_id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class KeyPair(Base):
    """A user's SSH public key, named uniquely per user; a VM created with
    its name gets the key on its config drive."""
    __tablename__ = "key_pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE", name="fk_key_pairs_user_id"))
    name: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("user_id", "name", name="uniq_key_pairs_user_name"),)


class Image(Base):
    """An image, for /v1 and Glance v2. Created ``queued`` without data
    (Glance's two steps) or ``active`` with it (/v1, mininova-manage);
    ``checksum`` is the data's sha256, which compute hosts verify, and
    Glance's ``checksum`` is ``md5``. ``owner`` is a project id, None for
    images an operator registered (public)."""
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # No defaults: Glance creates images without formats (set before the upload).
    disk_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    container_format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checksum: Mapped[str | None] = mapped_column(String(64), nullable=True)  # sha256, hex
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha512: Mapped[str | None] = mapped_column(String(128), nullable=True)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    location: Mapped[str | None] = mapped_column(Text, nullable=True)  # path in the image store
    status: Mapped[str] = mapped_column(String(16), default="active")
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public",
                                            server_default="public")
    protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True,
                                                                 default=utcnow)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    # Names may repeat (as in Glance); looked up by name, so indexed.
    __table_args__ = (Index("ix_images_name", "name"),)


class ImageProperty(Base):
    """A Glance extra property of an image: any name, a string value."""
    __tablename__ = "image_properties"
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE",
                               name="fk_image_properties_image_id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImageTag(Base):
    __tablename__ = "image_tags"
    image_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("images.id", ondelete="CASCADE", name="fk_image_tags_image_id"),
        primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    # Where the name is unique ([api] unique_vm_name_scope at create): the
    # project's id, "" for all projects, None for nowhere.
    name_scope: Mapped[str | None] = mapped_column(String(64), nullable=True)
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    image_id: Mapped[str] = mapped_column(String(36))
    flavor_id: Mapped[str] = mapped_column(String(36))
    # The flavor's sizes are copied: a VM keeps what it was built with.
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    vm_state: Mapped[str] = mapped_column(String(16))
    task_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    power_state: Mapped[str] = mapped_column(String(16), default="nostate")
    fault: Mapped[str | None] = mapped_column(Text, nullable=True)
    group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # JSON list of {"host", "error"}: the hosts a build already failed on.
    sched_attempts: Mapped[str | None] = mapped_column(Text, nullable=True)
    mac_address: Mapped[str | None] = mapped_column(String(17), nullable=True)
    ip_address: Mapped[str | None] = mapped_column(String(45), nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    launched_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    # Nova's server fields (migration 0013); the metadata is InstanceMetadata.
    # key_data: the keypair's public key as it was at create (the VM keeps it).
    key_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    key_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_data: Mapped[str | None] = mapped_column(Text, nullable=True)  # base64, as given
    access_ipv4: Mapped[str | None] = mapped_column(String(15), nullable=True)
    access_ipv6: Mapped[str | None] = mapped_column(String(39), nullable=True)  # canonical
    disk_config: Mapped[str] = mapped_column(String(8), default="MANUAL",
                                             server_default="MANUAL")
    locked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    locked_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # owner | admin
    __table_args__ = (
        # Names are unique among the live VMs of a name scope, enforced here and
        # not by read-then-write, so concurrent creates of one name cannot both
        # win; NULL scopes never collide.
        Index("uniq_instances_name_scope_live", "name_scope", "name", unique=True,
              postgresql_where=text("deleted_at IS NULL"),
              sqlite_where=text("deleted_at IS NULL")),
        Index("ix_instances_project_name", "project_id", "name"),
        Index("ix_instances_host", "host"),
        Index("ix_instances_deleted_at", "deleted_at"),
        Index("ix_instances_group_id", "group_id"),
    )


class InstanceMetadata(Base):
    """A key/value pair of a VM's metadata (Nova's server metadata)."""
    __tablename__ = "instance_metadata"
    instance_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.id", ondelete="CASCADE",
                               name="fk_instance_metadata_instance_id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class ServerGroup(Base):
    """VMs whose placement is related: together (affinity) or apart
    (anti-affinity). Members are the live instances with this group_id."""
    __tablename__ = "server_groups"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)


class Service(Base):
    """A running daemon; compute services heartbeat through the conductor."""
    __tablename__ = "services"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    last_heartbeat: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("host", "binary", name="uniq_services_host_binary"),)


class ComputeNode(Base):
    """A hypervisor's capacity (reported) and what is allocated on it.

    ``*_used`` are the sums of the allocations on this node, changed only in
    the same transaction that adds or removes an allocation, by conditional
    UPDATEs that cannot over-commit (see ``common.db.allocations``)."""
    __tablename__ = "compute_nodes"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    local_gb: Mapped[int] = mapped_column(Integer, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    hypervisor_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cpu_info: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, as reported
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    # Bumped whenever the ``*_used`` sums change: a reader that saw
    # generation >= g has seen the allocation that made it g (see
    # nova_scheduler/host_state.py).
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Allocation(Base):
    """Resources a consumer holds on one host, as Placement's allocations. A
    consumer is a VM (its id) or a migration (its uuid): during a move the VM
    holds the destination while its migration holds the source."""
    __tablename__ = "allocations"
    consumer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("ix_allocations_host", "host"),)


class FixedIp(Base):
    """A VM's fixed IPv4 address in a network, allocated before it boots (see
    common/db/fixed_ips.py); ``instance_id`` NULL: free again since
    ``released_at``."""
    __tablename__ = "fixed_ips"
    network: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(45), primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    allocated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    released_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    # NULLs are distinct: any number of free rows, one held address per VM.
    __table_args__ = (UniqueConstraint("network", "instance_id",
                                       name="uniq_fixed_ips_network_instance"),
                      Index("ix_fixed_ips_instance_id", "instance_id"))


class Migration(Base):
    """A move of a VM between hosts (Nova's migration record): resize, cold
    migration, live migration or evacuation, from ``source_host`` to
    ``dest_host`` (None until chosen). ``status`` runs from "pre-migrating"
    to one of ``states.MIGRATION_ENDED``."""
    __tablename__ = "migrations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    source_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    dest_host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    migration_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    old_flavor_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    new_flavor_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A live migration's progress in bytes, as its source last reported it.
    memory_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    memory_processed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    memory_remaining: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_processed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disk_remaining: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("ix_migrations_instance_id", "instance_id"),
                      Index("ix_migrations_source_host", "source_host"),
                      Index("ix_migrations_dest_host", "dest_host"))


class InstanceAction(Base):
    """One user action on a VM (create, delete, stop, ...), keyed by the
    request id that started it; outlives the VM (see ``common.db.actions``).
    ``result`` is None while it runs, then "success" or "error"."""
    __tablename__ = "instance_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    request_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_time: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (
        UniqueConstraint("instance_id", "request_id",
                         name="uniq_instance_actions_instance_request"),
        Index("ix_instance_actions_instance_id", "instance_id"),
    )


class InstanceActionEvent(Base):
    """One step of an action, recorded by the daemon that did it."""
    __tablename__ = "instance_action_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("instance_actions.id", ondelete="CASCADE",
                            name="fk_instance_action_events_action_id"))
    event: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    start_time: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    finish_time: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str | None] = mapped_column(String(16), nullable=True)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index("ix_instance_action_events_action_id", "action_id"),)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class User(Base):
    """A user of the default domain. ``project_id`` is its default project
    (what an unscoped authentication and a ``mininova-manage token create``
    token are scoped to); its roles are its RoleAssignments. Without a
    ``password_hash`` it cannot authenticate with a password (only with
    tokens an operator made for it). A disabled user cannot authenticate and
    its tokens are refused."""
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), ForeignKey("projects.id"))
    # "scrypt$<log2 N>$<r>$<p>$<salt>$<hash>" (common/passwords.py); never the password.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)


class RoleAssignment(Base):
    """A role a user holds in a project: reader, member, manager or admin,
    each implying the ones before it (common/db/auth.py IMPLIED_ROLES)."""
    __tablename__ = "role_assignments"
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE",
                               name="fk_role_assignments_user_id"), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.id", name="fk_role_assignments_project_id"),
        primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class Token(Base):
    """An API token: only the sha256 of its secret is stored. ``project_id``
    is its scope (None: the user's default project); ``methods`` (comma-
    separated) and the audit ids are Keystone's, for tokens issued by the
    identity API (a re-scoped token carries the first token's audit id as its
    ``audit_chain_id``)."""
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), ForeignKey("users.id"))
    project_id: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("projects.id", name="fk_tokens_project_id"), nullable=True)
    methods: Mapped[str | None] = mapped_column(String(64), nullable=True)
    audit_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    audit_chain_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, nullable=True)
    __table_args__ = (Index("ix_tokens_user_id", "user_id"),)


class QuotaLimit(Base):
    """An admin's override of a project's limit (defaults come from config)."""
    __tablename__ = "quota_limits"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaClass(Base):
    """A limit of a quota class; the ``default`` class's limits replace the
    configured defaults of every project without an override."""
    __tablename__ = "quota_classes"
    class_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaUsage(Base):
    """A part of what a project's live VMs hold (the sum of the project's
    rows is), changed only by conditional UPDATEs in the transaction that
    creates or deletes a VM (see common.db.auth.USAGE_SHARDS)."""
    __tablename__ = "quota_usages"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, default=0)
    instances: Mapped[int] = mapped_column(Integer, default=0)
    cores: Mapped[int] = mapped_column(Integer, default=0)
    ram: Mapped[int] = mapped_column(Integer, default=0)


class AuthEpoch(Base):
    """One row: how many changes to tokens and users there have been. On
    PostgreSQL a trigger counts each and NOTIFYs its number (migration 0007,
    common/db/revocations.py); SQLite leaves it at 0."""
    __tablename__ = "auth_epoch"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """The VM a project's create with this X-Idempotency-Key made (common/db/idempotency.py)."""
    __tablename__ = "idempotency_keys"
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    # sha256 of the create's body: the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime)
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)
