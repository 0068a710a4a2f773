"""The downloader against a local HTTP server (127.0.0.1, port 0) that honours Range requests."""
import hashlib
import io
import os
import tarfile
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kpsemi.data import download
from kpsemi.data.download import DownloadError, Remote
from kpsemi.errors import DataError


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = srv.cut_after.pop(self.path, None)   # simulate a dropped connection once
        self.wfile.write(body[start:cut] if cut is not None else body[start:])

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.log, srv.ranges, srv.cut_after = {}, [], True, {}
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _sha(b):
    return hashlib.sha256(b).hexdigest()


PAYLOAD = bytes(range(256)) * 4000   # 1,024,000 bytes


def test_full_download_verified(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    r = Remote(url=server.url("/a.bin"), sha256=_sha(PAYLOAD), filename="a.bin", size=len(PAYLOAD), extract=False)
    path = download.fetch(r, str(tmp_path), progress=False)
    assert open(path, "rb").read() == PAYLOAD
    assert not os.path.exists(path + ".part")
    assert server.log == [("/a.bin", None)]


def test_resume_sends_range_and_appends(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:300_000])
    r = Remote(url=server.url("/a.bin"), sha256=_sha(PAYLOAD), filename="a.bin", extract=False)
    path = download.fetch(r, str(tmp_path), progress=False)
    assert server.log == [("/a.bin", "bytes=300000-")]
    assert open(path, "rb").read() == PAYLOAD


def test_dropped_connection_keeps_part_then_resumes(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.cut_after["/a.bin"] = 100_000
    r = Remote(url=server.url("/a.bin"), sha256=_sha(PAYLOAD), filename="a.bin", extract=False)
    with pytest.raises(DownloadError, match="run again to resume"):
        download.fetch(r, str(tmp_path), progress=False)
    assert (tmp_path / "a.bin.part").stat().st_size == 100_000
    path = download.fetch(r, str(tmp_path), progress=False)
    assert server.log[-1] == ("/a.bin", "bytes=100000-")
    assert open(path, "rb").read() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.ranges = False
    (tmp_path / "a.bin.part").write_bytes(b"garbage" * 10)
    r = Remote(url=server.url("/a.bin"), sha256=_sha(PAYLOAD), filename="a.bin", extract=False)
    path = download.fetch(r, str(tmp_path), progress=False)
    assert open(path, "rb").read() == PAYLOAD


def test_checksum_mismatch_deletes_and_names_both(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    wrong = "0" * 64
    r = Remote(url=server.url("/a.bin"), sha256=wrong, filename="a.bin", extract=False)
    with pytest.raises(DownloadError) as e:
        download.fetch(r, str(tmp_path), progress=False)
    assert wrong in str(e.value) and _sha(PAYLOAD) in str(e.value) and server.url("/a.bin") in str(e.value)
    assert os.listdir(tmp_path) == []   # neither a final file nor a .part


def test_size_mismatch(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    r = Remote(url=server.url("/a.bin"), sha256=_sha(PAYLOAD), filename="a.bin", size=5, extract=False)
    with pytest.raises(DownloadError, match="expected 5 bytes, got 1024000"):
        download.fetch(r, str(tmp_path), progress=False)
    assert os.listdir(tmp_path) == []


def test_http_error_names_url(server, tmp_path):
    r = Remote(url=server.url("/missing.zip"), sha256="0" * 64, filename="m.zip")
    with pytest.raises(DownloadError, match="missing.zip.*404.*by hand"):
        download.fetch(r, str(tmp_path), progress=False)


def test_unverified_refused_then_allowed_prints_sha(server, tmp_path, capsys):
    server.files["/u.bin"] = PAYLOAD
    r = Remote(url=server.url("/u.bin"), sha256=None, filename="u.bin", extract=False)
    with pytest.raises(DownloadError, match="--allow-unverified"):
        download.fetch(r, str(tmp_path), progress=False)
    assert server.log == []   # refused before any request
    download.fetch(r, str(tmp_path), allow_unverified=True, progress=False)
    assert _sha(PAYLOAD) in capsys.readouterr().err


def _targz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_extract_good_tar_and_zip(tmp_path):
    (tmp_path / "good.tar.gz").write_bytes(_targz({"d/x.txt": b"tar!", "y.txt": b"y"}))
    (tmp_path / "good.zip").write_bytes(_zip({"z/w.txt": b"zip!"}))
    download.extract(str(tmp_path / "good.tar.gz"), str(tmp_path / "out"))
    download.extract(str(tmp_path / "good.zip"), str(tmp_path / "out"))
    assert (tmp_path / "out/d/x.txt").read_bytes() == b"tar!"
    assert (tmp_path / "out/y.txt").read_bytes() == b"y"
    assert (tmp_path / "out/z/w.txt").read_bytes() == b"zip!"


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "ok/../../evil"])
def test_unsafe_tar_refused(tmp_path, name):
    (tmp_path / "bad.tar.gz").write_bytes(_targz({"fine.txt": b"1", name: b"x"}))
    with pytest.raises(DataError, match="unsafe member"):
        download.extract(str(tmp_path / "bad.tar.gz"), str(tmp_path / "out"))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_tar_symlink_outside_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(link)
    (tmp_path / "bad.tar").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="'link'.*outside"):
        download.extract(str(tmp_path / "bad.tar"), str(tmp_path / "out"))


