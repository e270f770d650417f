"""Hostile input: markup, quotes, path traversal, NUL, CR/LF, huge unicode,
huge or deeply nested bodies, wrong content types. Every case is a 4xx with
a clear message (never a 500), and nothing reaches the domain XML unescaped,
a path outside its directory, or a log line unescaped."""
import io
import json
import logging
import os
import uuid
import xml.etree.ElementTree as ET

import pytest

from common import exception, log
from nova_api import imagestore
from nova_api.app import create_app
from nova_compute.imagecache import ImageCache
from nova_compute.virt import driver as virt_driver
from nova_compute.virt.libvirt import config as vconfig
from tests.conftest import Recorder
from tests.unit.conftest import register_blank_image, token_for

UUID = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
HOSTILE = [
    "<script>alert(1)</script>",
    "a&b;&amp;&#0;",
    "\"quoted\" 'single'",
    "../../etc/passwd",
    "..",
    "a/b",
    "nul\x00byte",
    "line\nbreak",
    "cr\r\nlf",
    "trailing-newline\n",
    "tab\there",
    "]]><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>&e;",
    "\u202eRTL-override",
    "\U0001F600" * 300,
    "名" * 5000,
    "x" * 100_000,
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One API (and database) for the whole module: the cases here only read,
    or write what they then look for by name, and a migrated database per case
    would cost more than all the cases."""
    from oslo_config import cfg
    from common import config
    from common.db import migration
    from common.db.session import Database
    tmp = tmp_path_factory.mktemp("injection")
    conf = cfg.ConfigOpts()
    config.register_opts(conf)
    conf([], project="mininova", default_config_files=[])
    conf.set_override("state_path", str(tmp))
    conf.set_override("host", "unit-host")
    url = config.database_url(conf)
    migration.db_sync(url)
    db = Database(url)
    register_blank_image(conf, db, tmp)
    app = create_app(conf, db, Recorder(), Recorder())
    yield conf, db, app, token_for(db, "default", "admin")
    db.dispose()


@pytest.fixture
def api(env):
    client = env[2].test_client()
    client.environ_base["HTTP_X_AUTH_TOKEN"] = env[3]
    return client


@pytest.fixture
def store(env):
    """The image store's file names."""
    return lambda: set(os.listdir(imagestore.store_path(env[0])))


def error(r, code):
    """The error message of ``r``, after checking it is a JSON ``code`` error."""
    assert r.status_code == code, (r.status_code, r.get_data(as_text=True)[:500])
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]
    return body["error"]["message"]


def vm_body(**kw):
    return dict({"name": "web1", "image": "blank", "flavor": "m1.tiny"}, **kw)


def raw_json(api, url, text, method="post"):
    return getattr(api, method)(url, data=text.encode("utf-8", "surrogatepass"),
                                content_type="application/json")


# -- names and references in bodies --------------------------------------------------

@pytest.mark.parametrize("name", HOSTILE + ["", " ", "web 1", "a" * 64, "é"])
def test_hostile_vm_names_are_rejected(api, name):
    message = error(api.post("/v1/vms", json=vm_body(name=name)), 400)
    assert "'name'" in message
    assert len(message) < 300, "the message must not echo the value"
    assert name not in [vm["name"] for vm in api.get("/v1/vms").get_json()["vms"]]


@pytest.mark.parametrize("field", ["image", "flavor", "group"])
@pytest.mark.parametrize("ref", ["nul\x00byte", "line\nbreak", "cr\r", "\x7f", "x" * 256,
                                 "名" * 256, ""])
def test_hostile_references_are_rejected(api, field, ref):
    message = error(api.post("/v1/vms", json=vm_body(**{field: ref})), 400)
    assert "'%s'" % field in message


@pytest.mark.parametrize("ref", ["<script>", "a&b", "'\"", "../../etc/passwd", "名" * 255,
                                 "\U0001F600"])
def test_printable_references_are_looked_up_and_not_found(api, ref):
    message = error(api.post("/v1/vms", json=vm_body(image=ref)), 404)
    assert message == "Image %s could not be found." % ref


def test_lone_surrogates_in_json_are_rejected(api):
    for field in ("image", "flavor", "name"):
        r = raw_json(api, "/v1/vms", json.dumps(vm_body(**{field: "a\ud800b"})))
        assert "'%s'" % field in error(r, 400)
    r = raw_json(api, "/v1/server-groups", '{"name": "\\udfff", "policy": "affinity"}')
    assert "'name'" in error(r, 400)


