"""What every v2.1 resource blueprint shares, so that a new resource gets it
by being made with ``blueprint()`` and listed in ``BLUEPRINTS``:

- routes relative to the versioned root (``@bp.get("/servers")``), served
  both under ``/compute/v2.1`` and under ``/compute/v2.1/<project_id>``
  (Nova's ProjectMapper routes both; the catalog URL has no project id). A
  project id in the URL must be the token's (else 400, as Nova), and then
  appears in the links of the answer (``url_project_id``);
- microversion negotiation, after authentication (a 401 comes first);
- path parameters that cannot be compared with stored names: 400."""
from flask import Blueprint, g

from common import exception
from nova_api import validation
from nova_api.openstack.compute import microversion

VERSIONED_ROOT = "/compute/v2.1"
_PROJECT_PREFIX = VERSIONED_ROOT + "/<project_id>"


def _pop_project_id(_endpoint, values):
    g.url_project_id = (values or {}).pop("project_id", None)


def _check_project_id():
    project_id = g.get("url_project_id")
    if project_id is not None and project_id != g.context.project_id:
        raise exception.Invalid(reason="Malformed request URL: URL's project_id '%s' doesn't "
                                "match the token's project" % project_id[:64])


def blueprint(name, import_name):
    bp = Blueprint(name, import_name)
    bp.url_value_preprocessor(_pop_project_id)
    bp.before_request(validation.check_path_params)
    bp.before_request(_check_project_id)
    bp.before_request(microversion.negotiate)
    return bp


def url_project_id():
    """The project id the request URL carried, or None."""
    return g.get("url_project_id")


def register(app, blueprints):
    """Each of ``blueprints`` under both roots."""
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix=VERSIONED_ROOT)
        app.register_blueprint(bp, url_prefix=_PROJECT_PREFIX, name=bp.name + "_in_project")
