"""The OpenAPI 3.1 description of the API, served at ``GET /v1/openapi.json``.

Request bodies and parameters are the very JSON schemas the blueprints
validate with (imported, never copied), so the description cannot drift from
what the API accepts; ``tests/unit/test_openapi.py`` checks that every route
of the app is described here and nothing else. OpenAPI 3.1 is used because
its schemas are JSON Schema 2020-12, the dialect ``nova_api.validation`` uses.
"""
import copy
import functools

from common.db import auth as db_auth
from common.db import hosts as db_hosts
from nova_api import idempotency, validation
from nova_api.blueprints import (images, migrations, quotas, server_groups, services,
                                  versions, vms)

OPENAPI_VERSION = "3.1.0"
TOKEN_HEADER = "X-Auth-Token"

# -- reusable pieces ------------------------------------------------------------

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_NINT = {"type": ["integer", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": ["string", "null"], "format": "date-time"}


def _obj(props, required=None):
    """An object schema requiring all ``props`` (or ``required``)."""
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required}


def _ref(name):
    return {"$ref": "#/components/schemas/" + name}


def _wrap(key, schema):
    return _obj({key: schema})


def _list(key, name):
    return _obj({key: {"type": "array", "items": _ref(name)}})


SCHEMAS = {
    "Error": _obj({"error": _obj({"code": {"type": "integer", "minimum": 400, "maximum": 599},
                                  "message": _STR})}),
    "Version": _obj({"id": _STR, "status": _STR,
                     "links": {"type": "array", "items": _obj({"rel": _STR, "href": _STR})}}),
    "VM": _obj({
        "id": {"type": "string", "format": "uuid"},
        "name": _STR,
        "status": {"enum": ["BUILD", "ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "ERROR",
                            "DELETED", "DELETING", "REBOOT", "HARD_REBOOT", "REBUILD",
                            "UNKNOWN"]},
        "vm_state": _STR,
        "task_state": _NSTR,
        "power_state": _STR,
        "host": _NSTR,
        "project_id": _STR,
        "server_group": _NSTR,
        "image": _obj({"id": _STR, "name": _NSTR}),
        "flavor": _obj({"id": _STR, "name": _NSTR, "vcpus": _INT, "ram": _INT, "disk": _INT}),
        "created_at": _NTIME,
        "updated_at": _NTIME,
        "launched_at": _NTIME,
        "addresses": {"type": "array", "items": _obj({"mac": _STR, "ip": _NSTR})},
        "fault": {"oneOf": [{"type": "null"}, _obj({"message": _STR})]},
        # One VM's answers only (create, show, rename), not the list's:
        "key_name": _NSTR,
        "metadata": {"type": "object", "additionalProperties": _STR},
    }, required=["id", "name", "status", "vm_state", "task_state", "power_state", "host",
                 "project_id", "server_group", "image", "flavor", "created_at", "updated_at",
                 "launched_at", "addresses", "fault"]),
    "Link": _obj({"rel": {"enum": ["next"]},
                  "href": {"type": "string", "description": "The next page: the same "
                           "request with the marker of this page's last item."}}),
    "Flavor": _obj({"id": _STR, "name": _STR, "vcpus": _INT, "ram": _INT, "disk": _INT}),
    # An image made through Glance v2 may have no name, format or data yet.
    "Image": _obj({"id": _STR, "name": _NSTR, "disk_format": _NSTR, "size": _NINT,
                   "checksum": _NSTR, "min_ram": _INT, "min_disk": _INT, "status": _STR,
                   "created_at": _NTIME}),
    "Service": _obj({"id": _INT, "binary": _STR, "host": _STR,
                     "status": {"enum": ["enabled", "disabled"]},
                     "state": {"enum": ["up", "down"]},
                     "last_heartbeat": _NTIME, "disabled_reason": _NSTR}),
    "Resource": _obj({"total": _INT, "allocation_ratio": {"type": "number"}, "capacity": _INT,
                      "used": _INT, "free": _INT}),
    "Host": _obj({
        "name": _STR, "state": {"enum": ["up", "down"]},
        "status": {"enum": ["enabled", "disabled"]}, "hypervisor_type": _NSTR,
        "vcpus": _ref("Resource"), "memory_mb": _ref("Resource"), "disk_gb": _ref("Resource"),
        "vms": {"type": "array", "items": _obj({"id": _STR, "name": _STR, "vm_state": _STR})},
    }),
    "ServerGroup": _obj({"id": _STR, "name": _STR, "policy": {"enum": list(db_hosts.POLICIES)},
                         "project_id": _STR, "created_at": _NTIME,
                         "members": {"type": "array", "items": _STR}}),
    "InstanceAction": _obj({"instance_id": _STR, "request_id": _STR, "action": _STR,
                            "start_time": _NTIME, "finish_time": _NTIME, "result": _NSTR,
                            "message": _NSTR, "user_id": _NSTR, "project_id": _NSTR}),
    "InstanceActionEvent": _obj({"event": _STR, "host": _NSTR, "start_time": _NTIME,
                                 "finish_time": _NTIME,
                                 "duration_ms": {"type": ["integer", "null"]},
                                 "result": _NSTR, "details": _NSTR}),
    "Quota": _obj({
        "project_id": _STR,
        "limits": _obj({r: {"type": "integer", "minimum": -1} for r in db_auth.RESOURCES}),
        "usage": _obj({r: _INT for r in db_auth.RESOURCES}),
    }),
}
SCHEMAS["Migration"] = _obj({
    "id": _STR, "vm": _STR, "type": _STR, "status": _STR, "source": _NSTR,
    "destination": _NSTR, "old_flavor": _NSTR, "new_flavor": _NSTR, "request_id": _NSTR,
    "created_at": _NTIME, "updated_at": _NTIME,
    **{"%s_%s_bytes" % (kind, key): _NINT
       for kind in ("memory", "disk") for key in ("total", "processed", "remaining")}})
SCHEMAS["InstanceActionDetail"] = {"allOf": [_ref("InstanceAction"), _obj({
    "duration_ms": {"type": ["integer", "null"]},
    "events": {"type": "array", "items": _ref("InstanceActionEvent")}})]}

# Every error a caller can be answered, by status code.
ERRORS = {
    400: "Invalid request: a body, path or query parameter failed validation "
         "(the message names it), or the request cannot be done as asked.",
    401: "No X-Auth-Token header, or an unknown or expired token.",
    403: "Forbidden: the endpoint needs the admin role, or a quota would be exceeded.",
    404: "No such resource (or not in the caller's project).",
    409: "Conflict with the current state (a duplicate name, or a VM in a state that does "
         "not allow the action), or an ambiguous reference (a project name that is another "
         "project's id).",
    413: "Request body too large.",
    415: "Wrong Content-Type for the body.",
    503: "A backend is unavailable or did not answer in time: the database (any call "
         "with a token), the message broker or a compute host.",
}
HEADERS = {
    "X-Request-Id": {"description": "The request id, in the logs of every daemon that "
                                    "worked on the request.",
                     "schema": {"type": "string", "pattern": "^req-"}},
    "Location": {"description": "Path of the resource created.", "required": True,
                 "schema": {"type": "string"}},
    "X-Image-Sha256": {"description": "sha256 of the image file, hex.", "required": True,
                       "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
}
_REQUEST_ID = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
RESPONSES = {
    str(code): {"description": text, "headers": _REQUEST_ID,
                "content": {"application/json": {"schema": _ref("Error")}}}
    for code, text in ERRORS.items()
}


def _path_param(name, description, schema=None, example=None):
    param = {"name": name, "in": "path", "required": True, "description": description,
             "schema": schema or {"type": "string", "minLength": 1,
                                  "pattern": validation.PATH_PARAM_PATTERN}}
    if example is not None:
        param["example"] = example
    return param


# The examples name what the request body examples create (and m1.tiny,
# which `mininova-manage db sync` seeds; "blank" is the README's image).
PARAMETERS = {
    "vm": _path_param("ref", "VM id or name.", example="web1"),
    "request_id": _path_param("request_id", "Request id of the action (req-...)."),
    "flavor": _path_param("ref", "Flavor id or name.", example="m1.tiny"),
    "image": _path_param("ref", "Image id or name.", example="blank"),
    "group": _path_param("ref", "Server group id or name.", example="web"),
    "host": _path_param("name", "Compute host name."),
    "project": _path_param("project_id", "Project id or name."),
    "service": _path_param("service_id", "Service id.", {
        "type": "integer", "minimum": 0, "maximum": services.MAX_ID}),
}


def _query_params(schema):
    """Query parameters from an object schema the view validates the query with."""
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()]


# -- operations ---------------------------------------------------------------------

def _json(schema):
    return {"application/json": {"schema": schema}}


def _body(schema, example=None):
    media = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def _op(op_id, summary, ok, errors, ok_schema=None, params=(), body=None, public=False,
        headers=None, content=None, admin=False):
    """One operation: ``ok`` its success status, ``errors`` every error
    status it can answer besides 401 and 503 (implied unless ``public``: the
    token is looked up in the database)."""
    success = {"description": summary, "headers": dict(_REQUEST_ID, **{
        h: {"$ref": "#/components/headers/" + h} for h in (headers or ())})}
    if content is not None:
        success["content"] = content
    elif ok_schema is not None:
        success["content"] = _json(ok_schema)
    responses = {str(ok): success}
    codes = set(errors) | ({403} if admin else set()) | (set() if public else {401, 503})
    for code in sorted(codes):
        responses[str(code)] = {"$ref": "#/components/responses/%d" % code}
    op = {"operationId": op_id, "summary": summary + (" (admin only)" if admin else ""),
          "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    return op


def _healthcheck_op():
    text = {"text/plain": {"schema": {"type": "string"}}}
    op = _op("healthcheck", "For load balancers: OK while this API reaches the database "
             "and the message broker (HEAD too)", 200, (), public=True, content=text)
    op["responses"]["503"] = {"description": "What this API cannot reach, e.g. "
                              "\"database unreachable (OperationalError)\", or \"disabled "
                              "by file\" ([api] healthcheck_disable_file)",
                              "headers": _REQUEST_ID, "content": text}
    return op


_IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "pattern": idempotency.KEY_PATTERN},
    "description": "Makes a retry safe: the same key from the same project within [api] "
                   "idempotency_key_seconds creates one VM; the repeats answer 202 with that "
                   "VM as it is now (header X-Idempotent-Replayed: true), or 409 if the key "
                   "came with another body or the VM was deleted since."}