def test_hostile_free_text_is_rejected_or_stored_verbatim(api, env):
    db = env[1]
    from common import context
    from nova_conductor.manager import ConductorManager
    ConductorManager(db).service_heartbeat(context.get_admin_context(), "h1", "mininova-compute",
                                           {"vcpus": 2, "memory_mb": 1000, "local_gb": 10})
    svc_id = api.get("/v1/services").get_json()["services"][0]["id"]
    url = "/v1/services/%d" % svc_id
    for reason in ("nul\x00byte", "\ud800", "x" * 256):
        r = raw_json(api, url, json.dumps({"status": "disabled", "disabled_reason": reason}),
                     method="put")
        assert "'disabled_reason'" in error(r, 400)
    reason = "<b>&'\"\n" + "名" * 100
    r = api.put(url, json={"status": "disabled", "disabled_reason": reason})
    assert r.status_code == 200 and r.get_json()["service"]["disabled_reason"] == reason


@pytest.mark.parametrize("name", ["../g", "g\n", "g\x00", "<g>", "x" * 256])
def test_hostile_group_names_are_rejected(api, name):
    assert "'name'" in error(api.post("/v1/server-groups",
                                      json={"name": name, "policy": "affinity"}), 400)


@pytest.mark.parametrize("body,field", [
    ({"stop": {}, "start": {}}, "(body)"),
    ({"<stop>": {}}, "(body)"),
    ({"reboot": {"type": "hard\n"}}, "reboot.type"),
    ({"reboot": {"type": "<hard>"}}, "reboot.type"),
    ({"reboot": {"../type": "hard"}}, "reboot"),
    ({"stop": "now"}, "stop"),
    ([], "(body)"),
])
def test_hostile_action_bodies(api, body, field):
    api.post("/v1/vms", json=vm_body())
    assert "'%s'" % field in error(api.post("/v1/vms/web1/action", json=body), 400)


@pytest.mark.parametrize("value", [-2, 2 ** 31, 1.5, "10", None, True, [1], {"a": 1}])
def test_hostile_quota_values(api, value):
    r = api.put("/v1/quotas/default", json={"quota": {"instances": value}})
    assert "'quota.instances'" in error(r, 400)
    assert "'quota'" in error(api.put("/v1/quotas/default", json={"quota": {"<x>": 1}}), 400)


@pytest.mark.parametrize("text", ['{"quota": {"instances": NaN}}',
                                  '{"quota": {"instances": Infinity}}',
                                  '{"quota": {"instances": 1e999}}',
                                  '{"quota": {"instances": %s}}' % ("9" * 5000)])
def test_non_finite_and_huge_numbers(api, text):
    message = error(raw_json(api, "/v1/quotas/default", text, method="put"), 400)
    assert "quota.instances" in message or "malformed JSON" in message


# -- path and query parameters ---------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/v1/vms/a%00b", "/v1/vms/a%00b/action", "/v1/vms/a%00b/console", "/v1/vms/a%00b/actions",
    "/v1/vms/web1/actions/r%00", "/v1/flavors/%00", "/v1/images/%00", "/v1/images/%00/file",
    "/v1/server-groups/%00", "/v1/hosts/%00", "/v1/quotas/%00",
])
def test_nul_in_path_parameters(api, url):
    method = "post" if url.endswith("/action") else "get"
    kwargs = {"json": {"stop": {}}} if method == "post" else {}
    message = error(getattr(api, method)(url, **kwargs), 400)
    assert "NUL" in message and ("'ref'" in message or "'name'" in message
                                 or "'request_id'" in message or "'project_id'" in message)


@pytest.mark.parametrize("ref", ["%3Cscript%3E", "..%2F..%2Fetc%2Fpasswd", "%2e%2e",
                                 "a%0Ab", "%E5%90%8D" * 2000, "%FF%FE", "'%22"])
@pytest.mark.parametrize("prefix", ["/v1/vms/", "/v1/images/", "/v1/flavors/",
                                    "/v1/server-groups/", "/v1/hosts/", "/v1/quotas/"])
def test_hostile_path_parameters_are_not_found(api, prefix, ref):
    r = api.get(prefix + ref)
    assert r.status_code in (404, 400)
    error(r, r.status_code)


@pytest.mark.parametrize("service_id", ["99999999999999999999", "2147483648", "-1", "1e3",
                                        "%00", "0x10"])
def test_hostile_service_ids(api, service_id):
    error(api.put("/v1/services/" + service_id, json={"status": "enabled"}), 404)


