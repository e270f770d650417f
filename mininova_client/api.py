"""A small JSON client of the mininova API over urllib: one ``Client`` per
endpoint and token; API errors carry the status, the API's message and the
request id (``X-Request-Id``) so that they can be traced in the daemons' logs."""
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request

from mininova_client import API_ERROR, CONNECT, CLIError, __version__

USER_AGENT = "mininova-client/%s" % __version__
HTTP_TIMEOUT = 60.0


class APIError(CLIError):
    """The API answered 4xx/5xx."""

    def __init__(self, status, message, request_id=None, body=None):
        self.status = status
        self.api_message = message
        self.request_id = request_id
        self.body = body
        text = "error %d: %s" % (status, message)
        if request_id:
            text += " (request %s)" % request_id
        super().__init__(text, API_ERROR)


class ConnectError(CLIError):
    def __init__(self, url, reason):
        super().__init__("error: cannot connect to %s: %s" % (url, reason), CONNECT)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body  # parsed JSON, or None for an empty body

    @property
    def request_id(self):
        return self.headers.get("X-Request-Id")


def quote(segment):
    """One path segment (a name or id), escaped: a name is never a path."""
    return urllib.parse.quote(str(segment), safe="")


def _error_message(status, reason, raw):
    try:
        error = json.loads(raw.decode("utf-8"))["error"]
        return error.get("message") or reason
    except (ValueError, KeyError, TypeError, AttributeError):
        text = raw.decode("utf-8", "replace").strip()
        return (text[:200] if text else "") or reason or "HTTP %d" % status


class Client:
    def __init__(self, url, token, timeout=HTTP_TIMEOUT):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method, path, body=None, query=None, data=None, content_type=None,
                length=None, headers=None):
        """``body``: JSON to send; or ``data`` (bytes or a file object, then
        with ``length``) sent as ``content_type``; ``headers``: more headers.
        Returns a ``Response``;
        raises ``APIError`` for 4xx/5xx and ``ConnectError`` when the API
        cannot be reached."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(
                [(k, v) for k, v in query.items() if v is not None])
        headers = dict(headers or {}, **{"Accept": "application/json",
                                         "User-Agent": USER_AGENT})
        if self.token:
            headers["X-Auth-Token"] = self.token
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            content_type = "application/json"
        if data is not None:
            headers["Content-Type"] = content_type or "application/octet-stream"
            headers["Content-Length"] = str(length if length is not None else len(data))
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.headers, _json(resp.read()))
        except urllib.error.HTTPError as e:
            raw = e.read() if e.fp is not None else b""
            raise APIError(e.code, _error_message(e.code, e.reason, raw),
                           e.headers.get("X-Request-Id") if e.headers else None,
                           _json(raw, strict=False)) from None
        except urllib.error.URLError as e:
            raise ConnectError(self.url, getattr(e, "reason", e)) from None
        except (socket.timeout, TimeoutError):
            raise ConnectError(self.url, "no answer within %.0f s" % self.timeout) from None
        except (ConnectionError, OSError) as e:
            raise ConnectError(self.url, e) from None

    def get(self, path, **kw):
        return self.request("GET", path, **kw).body

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def upload(self, path, filename, query=None):
        """POST a file as application/octet-stream, streamed from disk."""
        with open(filename, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return self.request("POST", path, query=query, data=f,
                                content_type="application/octet-stream", length=size)


def _json(raw, strict=True):
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:
        if strict:
            raise CLIError("error: the API answered something that is not JSON: %r"
                           % raw[:100]) from None
        return None
