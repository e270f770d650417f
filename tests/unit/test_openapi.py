"""The OpenAPI document: valid OpenAPI 3.1, the same routes as the app (no
more, no fewer), the blueprints' own schemas, and real responses that match it."""
import re

import jsonschema
import pytest

from common.db import api as db_api
from common.db import vm_migrations
from nova_api import openapi, validation
from nova_api.app import create_app
from nova_api.blueprints import images, quotas, server_groups, services, vms
from nova_api.openstack import surfaces
from tests.conftest import Recorder
from tests.unit.conftest import token_for

METHODS = {"get", "put", "post", "delete", "patch"}
_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


@pytest.fixture
def app(conf, db, recorder):
    return create_app(conf, db, recorder(), recorder())


class Compute(Recorder):
    def get_console_output(self, ctxt, host, instance_id, lines):
        return "login: \n"


@pytest.fixture
def doc():
    return openapi.document()


def flask_routes(app):
    """{(openapi path, method)} of every route of the native API the app
    answers (the OpenStack surfaces are described by OpenStack's own API
    references, not in this document)."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or surfaces.of(rule.rule) is not None:
            continue
        path = _PARAM.sub(r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def documented(doc):
    return {(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS}


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def test_document_is_valid_openapi(doc):
    try:
        from openapi_spec_validator import validate
    except ImportError:  # the structural checks below still run
        validate = None
    if validate is not None:
        validate(doc)
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    op_ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(op_ids) == len(set(op_ids)), "operationIds must be unique"
    for path, method, op in operations(doc):
        assert op["responses"], (path, method)
        names = {p.get("name") or p["$ref"].rsplit("/", 1)[1]
                 for p in doc["paths"][path].get("parameters", []) + op.get("parameters", [])}
        for placeholder in re.findall(r"{([^}]+)}", path):
            params = [doc["components"]["parameters"][n]["name"]
                      if n in doc["components"]["parameters"] else n for n in names]
            assert placeholder in params, (path, placeholder)


def test_every_route_is_documented_and_nothing_else(app, doc):
    routes, described = flask_routes(app), documented(doc)
    assert routes - described == set(), "routes missing from the OpenAPI document"
    assert described - routes == set(), "documented operations the app does not have"


def test_served_without_a_token(app, doc):
    r = app.test_client().get("/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.get_json() == doc
    assert r.headers["X-Request-Id"].startswith("req-")


def test_security_is_global_except_discovery(doc):
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "apiKey", "in": "header", "name": "X-Auth-Token"}
    assert doc["security"] == [{"token": []}]
    public = {(p, m) for p, m, op in operations(doc) if op.get("security") == []}
    assert public == {("/", "get"), ("/v1", "get"), ("/v1/openapi.json", "get"),
                      ("/metrics", "get"), ("/healthcheck", "get")}
    for path, method, op in operations(doc):
        assert ("401" in op["responses"]) == ((path, method) not in public), (path, method)
        # The database holding tokens is down; /healthcheck's 503 says what is.
        assert ("503" in op["responses"]) == ((path, method) not in public
                                              or path == "/healthcheck"), (path, method)


def test_admin_operations_answer_403(doc):
    admin = {("/v1/services", "get"), ("/v1/services/{service_id}", "put"),
             ("/v1/hosts", "get"), ("/v1/hosts/{name}", "get"), ("/v1/images", "post"),
             ("/v1/quotas/{project_id}", "put")}
    for path, method in admin:
        assert "403" in doc["paths"][path][method]["responses"], (path, method)


def test_request_schemas_are_the_blueprints_own(doc):
    def body(path, method, media="application/json"):
        return doc["paths"][path][method]["requestBody"]["content"][media]["schema"]
    assert body("/v1/vms", "post") == vms.CREATE_SCHEMA
    assert body("/v1/vms/{ref}/action", "post") == vms.ACTION_SCHEMA
    assert body("/v1/server-groups", "post") == server_groups.CREATE_SCHEMA
    assert body("/v1/services/{service_id}", "put") == services.UPDATE_SCHEMA
    assert body("/v1/quotas/{project_id}", "put") == quotas.UPDATE_SCHEMA
    assert body("/v1/images", "post", "application/octet-stream")["format"] == "binary"
    upload = {p["name"]: p for p in doc["paths"]["/v1/images"]["post"]["parameters"]}
    assert {n: p["schema"] for n, p in upload.items()} == images.UPLOAD_PARAMS["properties"]
    assert upload["name"]["required"] and not upload["min_ram"]["required"]
    console, = doc["paths"]["/v1/vms/{ref}/console"]["get"]["parameters"]
    assert (console["name"], console["in"]) == ("lines", "query")
    assert console["schema"] == vms.CONSOLE_PARAMS["properties"]["lines"]
    # The examples are valid by the very schemas the API validates with.
    for path, method, op in operations(doc):
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if media and "example" in media:
            validation.validate(media["example"], media["schema"])


def test_error_responses(doc):
    error = doc["components"]["schemas"]["Error"]
    jsonschema.validate({"error": {"code": 404, "message": "x"}}, error)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"message": "x"}, error)
    for path, method, op in operations(doc):
        codes = set(op["responses"])
        success = [c for c in codes if c.startswith("2")]
        assert len(success) == 1, (path, method)
        for code in codes - set(success):
            if (path, code) == ("/healthcheck", "503"):  # text for a load balancer
                assert "text/plain" in op["responses"][code]["content"]
                continue
            assert op["responses"][code] == {"$ref": "#/components/responses/" + code}
        if "application/json" in op.get("requestBody", {}).get("content", {}):
            assert {"400", "413", "415"} <= codes, (path, method)
        if "{" in path:
            assert {"400", "404"} <= codes, (path, method)
    for code, response in doc["components"]["responses"].items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}


# -- real responses against the document -------------------------------------------

class Conformance:
    """Checks each response against the document: status documented, body valid."""

    def __init__(self, client, doc):
        self.client, self.doc = client, doc
        self.seen = set()

    def _operation(self, method, url):
        path = url.split("?", 1)[0]
        for template, item in self.doc["paths"].items():
            regex = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(regex, path) and method in item:
                return template, item[method]
        raise AssertionError("%s %s is not documented" % (method, url))

    def __call__(self, method, url, expect, **kw):
        r = getattr(self.client, method)(url, **kw)
        assert r.status_code == expect, (method, url, r.get_data(as_text=True))
        template, op = self._operation(method, url)
        response = op["responses"].get(str(r.status_code))
        assert response is not None, "%s %s answered undocumented %d" % (
            method, template, r.status_code)
        if "$ref" in response:
            response = self.doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        for name, header in response.get("headers", {}).items():
            header = self.doc["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
            if header.get("required"):
                assert name in r.headers, (method, template, name)
        content = response.get("content")
        if content is None:
            assert r.get_data() == b"", (method, template)
        elif "application/json" in content:
            assert r.mimetype == "application/json"
            schema = dict(content["application/json"]["schema"],
                          components=self.doc["components"])
            jsonschema.Draft202012Validator(
                schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            ).validate(r.get_json())
        else:
            assert r.mimetype in content, (method, template, r.mimetype)
        self.seen.add((template, method, str(r.status_code)))
        return r


def test_real_responses_match_the_document(conf, db, image, doc):
    from common import context
    from nova_conductor.manager import ConductorManager

    app = create_app(conf, db, Recorder(), Compute())
    client = app.test_client()
    admin = {"X-Auth-Token": token_for(db, "default", "admin")}
    member = {"X-Auth-Token": token_for(db, "default", "member")}
    client.environ_base["HTTP_X_AUTH_TOKEN"] = admin["X-Auth-Token"]
    call = Conformance(client, doc)
    ConductorManager(db).service_heartbeat(context.get_admin_context(), "h1", "mininova-compute",
                                           {"vcpus": 2, "memory_mb": 1000, "local_gb": 10})

    call("get", "/", 200)
    call("get", "/v1", 200)
    call("get", "/v1/openapi.json", 200)
    call("get", "/metrics", 200, headers={"X-Auth-Token": ""})  # Prometheus sends none
    call("get", "/healthcheck", 200, headers={"X-Auth-Token": ""})
    call("get", "/v1/vms", 401, headers={"X-Auth-Token": "nope"})
    group = call("post", "/v1/server-groups", 201,
                 json={"name": "g", "policy": "affinity"}).get_json()["server_group"]
    call("get", "/v1/server-groups", 200)
    vm = call("post", "/v1/vms", 202, json={"name": "web1", "image": "blank",
                                            "flavor": "m1.tiny", "group": group["id"]}
              ).get_json()["vm"]
    call("post", "/v1/vms", 409, json={"name": "web1", "image": "blank", "flavor": "m1.tiny"})
    call("post", "/v1/vms", 404, json={"name": "web2", "image": "nope", "flavor": "m1.tiny"})
    call("post", "/v1/vms", 400, json={"name": "web 2", "image": "blank", "flavor": "m1.tiny"})
    call("post", "/v1/vms", 415, data="x", content_type="text/plain")
    call("post", "/v1/vms", 413, data=b"{" + b" " * (2 << 20) + b"}",
         content_type="application/json")
    call("get", "/v1/vms", 200)
    call("get", "/v1/vms/web1", 200)
    call("post", "/v1/vms", 202, json={"name": "web0", "image": "blank", "flavor": "m1.tiny"})
    call("put", "/v1/vms/web0", 200, json={"name": "web9"})
    call("put", "/v1/vms/web9", 409, json={"name": "web1"})
    call("put", "/v1/vms/web9", 400, json={"name": ""})
    call("delete", "/v1/vms/web9", 202)
    call("get", "/v1/vms/nope", 404)
    call("get", "/v1/vms/a%00b", 400)
    call("get", "/v1/vms/web1/console", 409)  # not on a host yet
    call("get", "/v1/vms/web1/console?lines=0", 400)
    call("post", "/v1/vms/web1/action", 409, json={"stop": {}})
    call("post", "/v1/vms/web1/action", 400, json={"stop": {}, "start": {}})
    call("get", "/v1/vms/web1/actions", 200)
    request_id = client.get("/v1/vms/web1/actions").get_json()["actions"][0]["request_id"]
    call("get", "/v1/vms/web1/actions/" + request_id, 200)
    call("get", "/v1/vms/web1/actions/req-nope", 404)
    call("get", "/v1/vms/web1/migrations", 200)
    call("get", "/v1/vms/web9/migrations", 404)
    call("get", "/v1/migrations?type=resize&host=h1", 200)
    call("get", "/v1/migrations?type=sideways", 400)
    call("get", "/v1/migrations", 403, headers=member)
    call("get", "/v1/server-groups/" + group["id"], 200)
    with db.transaction() as s:  # on a host: the console is asked over RPC
        db_api.instance_update_if(s, vm["id"], {"host": "h1", "vm_state": "active",
                                                   "task_state": None})
    call("post", "/v1/vms/web1/action", 202, json={"reboot": {"type": "hard"}})
    call("get", "/v1/vms/%s/console?lines=5" % vm["id"], 200)
    with db.transaction() as s:  # a live migration whose copy runs: abortable
        migration = vm_migrations.create(s, vm["id"], "live-migration", "h1",
                                         dest_host="h2", status="running")
    call("delete", "/v1/vms/web1/migrations/" + migration, 403, headers=member)
    call("delete", "/v1/vms/web1/migrations/nope", 404)
    call("delete", "/v1/vms/web1/migrations/" + migration, 202)
    with db.transaction() as s:
        vm_migrations.update_if(s, migration, {"status": "cancelled"})
    call("delete", "/v1/vms/web1/migrations/" + migration, 404)  # ended
    call("delete", "/v1/vms/web1", 202)
    call("delete", "/v1/server-groups/" + group["id"], 204)
    call("get", "/v1/server-groups/" + group["id"], 404)
    call("get", "/v1/flavors", 200)
    call("get", "/v1/flavors/m1.tiny", 200)
    call("get", "/v1/flavors/nope", 404)
    call("get", "/v1/images", 200)
    call("get", "/v1/images/blank", 200)
    call("get", "/v1/images/blank/file", 200)
    call("get", "/v1/images/nope/file", 404)
    call("post", "/v1/images?name=up&min_ram=1", 201, data=b"QFI\xfb" + b"\0" * 100,
         content_type="application/octet-stream")
    call("post", "/v1/images?name=up2&min_ram=%C2%B2", 400, data=b"QFI\xfb",
         content_type="application/octet-stream")
    call("post", "/v1/images?name=up", 403, data=b"QFI\xfb",
         content_type="application/octet-stream", headers=member)
    svc = call("get", "/v1/services", 200).get_json()["services"][0]
    call("get", "/v1/services", 403, headers=member)
    call("put", "/v1/services/%d" % svc["id"], 200, json={"status": "disabled",
                                                          "disabled_reason": "maintenance"})
    call("put", "/v1/services/%d" % svc["id"], 400, json={"status": "off"})
    call("put", "/v1/services/99999999999999999999", 404, json={"status": "enabled"})
    call("put", "/v1/services/999", 404, json={"status": "enabled"})
    call("get", "/v1/hosts", 200)
    call("get", "/v1/hosts/h1", 200)
    call("get", "/v1/hosts/nope", 404)
    call("get", "/v1/quotas/default", 200)
    call("get", "/v1/quotas/default", 200, headers=member)
    call("get", "/v1/quotas/default", 403, headers={"X-Auth-Token": token_for(db, "other")})
    call("put", "/v1/quotas/default", 200, json={"quota": {"instances": 1}})
    call("put", "/v1/quotas/default", 400, json={"quota": {"instances": -2}})
    call("put", "/v1/quotas/nope", 404, json={"quota": {"instances": 1}})
    call("post", "/v1/vms", 403, json={"name": "web3", "image": "blank", "flavor": "m1.tiny"},
         headers=member)  # over quota: web1 is still DELETING on h1
    # Every operation was exercised with its success status at least once.
    exercised = {(t, m) for t, m, code in call.seen if code.startswith("2")}
    assert documented(doc) - exercised == set()