@pytest.mark.parametrize("lines", ["0", "10001", "-1", "abc", "%C2%B2", "%D9%A3", "9" * 5000,
                                   "1.5", "%00", "1%0A", ""])
def test_hostile_console_lines(api, lines):
    api.post("/v1/vms", json=vm_body())
    message = error(api.get("/v1/vms/web1/console?lines=" + lines), 400)
    assert "'lines'" in message


@pytest.mark.parametrize("query,field", [
    ("name=%3Cx%3E", "name"), ("name=a%00", "name"), ("name=a%0A", "name"),
    ("name=..%2Fx", "name"), ("name=" + "x" * 256, "name"),
    ("name=ok&min_ram=%C2%B2", "min_ram"), ("name=ok&min_ram=" + "9" * 50, "min_ram"),
    ("name=ok&min_ram=-1", "min_ram"), ("name=ok&min_disk=1%0A", "min_disk"),
    ("name=ok&min_disk=99999999", "min_disk"), ("min_ram=1", "name"),
])
def test_hostile_upload_parameters(api, store, query, field):
    before = store()
    r = api.post("/v1/images?" + query, data=b"QFI\xfb" + b"\0" * 64,
                 content_type="application/octet-stream")
    assert "'%s'" % field in error(r, 400)
    assert store() == before


# -- bodies: size, nesting, encoding, content type -----------------------------------

TEN_MB = b"{" + b" " * (10 * 1024 * 1024) + b"}"


def test_ten_megabyte_body(api):
    assert "too large" in error(api.post("/v1/vms", data=TEN_MB,
                                         content_type="application/json"), 413)


def test_ten_megabyte_body_without_content_length(api):
    """A chunked body has no Content-Length: it is read only up to the limit."""
    stream = io.BytesIO(TEN_MB)
    r = api.post("/v1/vms", input_stream=stream, content_type="application/json",
                 environ_overrides={"wsgi.input_terminated": True})
    assert "too large" in error(r, 413)
    assert stream.tell() <= 1024 * 1024 + 1


def test_ten_megabyte_image_upload_is_streamed(api):
    data = b"QFI\xfb" + os.urandom(10 * 1024 * 1024)
    r = api.post("/v1/images?name=big", data=data, content_type="application/octet-stream")
    assert r.status_code == 201 and r.get_json()["image"]["size"] == len(data)


def test_too_large_image_upload(api, env, store):
    env[0].set_override("max_image_bytes", 1024, group="api")
    try:
        before = store()
        r = api.post("/v1/images?name=big2", data=b"QFI\xfb" + b"\0" * 4096,
                     content_type="application/octet-stream")
        assert "too large" in error(r, 413)
        assert store() == before
    finally:
        env[0].clear_override("max_image_bytes", group="api")


@pytest.mark.parametrize("data", [b"[" * 200_000, b'{"a":' * 100_000])
def test_deeply_nested_json(api, data):
    message = error(api.post("/v1/vms", data=data, content_type="application/json"), 400)
    assert "malformed JSON" in message


@pytest.mark.parametrize("depth", [50, 500, 5000])
def test_deep_values_in_a_field(api, depth):
    """Nesting json.loads manages (or not) never reaches a recursive walk."""
    text = '{"name": %s, "image": "blank", "flavor": "m1.tiny"}' % ("[" * depth + "]" * depth)
    message = error(raw_json(api, "/v1/vms", text), 400)
    assert "'name'" in message or "nested too deeply" in message


def test_lone_surrogate_in_a_member_name(api):
    r = raw_json(api, "/v1/vms", '{"name": "a", "image": "blank", "flavor": "m1.tiny", '
                                 '"x\\udc00": 1}')
    assert "surrogate" in error(r, 400)


@pytest.mark.parametrize("pattern,text,matches", [
    ("^a$", "a", True), ("^a$", "a\n", False), ("^[$]$", "$", True), ("^\\$$", "$", True),
    ("^\\$$", "$\n", False), ("^a$|^b$", "a\n", False),
])
def test_patterns_anchor_like_ecma_262(pattern, text, matches):
    from nova_api import validation
    assert bool(validation._ecma_regex(pattern).search(text)) == matches


@pytest.mark.parametrize("data", [b"", b"\xff\xfe{}", b"{'name': 'x'}", b'{"name": "x"',
                                  b"\x00", b"null", b'"string"', b"[]", b"1"])
def test_malformed_or_non_object_json(api, data):
    message = error(api.post("/v1/vms", data=data, content_type="application/json"), 400)
    assert "malformed JSON" in message or "'(body)'" in message


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/xml",
                                   "application/jsonx", "application/octet-stream",
                                   "text/json<script>"])
