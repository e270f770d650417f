"""`mininova vm create` sends an X-Idempotency-Key and retries with it: an
answer lost after the API created the VM (the connection cut, as when an API
dies behind HAProxy) or a 502/503/504 is retried and makes no second VM; a
4xx is not retried."""
import http.server
import json
import threading

import pytest

from mininova_client import vms
from mininova_client.api import APIError, Client, ConnectError
from nova_api.app import create_app
from tests.unit.conftest import token_for


class Gateway(http.server.BaseHTTPRequestHandler):
    """Hands each request to the app (Flask's test client); the first
    ``cut`` POSTs are served but their answers dropped, the next
    ``bad_gateway`` answered 502 without reaching the app."""
    app = None
    cut = 0
    bad_gateway = 0
    keys = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.keys.append(self.headers.get("X-Idempotency-Key"))
        if cls.bad_gateway and not cls.cut:
            cls.bad_gateway -= 1
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        r = cls.app.post(self.path, data=body, headers=dict(self.headers))
        if cls.cut:
            cls.cut -= 1
            self.close_connection = True  # served, never answered
            return
        self.send_response(r.status_code)
        for name in ("Content-Type", "Location", "X-Idempotent-Replayed"):
            if name in r.headers:
                self.send_header(name, r.headers[name])
        data = r.get_data()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def gateway(conf, db, image, recorder):
    app = create_app(conf, db, recorder(), recorder()).test_client()
    handler = type("H", (Gateway,), {"app": app, "keys": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = Client("http://127.0.0.1:%d" % server.server_address[1],
                    token_for(db, "default", "admin"), timeout=10)
    yield handler, client, app
    server.shutdown()
    server.server_close()


BODY = {"name": "web1", "image": "blank", "flavor": "m1.tiny"}


def live(app, client):
    return app.get("/v1/vms", headers={"X-Auth-Token": client.token}).get_json()["vms"]


def test_a_lost_answer_is_retried_with_the_same_key(gateway):
    handler, client, app = gateway
    handler.cut, handler.bad_gateway = 1, 1
    pauses = []
    r = vms._post_idempotent(client, BODY, "k-1", sleep=pauses.append)
    assert r.status == 202 and r.headers["X-Idempotent-Replayed"] == "true"
    assert handler.keys == ["k-1"] * 3 and pauses == [0.5, 1.0]
    assert [v["id"] for v in live(app, client)] == [r.body["vm"]["id"]]


def test_a_4xx_is_not_retried(gateway):
    handler, client, _ = gateway
    with pytest.raises(APIError) as e:
        vms._post_idempotent(client, dict(BODY, flavor="nope"), "k-2", sleep=lambda _: None)
    assert e.value.status in (400, 404) and handler.keys == ["k-2"]


def test_gives_up_after_the_last_pause(gateway):
    handler, client, app = gateway
    handler.bad_gateway = 10
    with pytest.raises(APIError) as e:
        vms._post_idempotent(client, BODY, "k-3", pauses=(0.1, 0.2), sleep=lambda _: None)
    assert e.value.status == 502 and handler.keys == ["k-3"] * 3
    assert live(app, client) == []


def test_unreachable_is_retried_then_reported():
    client = Client("http://127.0.0.1:9", "t", timeout=2)  # discard port: refused
    pauses = []
    with pytest.raises(ConnectError):
        vms._post_idempotent(client, BODY, "k", sleep=pauses.append)
    assert pauses == list(vms.CREATE_RETRY_PAUSES)


def test_the_cli_sends_a_key(gateway, capsys):
    from mininova_client import cli
    handler, client, _ = gateway
    code = cli.main(["--url", client.url, "--token", client.token, "vm", "create", "web9",
                     "--image", "blank", "--flavor", "m1.tiny", "--idempotency-key", "mine",
                     "-f", "json"])
    assert code == 0 and handler.keys == ["mine"]
    assert json.loads(capsys.readouterr().out)["vm"]["name"] == "web9"