@pytest.mark.parametrize("name", ["../evil", "/abs/evil"])
def test_unsafe_zip_refused(tmp_path, name):
    (tmp_path / "bad.zip").write_bytes(_zip({name: b"x"}))
    with pytest.raises(DataError, match="unsafe member"):
        download.extract(str(tmp_path / "bad.zip"), str(tmp_path / "out"))
    assert not (tmp_path / "evil").exists()


def test_zip_symlink_entry_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "bad.zip").write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="symlink"):
        download.extract(str(tmp_path / "bad.zip"), str(tmp_path / "out"))


def test_download_dataset_extracts_and_is_idempotent(server, tmp_path):
    tgz, zp = _targz({"images/a.txt": b"A"}), _zip({"joints.txt": b"J"})
    server.files.update({"/d.tar.gz": tgz, "/e.zip": zp})
    mod = types.SimpleNamespace(NAME="fake", how_to_get=lambda: "HOW TO GET fake", FILES=[
        Remote(url=server.url("/d.tar.gz"), sha256=_sha(tgz), filename="d.tar.gz"),
        Remote(url=server.url("/e.zip"), sha256=_sha(zp), filename="e.zip", into="sub")])
    root = download.download_dataset(mod, root=str(tmp_path / "fake"), progress=False)
    assert (tmp_path / "fake/images/a.txt").read_bytes() == b"A"
    assert (tmp_path / "fake/sub/joints.txt").read_bytes() == b"J"
    assert len(server.log) == 2
    assert download.download_dataset(mod, root=root, progress=False) == root
    assert len(server.log) == 2   # the second call made no request


def test_download_dataset_error_includes_manual_instructions(server, tmp_path):
    mod = types.SimpleNamespace(NAME="fake", how_to_get=lambda: "HOW TO GET fake", FILES=[
        Remote(url=server.url("/gone.zip"), sha256="0" * 64, filename="gone.zip")])
    with pytest.raises(DownloadError, match="(?s)gone.zip.*HOW TO GET fake"):
        download.download_dataset(mod, root=str(tmp_path), progress=False)


def test_download_dataset_refuses_unverified_before_any_request(server, tmp_path):
    server.files["/u.zip"] = _zip({"a": b"a"})
    mod = types.SimpleNamespace(NAME="fake", how_to_get=lambda: "", FILES=[
        Remote(url=server.url("/u.zip"), sha256=None, filename="u.zip")])
    with pytest.raises(DownloadError, match="kpsemi data download fake --allow-unverified"):
        download.download_dataset(mod, root=str(tmp_path), progress=False)
    assert server.log == []
    download.download_dataset(mod, root=str(tmp_path), allow_unverified=True, progress=False)
    assert (tmp_path / "a").read_bytes() == b"a"


def test_manually_placed_archive_is_verified_not_deleted(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"not the real thing")
    r = Remote(url="http://127.0.0.1:9/never", sha256="0" * 64, filename="m.bin", extract=False)
    with pytest.raises(DownloadError, match="sha256 mismatch.*left as it is"):
        download.fetch(r, str(tmp_path), progress=False)
    assert (tmp_path / "m.bin").exists()