@pytest.mark.parametrize("method,url", [("post", "/v1/vms"), ("post", "/v1/server-groups"),
                                        ("post", "/v1/vms/web1/action"),
                                        ("put", "/v1/services/1"),
                                        ("put", "/v1/quotas/default")])
def test_wrong_content_types(api, method, url, ctype):
    kwargs = {"data": b'{"name": "x"}'}
    if ctype is not None:
        kwargs["content_type"] = ctype
    message = error(getattr(api, method)(url, **kwargs), 415)
    assert "application/json" in message


@pytest.mark.parametrize("ctype", [None, "application/json", "text/plain", "image/qcow2"])
def test_upload_wrong_content_types(api, ctype):
    kwargs = {"data": b"QFI\xfb"}
    if ctype is not None:
        kwargs["content_type"] = ctype
    error(api.post("/v1/images?name=x", **kwargs), 415)


@pytest.mark.parametrize("token", ["", "x" * 300, "名前", "mn-<script>", "a\x00b"])
def test_hostile_tokens(api, token):
    r = api.get("/v1/vms", headers={"X-Auth-Token": token})
    assert "Authentication required" in error(r, 401)


# -- log lines ---------------------------------------------------------------------

def test_hostile_name_in_a_404_logs_as_one_line(api):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(log.FORMAT))
    handler.addFilter(log.RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        hostile = "evil\r\n2026-01-01 00:00:00 1 INFO forged [req-x] admin logged in"
        r = api.get("/v1/vms/evil%0D%0A2026-01-01%2000:00:00%201%20INFO%20forged"
                    "%20[req-x]%20admin%20logged%20in")
        assert error(r, 404) == "VM %s could not be found." % hostile
        api.delete("/v1/server-groups/x%0Ay")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = out.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00 1")]
    logged, = [line for line in lines if "GET /v1/vms/evil" in line]
    assert "\\r\\n2026-01-01" in logged and "-> 404" in logged
    assert r.headers["X-Request-Id"] in logged
    assert len([line for line in lines if "/v1/server-groups/x" in line]) == 1


@pytest.mark.parametrize("char", ["%1B[2J", "%0B", "%0C", "%C2%85", "%E2%80%A8"])
def test_log_lines_hold_no_raw_control_characters(api, char):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(log.FORMAT))
    handler.addFilter(log.RequestIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        error(api.get("/v1/vms/evil" + char + "x"), 404)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged, = [line for line in out.getvalue().split("\n") if "/v1/vms/evil" in line]
    assert len(logged.splitlines()) == 1
    assert not [c for c in logged if ord(c) < 32 or 0x7f <= ord(c) < 0xa0]


# -- the domain XML -------------------------------------------------------------------

def metadata(**kw):
    values = dict(id=UUID, name="web1", host="compute-a", project_id="p1", vcpus=1,
                  memory_mb=128, root_gb=1, image_id="img", created="2026-01-01T00:00:00Z")
    values.update(kw)
    return vconfig.InstanceMetadata(**values)


def guest(meta):
    return vconfig.GuestConfig(virt_type="qemu", uuid=UUID, name="mininova-" + UUID,
                               memory_mb=128, vcpus=1, metadata=meta,
                               devices=[vconfig.DiskConfig("/i/%s/disk" % UUID),
                                        vconfig.SerialConsoleConfig("/i/%s/console.log" % UUID)])


XML_SAFE = [v for v in HOSTILE if "\x00" not in v and "\r" not in v]


@pytest.mark.parametrize("value", XML_SAFE)
@pytest.mark.parametrize("field", ["name", "project_id", "image_id", "host", "created"])
def test_hostile_metadata_parses_back_to_the_same_text(field, value):
    meta = metadata(**{field: value})
    xml = guest(meta).to_xml()
    dom = ET.fromstring(xml)  # well-formed; no entity was declared or expanded
    assert vconfig.InstanceMetadata.from_domain_xml(xml) == meta
    # The structure is exactly ours: no element or attribute was injected.
    assert [c.tag for c in dom] == ["name", "uuid", "metadata", "memory", "currentMemory",
                                    "vcpu", "os", "features", "clock", "on_poweroff",
                                    "on_reboot", "on_crash", "devices"]
    inst, = dom.find("metadata")
    assert [c.tag.split("}")[1] for c in inst] == ["id", "name", "host", "project", "flavor",
                                                  "image", "created"]
    assert dom.findtext("name") == "mininova-" + UUID
    assert [d.tag for d in dom.find("devices")] == ["disk", "serial", "console"]


@pytest.mark.parametrize("value,expected", [
    ("nul\x00byte", "nul\ufffdbyte"),
    ("bell\x07\x1b[31m", "bell\ufffd\ufffd[31m"),
    ("\ufffe\uffff", "\ufffd\ufffd"),
    ("lone\ud800", "lone\ufffd"),
])
def test_characters_xml_cannot_carry_are_replaced(value, expected):
    xml = guest(metadata(name=value)).to_xml()
    assert vconfig.InstanceMetadata.from_domain_xml(xml).name == expected


def test_carriage_returns_survive_only_as_line_breaks():
    """XML parsers normalise CR and CRLF to LF; names cannot hold either (the
    API rejects them), so this only documents what other text would become."""
    xml = guest(metadata(project_id="a\r\nb\rc")).to_xml()
    assert vconfig.InstanceMetadata.from_domain_xml(xml).project_id == "a\nb\nc"


@pytest.mark.parametrize("path", ['/i/"onload="x', "/i/<disk>&", "/i/a\nb"])
def test_hostile_attribute_values_stay_attributes(path):
    g = guest(metadata())
    g.devices[0] = vconfig.DiskConfig(path)
    dom = ET.fromstring(g.to_xml())
    disk, = dom.findall("devices/disk")
    assert disk.find("source").attrib == {"file": path}


# -- file paths ------------------------------------------------------------------------

HOSTILE_IDS = [
    "../../etc/passwd", "..", ".", "", "/etc/passwd", UUID + "/..", UUID + "/../x",
    "../" + UUID, UUID.upper(), "{%s}" % UUID, "urn:uuid:" + UUID, UUID.replace("-", ""),
    UUID + "\n", UUID + "\x00", " " + UUID, UUID + "/", "名" * 36, 123, b"x",
]


@pytest.mark.parametrize("instance_id", HOSTILE_IDS)
def test_instance_ids_must_be_canonical_uuids(instance_id):
    with pytest.raises(exception.Invalid) as e:
        virt_driver.validate_instance_id(instance_id)
    assert "canonical UUID" in e.value.message


def test_none_is_no_instance_id(conf):
    from nova_compute.virt.libvirt.driver import LibvirtDriver
    with pytest.raises(exception.Invalid):
        LibvirtDriver(conf).files.dir(None)
    with pytest.raises(exception.Invalid):
        virt_driver.validate_instance_id(None)


def test_canonical_uuid_is_accepted():
    assert virt_driver.validate_instance_id(UUID) == UUID
    fresh = str(uuid.uuid4())
    assert virt_driver.validate_instance_id(fresh) == fresh


@pytest.mark.parametrize("instance_id", HOSTILE_IDS)
def test_no_instance_path_outside_the_instances_directory(conf, instance_id):
    from nova_compute.virt.libvirt.driver import LibvirtDriver
    drv = LibvirtDriver(conf)
    with pytest.raises(exception.Invalid):
        drv.files.dir(instance_id)
    assert drv.files.dir(UUID) == os.path.join(drv.instances_path, UUID)


@pytest.mark.parametrize("image_id", [
    "../x", "../../etc/passwd", "..", ".", ".hidden", "/etc/passwd", "a/b", "a\\b", "a\x00b",
    "", "x" * 256, None, 7, "-rf", "a b",
])
def test_image_cache_paths_stay_in_the_cache(tmp_path, image_id):
    cache = ImageCache(str(tmp_path / "_base"))
    with pytest.raises(exception.ImageUnavailable):
        cache.path_of(image_id)


@pytest.mark.parametrize("image_id", [str(uuid.uuid4()), "img", "a.b_c-d"])
def test_image_cache_paths_of_good_ids(tmp_path, image_id):
    cache = ImageCache(str(tmp_path / "_base"))
    path = cache.path_of(image_id)
    assert os.path.dirname(path) == cache.cache_dir and os.path.basename(path) == image_id


def test_image_cache_rejects_a_trailing_newline(tmp_path):
    cache = ImageCache(str(tmp_path / "_base"))
    with pytest.raises(exception.ImageUnavailable):
        cache.path_of("img\n")


def test_image_cache_trailing_newline_stays_in_the_cache(tmp_path):
    cache = ImageCache(str(tmp_path / "_base"))
    try:
        path = cache.path_of("img\n")
    except exception.ImageUnavailable:
        return
    assert os.path.dirname(path) == cache.cache_dir
