"""Keystone v3 projects, read-only: ``GET /identity/v3/projects/{id}`` and
``GET /identity/v3/projects[?name=]`` (how OSC resolves ``--project NAME``).
An admin sees every project; anyone else those it holds a role in (Keystone
answers 403 to a member's list; this is the friendlier subset, which leaks
nothing). Another project by id: 403, as Keystone; an unknown one: 404."""
import sqlalchemy as sa
from flask import Blueprint, current_app, g, jsonify

from common import exception
from common.db import identity
from common.db.models import Project
from nova_api import validation
from nova_api.openstack.identity import schemas, views

bp = Blueprint("identity_projects", __name__)
bp.before_request(validation.check_path_params)


def _db():
    return current_app.extensions["mininova"]["db"]


@bp.get("/identity/v3/projects/<project_id>")
def show(project_id):
    with _db().transaction() as s:
        project = s.get(Project, project_id)
        if project is None:  # named, but no longer than an id can be
            raise exception.ProjectNotFound(project=project_id if len(project_id) <= 64
                                            else project_id[:64] + "...")
        if not g.context.is_admin and not identity.roles_in(s, g.context.user_id, project.id):
            raise exception.Forbidden("You may only see the projects you hold a role in.")
        return jsonify({"project": views.project(project)})


@bp.get("/identity/v3/projects")
def index():
    params = validation.query_params(schemas.PROJECTS_QUERY)
    with _db().transaction() as s:
        if g.context.is_admin:
            projects = s.scalars(sa.select(Project).order_by(Project.name)).all()
        else:
            projects = identity.user_projects(s, g.context.user_id)
        if params.get("domain_id", "default") != "default":
            projects = []
        if "name" in params:
            projects = [p for p in projects if p.name == params["name"]]
        body = [views.project(p) for p in projects]
    return jsonify({"projects": body, "links": views.collection_links("identity/v3/projects")})
