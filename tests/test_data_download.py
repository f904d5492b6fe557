"""Verified downloads against a local HTTP server on 127.0.0.1 (no internet), and safe archive extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from disentkit.data.download import download_file, import_file, safe_extract, verify_file
from disentkit.data.pins import pin
from disentkit.data.registry import RemoteFile
from disentkit.errors import DisentkitError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"   # ~1 MB, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
HTML = b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>...</body></html>"


class Handler(BaseHTTPRequestHandler):
    log: list[tuple[str, str | None]] = []
    dropped: set[str] = set()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        Handler.log.append((self.path, rng))
        kind = self.path.strip("/").split("/")[0]
        if kind == "missing":
            self.send_error(404)
            return
        if kind == "html":
            self._send(200, HTML, "text/html; charset=utf-8")
            return
        if kind == "html_octet":   # a saved quota page served as a binary
            self._send(200, HTML, "application/octet-stream")
            return
        body = {"good": PAYLOAD, "drop": PAYLOAD, "short": PAYLOAD[: len(PAYLOAD) // 3],
                "wrong": PAYLOAD[:-4] + b"TAIL"}[kind]
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if kind == "drop" and not rng and self.path not in Handler.dropped:
            Handler.dropped.add(self.path)      # first attempt: promise everything, send 40%, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(body[: int(len(body) * 0.4)])
            self.wfile.flush()
            self.close_connection = True
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            part = body[start:]
        else:
            self.send_response(200)
            part = body
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        self.wfile.write(part)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", ctype)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def remote(*urls: str, size: int | None = len(PAYLOAD), checksums=(f"sha256:{SHA}",)) -> RemoteFile:
    return RemoteFile("data.bin", urls=urls, size=size, checksums=checksums, source="test")


def test_good_file_is_verified_and_cached(server, tmp_path):
    path = download_file(remote(f"{server}/good/a", checksums=(f"md5:{MD5}",)), tmp_path, progress=False)
    assert path == tmp_path / "data.bin" and path.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()


def test_truncated_file_rejected_with_sizes_and_not_cached(server, tmp_path):
    with pytest.raises(DisentkitError, match=f"expected {len(PAYLOAD):,} bytes, got {len(PAYLOAD) // 3:,}"):
        download_file(remote(f"{server}/short/a"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_checksum_names_expected_and_actual(server, tmp_path):
    bad = hashlib.sha256(PAYLOAD[:-4] + b"TAIL").hexdigest()
    with pytest.raises(DisentkitError, match=f"expected sha256:{SHA}.*got sha256:{bad}"):
        download_file(remote(f"{server}/wrong/a"), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["html", "html_octet"])
def test_html_page_is_detected_and_points_to_import(server, tmp_path, kind):
    r = RemoteFile("img_align_celeba.zip", urls=(f"{server}/{kind}/x",), size=None,
                   checksums=(f"md5:{MD5}",), manual="download it in a browser")
    with pytest.raises(DisentkitError, match="HTML page.*import celeba --from-file img_align_celeba.zip"):
        download_file(r, tmp_path, progress=False, dataset="celeba")
    assert list(tmp_path.iterdir()) == []


def test_mirrors_tried_in_order(server, tmp_path):
    Handler.log.clear()
    path = download_file(remote(f"{server}/missing/a", f"{server}/html/b", f"{server}/good/c"), tmp_path,
                         progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in Handler.log] == ["/missing/a", "/html/b", "/good/c"]


def test_dropped_connection_resumes_with_range(server, tmp_path):
    Handler.log.clear()
    path = download_file(remote(f"{server}/drop/r1"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    ranges = [r for p, r in Handler.log if p == "/drop/r1"]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1].split("=")[1].rstrip("-")) > 0


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:12345])
    Handler.log.clear()
    path = download_file(remote(f"{server}/good/p"), tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert Handler.log == [("/good/p", "bytes=12345-")]


def test_all_mirrors_failing_says_how_to_import(server, tmp_path):
    with pytest.raises(DisentkitError, match="missing/a: HTTP 404.*datasets import mydata --from-file data.bin`"):
        download_file(remote(f"{server}/missing/a"), tmp_path, progress=False, dataset="mydata")


def test_import_verifies_without_pinning_and_the_pin_is_checked(tmp_path):
    src = tmp_path / "download.bin"
    src.write_bytes(PAYLOAD)
    folder = tmp_path / "raw"
    r = remote(checksums=(), size=None)
    path = import_file(r, src, folder)
    assert path.read_bytes() == PAYLOAD and not (folder / "checksums.json").exists()   # pinned once it converts
    pin(folder, "data.bin", SHA)
    path.write_bytes(PAYLOAD[:-1] + b"X")            # later corruption is caught against the pin
    with pytest.raises(DisentkitError, match="pinned when the dataset converted.*datasets forget mydata"):
        verify_file(path, r, folder, dataset="mydata")
    src.write_bytes(PAYLOAD[:100])
    with pytest.raises(DisentkitError, match="wrong size"):
        import_file(remote(), src, tmp_path / "raw2")
    assert not (tmp_path / "raw2" / "data.bin").exists()


def _tar_with(tmp_path, name: str, link: str | None = None):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        ok = tarfile.TarInfo("data/cars/ok.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(name)
        if link:
            bad.type, bad.linkname = tarfile.SYMTYPE, link
        else:
            bad.size = 4
        tar.addfile(bad, None if link else io.BytesIO(b"evil"))
    return path


@pytest.mark.parametrize("name,link", [("../escape.txt", None), ("data/../../escape.txt", None),
                                       ("/tmp/abs_escape.txt", None), ("data/link", "../../outside")])
def test_tar_escaping_the_target_is_refused(tmp_path, name, link):
    target = tmp_path / "out"
    with pytest.raises(DisentkitError, match="unsafe path"):
        safe_extract(_tar_with(tmp_path, name, link), target)
    assert not (tmp_path / "escape.txt").exists() and not (target / "data" / "cars" / "ok.txt").exists()
