"""A representative subset of the hostile-input cases of
tests/unit/test_injection.py, sent over real HTTP to the real server (waitress
in front of the API, on the real stack) instead of Flask's in-process client:
what a client's bytes become on the wire (percent-encoded NULs and newlines in
paths, lone surrogates, huge unicode, a 10 MB body) must still be a clear 4xx,
never a 500, and create nothing. The cases are the unit module's own functions,
collected here again with an ``api`` fixture that speaks HTTP."""
import pytest
import requests

from tests.unit import test_injection as cases

pytestmark = pytest.mark.real_services("rabbitmq", "postgresql", "libvirt", "http")


class HTTPResponse:
    """The parts of a Flask test response the cases read."""

    def __init__(self, r):
        self.status_code = r.status_code
        self.headers = r.headers
        self.data = r.content
        self.mimetype = r.headers.get("Content-Type", "").split(";")[0].strip()

    def get_json(self):
        import json
        return json.loads(self.data)

    def get_data(self, as_text=False):
        return self.data.decode("utf-8", "replace") if as_text else self.data


class HTTPClient:
    """Flask's test-client calls (get/post/put/delete with json=, data=,
    content_type=) as real requests to ``url``."""

    def __init__(self, url, token):
        self.url = url
        self.session = requests.Session()
        self.session.headers["X-Auth-Token"] = token

    def open(self, method, path, json=None, data=None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        return HTTPResponse(self.session.request(method, self.url + path, json=json, data=data,
                                                 headers=headers, timeout=60))

    def get(self, path, **kw):
        return self.open("GET", path, **kw)

    def post(self, path, **kw):
        return self.open("POST", path, **kw)

    def put(self, path, **kw):
        return self.open("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.open("DELETE", path, **kw)


@pytest.fixture
def api(stack):
    client = HTTPClient(stack.url, stack.http.headers["X-Auth-Token"])
    before = {vm["id"] for vm in stack.get("/v1/vms").json()["vms"]}
    yield client
    client.session.close()
    after = {vm["id"] for vm in stack.get("/v1/vms").json()["vms"]}
    assert after == before, "a hostile request created a VM"


test_hostile_vm_names_are_rejected = cases.test_hostile_vm_names_are_rejected
test_hostile_references_are_rejected = cases.test_hostile_references_are_rejected
test_printable_references_are_looked_up_and_not_found = \
    cases.test_printable_references_are_looked_up_and_not_found
test_lone_surrogates_in_json_are_rejected = cases.test_lone_surrogates_in_json_are_rejected
test_hostile_group_names_are_rejected = cases.test_hostile_group_names_are_rejected
test_nul_in_path_parameters = cases.test_nul_in_path_parameters
test_hostile_path_parameters_are_not_found = cases.test_hostile_path_parameters_are_not_found
test_hostile_service_ids = cases.test_hostile_service_ids
test_ten_megabyte_body = cases.test_ten_megabyte_body
