"""`clipsearch serve` through Starlette's test client: the schema, streamed files, logging in.

No socket: the app (behind its guard) is called in-process. The real-socket
behaviour (timeouts, caps, signals) is in test_serve.py and test_serve_limits.py.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from search import Library
from search.web import SearchService, Server, api, openapi
from search.web.guard import COOKIE


@pytest.fixture
def served(open_library, photos: Path, tmp_path: Path, tiny_spec, counting) -> Iterator[Server]:
    open_library().index([str(photos)])
    service = SearchService(lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                                 load=lambda spec, precision: counting))
    srv = Server(service, "127.0.0.1", 0, None)
    yield srv
    srv.server_close()
    service.close()


@pytest.fixture
def client(served: Server) -> Iterator[TestClient]:
    with TestClient(served.guard, base_url=served.url, follow_redirects=False) as c:
        yield c


def first_hit(client: TestClient) -> dict:
    return client.get("/api/search", params={"q": "night", "k": 1}).json()["results"][0]


def test_every_route_is_in_the_schema_and_every_schema_path_is_a_route(
        client: TestClient, served: Server) -> None:
    document = client.get("/openapi.json").json()
    routes = {(r.path, m.lower()) for r in served.guard.app.routes for m in r.methods
              if m != "HEAD"}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
    assert set(document["components"]["securitySchemes"]) == {"bearer", "cookie"}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            # The checks in front of every route can answer any of these.
            assert {"400", "401", "403", "421", "500"} <= set(op["responses"]), (path, method)
    upload = document["paths"]["/api/search"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    filters = {"after", "before", "camera", "near", "within", "sort", "min_z"}
    assert set(form) == {"image", "q", "not", "under", "k", *filters}  # was drift: not, under
    assert {"408", "411", "413", "503"} <= set(upload["responses"])
    assert {"206", "304", "404", "416"} <= set(document["paths"]["/api/image/{id}"]["get"][
        "responses"])


def test_each_route_reads_exactly_the_parameters_it_declares(
        client: TestClient, photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: set[tuple[str, str, str, str]] = set()
    real = api.Params._declared

    def recording(self: api.Params, name: str, where: str) -> list:
        read.add((self.endpoint.method, self.endpoint.path, name, where))
        return real(self, name, where)

    monkeypatch.setattr(api.Params, "_declared", recording)
    hit = first_hit(client)
    client.get("/api/search", params={"q": "night", "not": "day", "under": str(photos), "k": 2})
    client.post("/api/search?k=3", files={"image": ("a.png", (photos / "beach" / "p01.png")
                                                    .read_bytes(), "image/png")},
                data={"q": "sea", "not": "day", "under": str(photos), "k": "2"})
    for route in ("similar", "describe", "thumb", "image"):
        client.get(f"/api/{route}/{hit['id']}", params={"k": 2})
    client.get("/api/duplicates", params={"threshold": 0.99, "under": str(photos)})
    client.get("/api/info")
    client.get("/openapi.json")
    declared = {(e.method, e.path, p.name, p.where) for e in openapi.ENDPOINTS for p in e.params
                if e is not openapi.PAGE}  # the page's token and login: the guard reads them
    assert read == declared


@pytest.mark.parametrize(("params", "named"), [
    ({"q": "night", "after": "2024-13-45"}, "'after' 2024-13-45: write a date"),
    ({"q": "night", "within": "5km"}, "'within' needs 'near'"),
    ({"q": "night", "after": "2024-06-01", "before": "2023-01-01"},
     "'after' 2024-06-01 is not before 'before' 2023-01-01"),
])
def test_errors_name_the_api_s_parameters_not_command_line_options(
        client: TestClient, params: dict[str, str], named: str) -> None:
    answer = client.get("/api/search", params=params)
    assert answer.status_code == 400
    assert named in answer.json()["error"] and "--" not in answer.json()["error"]


@pytest.mark.parametrize("route", ["image", "thumb"])
def test_photos_stream_with_validators_ranges_and_head(client: TestClient, route: str,
                                                       tmp_path: Path) -> None:
    hit = first_hit(client)
    url = hit[route]
    full = client.get(url)
    on_disk = (Path(hit["path"]) if route == "image"
               else tmp_path / "index" / "thumbs" / f"{hit['id']}.jpg").read_bytes()
    assert full.status_code == 200 and full.content == on_disk
    assert full.headers["accept-ranges"] == "bytes" and full.headers["x-content-type-options"]
    etag, modified = full.headers["etag"], full.headers["last-modified"]

    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    older = formatdate(0, usegmt=True)  # the epoch: the file is newer, so send it
    assert client.get(url, headers={"If-Modified-Since": older}).status_code == 200
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == on_disk[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(on_disk)}"
    tail = client.get(url, headers={"Range": "bytes=-7"})
    assert tail.status_code == 206 and tail.content == on_disk[-7:]
    beyond = client.get(url, headers={"Range": f"bytes={len(on_disk) + 5}-"})
    assert beyond.status_code == 416

    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(on_disk) and head.headers["etag"] == etag


def test_a_thumbnail_that_cannot_be_cached_is_still_served_with_validators(
        client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search.web import service

    hit = first_hit(client)
    monkeypatch.setattr(service, "atomic_write", _read_only)  # a read-only index folder
    response = client.get(hit["thumb"])
    assert response.status_code == 200 and max(Image.open(io.BytesIO(response.content)).size)
    assert not (tmp_path / "index" / "thumbs" / f"{hit['id']}.jpg").exists()
    again = client.get(hit["thumb"], headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def _read_only(path: str, data: bytes) -> None:
    raise PermissionError(13, "read-only", path)


def test_a_login_code_sets_the_cookie_once(served: Server) -> None:
    served.guard.token = "s3cret"
    with TestClient(served.guard, base_url=served.url, follow_redirects=False) as client:
        code = served.guard.login_code()
        assert "s3cret" not in code
        response = client.get("/", params={"login": code})
        assert response.status_code == 303 and response.headers["location"] == "/"
        assert client.cookies.get(COOKIE) == "s3cret"
        assert client.get("/api/info").status_code == 200  # the cookie now guards
        client.cookies.clear()
        assert client.get("/", params={"login": code}).status_code == 401  # used up
        assert client.get("/", params={"login": "guess"}).status_code == 401


def test_under_tls_the_cookie_is_secure(served: Server) -> None:
    served.guard.token, served.guard.secure = "s3cret", True
    with TestClient(served.guard, base_url=served.url, follow_redirects=False) as client:
        cookie = client.get("/", params={"token": "s3cret"}).headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
