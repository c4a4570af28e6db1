"""The HTTP API of `clipsearch serve` (issue 7), with the tiny test model."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_cli import run

from search import Library
from search.errors import QueryError
from search.web import Limits, SearchService, Server, Tls


def call(srv: Server, path: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.headers, data  # case-insensitive, as HTTP is


def get_json(srv: Server, path: str) -> dict:
    status, _, data = call(srv, path)
    assert status == 200, data
    return json.loads(data)


def multipart(fields: dict[str, str], image: bytes | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    if image is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                     'filename="drop.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                     + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def test_search_ranks_like_open_clip_brute_force(site: Server, photos: Path, reference) -> None:
    results = get_json(site, "/api/search?q=night&k=12")["results"]
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["night"])[0]
    assert [r["path"] for r in results] == [str(paths[i]) for i in np.argsort(-scores,
                                                                              kind="stable")]
    assert [r["score"] for r in results] == pytest.approx(sorted(scores, reverse=True), abs=1e-4)
    first = results[0]
    assert first["thumb"].startswith(f"/api/thumb/{first['id']}?v=")
    assert first["image"].startswith(f"/api/image/{first['id']}?v=")


def test_cli_query_uses_the_running_server_and_ranks_the_same(
    site: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.web

    index = str(tmp_path / "index")
    with monkeypatch.context() as local_only:
        local_only.setattr(search.web, "ask_server", lambda *args: None)  # where cli finds it
        code, local, _ = run("query", "night", "--not", "day", "--index", index, "-k", "5")
    assert code == 0

    def no_library(*args: object, **kwargs: object) -> None:
        raise AssertionError("the query should have gone to the server")

    monkeypatch.setattr(Library, "open", no_library)
    code, served, err = run("query", "night", "--not", "day", "--index", index, "-k", "5")
    assert code == 0 and served == local, err


def test_an_uploaded_twin_finds_its_photo_first(site: Server, photos: Path) -> None:
    original = photos / "beach" / "p03.png"
    buf = io.BytesIO()
    Image.open(original).save(buf, "PNG", compress_level=1)  # same pixels, other bytes
    body, kind = multipart({"k": "3"}, buf.getvalue())
    status, _, data = call(site, "/api/search", "POST", body, {"Content-Type": kind})
    assert status == 200, data
    assert json.loads(data)["results"][0]["path"] == str(original)


def test_text_searches_answer_while_an_upload_is_still_encoding(
    site: Server, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoding, release = threading.Event(), threading.Event()
    real = site.service._upload_encoder()  # made once, on a query thread

    def slow(data: bytes, name: str):  # noqa: ANN202 - an upload whose encode takes long
        encoding.set()
        release.wait(60)
        return real(data, name)

    monkeypatch.setattr(site.service, "_encode_upload", slow)
    body, kind = multipart({"k": "3"}, (photos / "beach" / "p03.png").read_bytes())
    answers: list = []
    upload = threading.Thread(target=lambda: answers.append(call(
        site, "/api/search", "POST", body, {"Content-Type": kind})))
    upload.start()
    try:
        assert encoding.wait(60)
        # The upload is mid-encode; a text search does not queue behind it.
        assert get_json(site, "/api/search?q=night&k=2")["results"]
        assert upload.is_alive() and not answers
    finally:
        release.set()
        upload.join(60)
    assert answers[0][0] == 200


def test_a_slow_text_search_holds_up_no_other(site: Server, counting,  # noqa: ANN001
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    site.service._run(lambda lib: lib.warm())  # texts now go through the (shared) model
    encoding, release = threading.Event(), threading.Event()
    real = counting.encode_texts

    def encode(texts):  # noqa: ANN001, ANN202 - one query whose text takes long to encode
        if "slow" in texts:
            encoding.set()
            release.wait(60)
        return real(texts)

    monkeypatch.setattr(counting, "encode_texts", encode)
    answers: list = []
    slow = threading.Thread(target=lambda: answers.append(call(site, "/api/search?q=slow")))
    slow.start()
    try:
        assert encoding.wait(60)
        # One query thread is held; another answers (and reads the catalog) meanwhile.
        assert get_json(site, "/api/search?q=night&k=2")["results"]
        assert get_json(site, "/api/info")["vectors"] == 12
        assert slow.is_alive() and not answers
    finally:
        release.set()
        slow.join(60)
    assert answers[0][0] == 200


def test_similar_describe_thumb_image_and_info(site: Server, photos: Path, tmp_path: Path,
                                               open_library) -> None:
    first = get_json(site, "/api/search?q=night&k=1")["results"][0]
    similar = get_json(site, f"/api/similar/{first['id']}?k=3")["results"]
    assert similar[0]["id"] == first["id"] and len(similar) == 3
    status, headers, thumb = call(site, first["thumb"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert "max-age" in headers["Cache-Control"] and max(Image.open(io.BytesIO(thumb)).size) > 0
    assert (tmp_path / "index" / "thumbs" / f"{first['id']}.jpg").read_bytes() == thumb
    status, _, image = call(site, first["image"])
    assert status == 200 and image == Path(first["path"]).read_bytes()
    status, _, data = call(site, f"/api/describe/{first['id']}")
    assert status == 400 and "corpus is empty" in json.loads(data)["error"]
    assert get_json(site, "/api/info")["vectors"] == 12
    assert "/api/search" in get_json(site, "/openapi.json")["paths"]
    status, headers, page = call(site, "/")
    assert status == 200 and b'name="q"' in page and b'id="results"' in page
    assert b"http://" not in page and b"https://" not in page  # no CDN: works offline


@pytest.mark.parametrize("path", [
    "/api/image/..%2f..%2fetc%2fpasswd", "/api/thumb/%2e%2e", "/api/image//etc/passwd",
    "/../../etc/passwd", "/api/image/1/../../../etc/passwd", "/api/image/99999",
    "/%2e%2e/%2e%2e/etc/passwd",
])
def test_traversal_attempts_get_404(site: Server, path: str) -> None:
    status, _, data = call(site, path)
    assert status == 404 and b"root:" not in data and "error" in json.loads(data)


def test_a_photo_swapped_for_a_link_out_of_the_roots_is_not_served(
    site: Server, photos: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    first = get_json(site, "/api/search?q=night&k=1")["results"][0]
    Path(first["path"]).unlink()
    Path(first["path"]).symlink_to(secret)  # after indexing, the file becomes a link out
    for url in (first["image"], first["thumb"]):
        status, _, data = call(site, url)
        assert status == 404 and b"root:" not in data


@contextlib.contextmanager
def serving(tmp_path: Path, tiny_spec, counting, limits: Limits = Limits(),  # noqa: ANN001
            token: str | None = None, tls: Tls | None = None) -> Iterator[Server]:
    """A second server of the test index (the `site` fixture indexes it), with these limits."""
    service = SearchService(lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                                 load=lambda spec, precision: counting))
    srv = Server(service, "127.0.0.1", 0, token, limits, tls)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        thread.join(10)
        service.close()


def test_oversized_upload_gets_413(site: Server, tmp_path: Path, tiny_spec, counting) -> None:
    with serving(tmp_path, tiny_spec, counting, Limits(upload_bytes=1 << 20)) as small:
        # Far more than socket buffers hold: the client must still get to read the 413.
        body, kind = multipart({}, b"\x89PNG" + b"\0" * (6 << 20))
        status, _, data = call(small, "/api/search", "POST", body, {"Content-Type": kind})
    assert status == 413 and "error" in json.loads(data)


def raw_post(srv: Server, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    conn.putrequest("POST", "/api/search")
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


@pytest.mark.parametrize("length", ["-1", "abc", "1e3"])
def test_uploads_with_a_malformed_length_are_refused(site: Server, length: str) -> None:
    body, kind = multipart({}, b"x" * 100)
    # Refused by the HTTP layer (h11) before any route runs: its own empty 400.
    assert raw_post(site, {"Content-Type": kind, "Content-Length": length}, body)[0] == 400


def test_chunked_uploads_are_refused_with_411(site: Server) -> None:
    body, kind = multipart({}, b"x" * 100)
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    status, data = raw_post(site, {"Content-Type": kind, "Transfer-Encoding": "chunked"}, chunked)
    assert status == 411 and "Content-Length" in json.loads(data)["error"]


def test_query_ignores_a_server_of_another_index(site: Server, tmp_path: Path) -> None:
    from search.web import ask_server, state_path

    index = str(tmp_path / "index")
    assert ask_server(index, ["night"], [], 3, None, None)  # the real one answers
    other = tmp_path / "other"
    other.mkdir()
    state = json.loads(Path(state_path(index)).read_text())
    # Left by a server of `other` killed with -9; this site now holds the same port.
    stale = {**state, "index": str(other), "instance": "0123456789abcdef"}
    Path(state_path(str(other))).write_text(json.dumps(stale))
    assert ask_server(str(other), ["night"], [], 3, None, None) is None
    Path(state_path(str(other))).write_text(json.dumps(state))  # a copied folder
    assert ask_server(str(other), ["night"], [], 3, None, None) is None


def test_a_bomb_upload_is_refused_by_the_pixel_guard(site: Server, tmp_path: Path) -> None:
    from test_images import _png_declaring

    body, kind = multipart({}, _png_declaring(tmp_path / "bomb.png", 20000, 20000).read_bytes())
    status, _, data = call(site, "/api/search", "POST", body, {"Content-Type": kind})
    assert status == 400 and "too large" in json.loads(data)["error"]


def test_a_foreign_host_header_is_refused(site: Server) -> None:
    status, _, data = call(site, "/api/info", headers={"Host": "attacker.example:8765"})
    assert status == 421 and "Host" in json.loads(data)["error"]


def test_errors_are_json_without_a_stack_trace(site: Server) -> None:
    for method, path in [("GET", "/api/search"), ("GET", "/api/search?q=x&k=0"),
                         ("GET", "/api/search?q=x&k=%C2%B2"), ("GET", "/api/similar/99999"),
                         ("GET", "/nope"), ("PUT", "/"), ("POST", "/api/info"),
                         ("GET", "/api/image/123456789012345678901")]:
        status, headers, data = call(site, path, method)
        assert status in (400, 404, 405, 501) and headers["Content-Type"] == "application/json"
        if method != "HEAD":
            assert "Traceback" not in data.decode() and json.loads(data)["error"]
    status, _, _ = call(site, "/api/info", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403  # another web site may not read the photos through the browser


def test_non_loopback_needs_a_token(site: Server, tiny_spec, tmp_path: Path, counting) -> None:
    service = SearchService(lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                                 load=lambda spec, precision: counting))
    try:
        with pytest.raises(QueryError, match="--token"):
            Server(service, "0.0.0.0", 0, None)
        guarded = Server(service, "127.0.0.1", 0, "s3cret")
        thread = threading.Thread(target=guarded.serve_forever, daemon=True)
        thread.start()
        assert call(guarded, "/api/info")[0] == 401
        assert call(guarded, "/api/info", headers={"Authorization": "Bearer nope"})[0] == 401
        assert call(guarded, "/api/info", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(guarded, "/?token=%C3%A9")[0] == 401
        # Reached by another name (a LAN address): the token, not the Host, guards it.
        assert call(guarded, "/api/info", headers={"Authorization": "Bearer s3cret",
                                                   "Host": "192.0.2.2:8765"})[0] == 200
        status, headers, _ = call(guarded, "/?token=s3cret")
        assert status == 303 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert call(guarded, "/api/info", headers={"Cookie": cookie})[0] == 200
        guarded.shutdown()
        guarded.server_close()
    finally:
        service.close()


@pytest.mark.parametrize(("signum", "by_ctrl_c"), [(signal.SIGTERM, False),
                                                   (signal.SIGINT, True)])
def test_a_signal_while_a_request_is_in_flight_stops_serve_cleanly(
    open_library, photos: Path, tmp_path: Path, tiny_spec, counting, signum: int,
    by_ctrl_c: bool,
) -> None:
    # SIGTERM (a service manager) and Ctrl-C both end `serve` through the same cleanup: the
    # request in flight is answered, the state file removed; only Ctrl-C reports a person's stop.
    import os
    import urllib.request

    from search import web

    open_library().index([str(photos)])
    answered: list[int] = []

    def ask_then_signal(url: str) -> None:
        with urllib.request.urlopen(url + "/api/info", timeout=10) as response:
            os.kill(os.getpid(), signum)  # handled by the main thread's event loop
            answered.append(response.status)

    # If the signal were swallowed, serve would run on: the watchdog then stops it with SIGINT
    # after 30 s, which fails the SIGTERM case below instead of hanging.
    watchdog = threading.Timer(30, os.kill, (os.getpid(), signal.SIGINT))
    watchdog.start()
    try:
        stopped_by_ctrl_c = web.serve(
            lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                 load=lambda spec, precision: counting),
            "127.0.0.1", 0, None, False,
            lambda index_dir, url: threading.Thread(target=ask_then_signal, args=(url,)).start())
    finally:
        watchdog.cancel()
    assert stopped_by_ctrl_c is by_ctrl_c and answered == [200]
    assert not (tmp_path / "index" / "serve.json").exists()


def self_signed(folder: Path) -> Tls:
    if shutil.which("openssl") is None:
        pytest.skip("openssl missing")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=photos.lan",
                    "-addext", "subjectAltName=DNS:photos.lan"], check=True, capture_output=True)
    return Tls(str(cert), str(key))


def test_under_tls_query_talks_https_trusting_exactly_the_served_certificate(
    site: Server, tmp_path: Path, tiny_spec, counting
) -> None:
    from search.web import ask_server, serve_forever, state_path

    index = str(tmp_path / "index")
    tls = self_signed(tmp_path)
    service = SearchService(lambda: Library.open(index, tiny_spec,
                                                 load=lambda spec, precision: counting))
    secure = Server(service, "127.0.0.1", 0, "s3cret", Limits(), tls)
    thread = threading.Thread(target=serve_forever, args=(secure, state_path(index)),
                              daemon=True)
    thread.start()
    try:
        assert secure.url.startswith("https://")
        for _ in range(1000):  # serve_forever writes the state file first
            if json.loads(Path(state_path(index)).read_text())["instance"] == secure.instance:
                break
            time.sleep(0.01)
        # Issued for photos.lan, reached at 127.0.0.1: the pinned certificate is what counts.
        hits = ask_server(index, ["night"], [], 3, None, None)
        assert hits and len(hits) == 3
        # The system's trust store does not know it.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(secure.url + "/api/info", timeout=10)
        plain = http.client.HTTPConnection(*secure.server_address, timeout=10)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/api/info")  # plain http to the TLS port gets no answer
            plain.getresponse()
        (tmp_path / "other").mkdir()
        other = self_signed(tmp_path / "other")
        state = json.loads(Path(state_path(index)).read_text())
        Path(state_path(index)).write_text(json.dumps({**state, "cert": other.cert}))
        assert ask_server(index, ["night"], [], 3, None, None) is None  # another cert: refused
    finally:
        secure.shutdown()
        thread.join(10)
        service.close()


@pytest.mark.parametrize(("args", "named"), [
    (["--tls-cert", "cert.pem"], "--tls-key"),
    (["--tls-cert", "missing.pem", "--tls-key", "missing.key"], "--tls-cert"),
    (["--token-file", "missing.txt"], "--token-file"),
    (["--token-file", "empty.txt"], "--token-file"),
    (["--token-file", "token.txt", "--token", "x"], "--token-file"),
])
def test_serve_reports_bad_secrets_in_one_line_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], named: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "token.txt").write_text("s3cret\n")
    code, _, err = run("serve", "--index", str(tmp_path / "index"), *args)
    assert code != 0 and named in err and len(err.strip().splitlines()) == 1, err


def test_a_token_file_supplies_the_token(tmp_path: Path) -> None:
    from search.web import secrets_from

    (tmp_path / "token.txt").write_text("s3cret\nignored\n")
    assert secrets_from(None, str(tmp_path / "token.txt"), None, None) == ("s3cret", None)