_JSON_BODY_ERRORS = (400, 413, 415)
_VM = {"$ref": "#/components/parameters/vm"}


def _paths():
    vm_wrap = _wrap("vm", _ref("VM"))
    # "vms_links" only while more VMs follow the page (as Nova's servers_links).
    vms_list = _obj({"vms": {"type": "array", "items": _ref("VM")},
                     "vms_links": {"type": "array", "items": _ref("Link")}}, required=["vms"])
    return {
        "/": {"get": _op("listVersions", "API versions", 200, (), public=True,
                         ok_schema=_obj({"versions": {"type": "array",
                                                      "items": _ref("Version")}}))},
        "/v1": {"get": _op("showVersion", "Version v1", 200, (), public=True,
                           ok_schema=_wrap("version", _ref("Version")))},
        "/v1/openapi.json": {"get": _op(
            "openapi", "This API description (OpenAPI 3.1)", 200, (), public=True,
            ok_schema={"type": "object", "required": ["openapi", "paths"]})},
        "/metrics": {"get": _op(
            "metrics", "Prometheus metrics of this API process (text format)", 200, (),
            public=True, content={"text/plain": {"schema": {"type": "string"}}})},
        "/healthcheck": {"get": _healthcheck_op()},
        "/v1/vms": {
            "post": _op("createVM", "Create a VM: stored in BUILD, its build cast to the conductor",
                        202, _JSON_BODY_ERRORS + (403, 404, 409, 503), ok_schema=vm_wrap,
                        headers=("Location",), params=(_IDEMPOTENCY_KEY,), body=_body(
                            vms.CREATE_SCHEMA,
                            {"name": "web1", "image": "blank", "flavor": "m1.tiny"})),
            "get": _op("listVMs", "The caller's project's VMs, oldest first, a page at a "
                                  "time", 200, (400,), params=_query_params(vms.LIST_PARAMS),
                       ok_schema=vms_list),
        },
        "/v1/vms/{ref}": {
            "parameters": [_VM],
            "get": _op("showVM", "One VM", 200, (400, 404), ok_schema=vm_wrap),
            "put": _op("renameVM", "Rename a VM (409 if its name scope has a VM of that name)",
                       200, _JSON_BODY_ERRORS + (404, 409), ok_schema=vm_wrap,
                       body=_body(vms.UPDATE_SCHEMA, {"name": "web2"})),
            "delete": _op("deleteVM", "Delete a VM (asynchronous once it is on a host)", 202,
                          (400, 404, 503)),
        },
        "/v1/vms/{ref}/action": {
            "parameters": [_VM],
            "post": _op("actVM", "A power action: stop, start, reboot, pause, unpause, "
                                 "suspend, resume; a resize (resize, confirm_resize, "
                                 "revert_resize) or snapshot; or (admin only, else 403) "
                                 "migrate, evacuate, live_migrate, live_migrate_abort, "
                                 "answered with the migration's id",
                        202, _JSON_BODY_ERRORS + (403, 404, 409, 503),
                        body=_body(vms.ACTION_SCHEMA, {"reboot": {"type": "soft"}})),
        },
        "/v1/vms/{ref}/migrations/{migration_id}": {
            "parameters": [_VM, {"name": "migration_id", "in": "path", "required": True,
                                 "schema": {"type": "string", "maxLength": 36}}],
            "delete": _op("abortLiveMigration", "Abort the VM's live migration while its "
                                                "copy runs (409 before or after that)", 202,
                          (400, 404, 409, 503), admin=True),
        },
        "/v1/vms/{ref}/console": {
            "parameters": [_VM],
            "get": _op("showConsole", "Tail of the VM's serial console", 200,
                       (400, 404, 409, 503), params=_query_params(vms.CONSOLE_PARAMS),
                       ok_schema=_obj({"output": _STR})),
        },
        "/v1/vms/{ref}/migrations": {
            "parameters": [_VM],
            "get": _op("listVMMigrations", "The VM's moves between hosts, newest first", 200,
                       (400, 404), ok_schema=_list("migrations", "Migration")),
        },
        "/v1/migrations": {
            "get": _op("listMigrations", "Moves of VMs between hosts, newest first", 200,
                       (400,), admin=True, params=_query_params(migrations.LIST_PARAMS),
                       ok_schema=_list("migrations", "Migration")),
        },
        "/v1/vms/{ref}/actions": {
            "parameters": [_VM],
            "get": _op("listActions", "The VM's actions (also after it was deleted, by id)",
                       200, (400, 404), ok_schema=_list("actions", "InstanceAction")),
        },
        "/v1/vms/{ref}/actions/{request_id}": {
            "parameters": [_VM, {"$ref": "#/components/parameters/request_id"}],
            "get": _op("showAction", "One action with its timed events", 200, (400, 404),
                       ok_schema=_wrap("action", _ref("InstanceActionDetail"))),
        },
        "/v1/flavors": {"get": _op("listFlavors", "Flavors", 200, (),
                                   ok_schema=_list("flavors", "Flavor"))},
        "/v1/flavors/{ref}": {
            "parameters": [{"$ref": "#/components/parameters/flavor"}],
            "get": _op("showFlavor", "One flavor", 200, (400, 404),
                       ok_schema=_wrap("flavor", _ref("Flavor"))),
        },
        "/v1/images": {
            "get": _op("listImages", "Images", 200, (), ok_schema=_list("images", "Image")),
            "post": _op("uploadImage", "Upload a qcow2 image (the body is the file)", 201,
                        (400, 409, 413, 415), admin=True, headers=("Location",),
                        params=_query_params(images.UPLOAD_PARAMS),
                        ok_schema=_wrap("image", _ref("Image")),
                        body={"required": True, "content": {"application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}}),
        },
        "/v1/images/{ref}": {
            "parameters": [{"$ref": "#/components/parameters/image"}],
            "get": _op("showImage", "One image (409: a name several images carry)", 200,
                       (400, 404, 409), ok_schema=_wrap("image", _ref("Image"))),
        },
        "/v1/images/{ref}/file": {
            "parameters": [{"$ref": "#/components/parameters/image"}],
            "get": _op("downloadImage", "The image file (compute hosts fill their cache "
                                        "with it; 409: an ambiguous name, or no data "
                                        "yet)", 200, (400, 404, 409),
                       headers=("X-Image-Sha256",),
                       content={"application/octet-stream": {
                           "schema": {"type": "string", "format": "binary"}}}),
        },
        "/v1/services": {"get": _op("listServices", "Daemons and their heartbeats", 200, (),
                                    admin=True, ok_schema=_list("services", "Service"))},
        "/v1/services/{service_id}": {
            "parameters": [{"$ref": "#/components/parameters/service"}],
            "put": _op("updateService", "Disable a host for new VMs, or enable it", 200,
                       _JSON_BODY_ERRORS + (404, 409), admin=True,
                       ok_schema=_wrap("service", _ref("Service")),
                       body=_body(services.UPDATE_SCHEMA,
                                  {"status": "disabled", "disabled_reason": "maintenance"})),
        },
        "/v1/hosts": {"get": _op("listHosts", "Compute hosts: resources and VMs", 200, (),
                                 admin=True, ok_schema=_list("hosts", "Host"))},
        "/v1/hosts/{name}": {
            "parameters": [{"$ref": "#/components/parameters/host"}],
            "get": _op("showHost", "One compute host", 200, (400, 404), admin=True,
                       ok_schema=_wrap("host", _ref("Host"))),
        },
        "/v1/server-groups": {
            "post": _op("createServerGroup", "Create a server group", 201, _JSON_BODY_ERRORS,
                        headers=("Location",), ok_schema=_wrap("server_group",
                                                               _ref("ServerGroup")),
                        body=_body(server_groups.CREATE_SCHEMA,
                                   {"name": "web", "policy": "anti-affinity"})),
            "get": _op("listServerGroups", "The caller's project's server groups", 200, (),
                       ok_schema=_list("server_groups", "ServerGroup")),
        },
        "/v1/server-groups/{ref}": {
            "parameters": [{"$ref": "#/components/parameters/group"}],
            "get": _op("showServerGroup", "One server group with its members", 200, (400, 404),
                       ok_schema=_wrap("server_group", _ref("ServerGroup"))),
            "delete": _op("deleteServerGroup", "Delete a server group", 204, (400, 404)),
        },
        "/v1/quotas/{project_id}": {
            "parameters": [{"$ref": "#/components/parameters/project"}],
            "get": _op("showQuota", "A project's limits (-1: unlimited) and usage; members "
                                    "see their own project's only", 200, (400, 403, 404, 409),
                       ok_schema=_wrap("quota", _ref("Quota"))),
            "put": _op("updateQuota", "Set some of a project's limits (-1: unlimited)", 200,
                       _JSON_BODY_ERRORS + (404, 409), admin=True,
                       ok_schema=_wrap("quota", _ref("Quota")),
                       body=_body(quotas.UPDATE_SCHEMA,
                                  {"quota": {"instances": 10, "cores": 20, "ram": 51200}})),
        },
    }


@functools.lru_cache(maxsize=1)
def _document():
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "mininova",
            "version": versions.VERSION["id"],
            "description": "A small, real clone of OpenStack Nova. Every call but version "
                           "discovery and this document needs an %s header (roles member "
                           "and admin). Errors are {\"error\": {\"code\", \"message\"}}. A "
                           "method a path does not support is answered 405." % TOKEN_HEADER,
        },
        "servers": [{"url": "/"}],
        "security": [{"token": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header",
                                          "name": TOKEN_HEADER}},
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "parameters": PARAMETERS,
            "headers": HEADERS,
        },
    }


def document():
    """The OpenAPI document, as a fresh dict (callers may change it)."""
    return copy.deepcopy(_document())
