"""Download, verify and safely unpack the official archives of the real datasets (LSP, MPII, CUB, ATRW).

    root = download_dataset(data.SOURCES["cub"])         # data/cub/CUB_200_2011/... ready for cub.load
    python -m kpsemi data download cub                    # the same from the command line

Each dataset module lists its archives as `FILES = [Remote(...)]`. For every archive:
  1. fetch: urllib GET into `<filename>.part`; an existing `.part` is resumed with `Range: bytes=<n>-` (a 206 reply
     is appended, a 200 reply restarts from zero), with a tqdm progress bar and a timeout;
  2. verify: size (when known) and sha256 before the `.part` is renamed to its final name; on a mismatch the file is
     deleted and the error names expected vs got. An archive with no published checksum (sha256=None) is refused
     unless `allow_unverified=True` (`--allow-unverified`), which prints the sha256 it computed so it can be pinned;
  3. extract: tar/zip members are checked first (no absolute names, no `..`, no links leaving the folder, no device
     files, no zip symlinks) and one unsafe member refuses the whole archive;
  4. mark: `.extracted-<filename>` records a finished archive, so a second call sends no request at all.
"""
import hashlib
import http.client
import os
import stat
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass

from tqdm.auto import tqdm

from kpsemi.errors import DataError
from kpsemi.paths import data_dir

CHUNK = 1 << 20        # bytes per read
TIMEOUT = 60           # seconds without data before a request gives up


class DownloadError(DataError):
    """A download or verification failed; the message names the URL and says how to get the file by hand."""


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str | None     # published sha256 (hex) of the file; None: unknown (see allow_unverified)
    filename: str          # name of the downloaded file in the dataset folder
    size: int = None       # published size in bytes, when known
    extract: bool = True   # unpack it after the download
    into: str = ""         # subfolder of the dataset folder to unpack into ("" = the folder itself)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _manual(remote, dest_dir):
    return f"download {remote.url} by hand and put it at {os.path.join(dest_dir, remote.filename)}"


def _verify(remote, path, allow_unverified, delete_on_mismatch):
    """Raise DownloadError if `path` does not match the remote's size/sha256; returns the computed sha256."""
    def fail(msg):
        if delete_on_mismatch:
            os.remove(path)
        raise DownloadError(f"{remote.url}: {msg}" + ("; the download was deleted, run again to retry" if
                                                      delete_on_mismatch else f"; {path} was left as it is"))
    if remote.size is not None and os.path.getsize(path) != remote.size:
        fail(f"size mismatch for {remote.filename}: expected {remote.size} bytes, got {os.path.getsize(path)}")
    digest = sha256_of(path)
    if remote.sha256 is None:
        if not allow_unverified:  # fetch() refuses earlier; this guards direct callers
            raise DownloadError(f"{remote.url}: no published sha256 for {remote.filename}; pass "
                                "allow_unverified=True (--allow-unverified) to use it unverified")
        print(f"{remote.filename}: sha256 {digest} (UNVERIFIED: no published checksum; pin it in FILES)",
              file=sys.stderr)
    elif digest != remote.sha256.lower():
        fail(f"sha256 mismatch for {remote.filename}: expected {remote.sha256}, got {digest}")
    return digest


def fetch(remote, dest_dir, allow_unverified=False, progress=True, timeout=TIMEOUT):
    """Download `remote` into dest_dir (resuming a `.part`), verify it, return the path of the verified file."""
    if remote.sha256 is None and not allow_unverified:
        raise DownloadError(f"{remote.url}: {remote.filename} has no published sha256, so it cannot be verified. "
                            "Run again with --allow-unverified (allow_unverified=True) to download and use it "
                            "anyway; its computed sha256 is then printed so it can be pinned.")
    os.makedirs(dest_dir, exist_ok=True)
    final = os.path.join(dest_dir, remote.filename)
    if os.path.exists(final):  # downloaded before, or placed by hand: verify, never delete the user's file
        _verify(remote, final, allow_unverified, delete_on_mismatch=False)
        return final
    part = final + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "kpsemi-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        try:
            resp = urllib.request.urlopen(urllib.request.Request(remote.url, headers=headers), timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:   # range not satisfiable: the .part is already complete
                resp = None
            else:
                raise
        if resp is not None:
            with resp:
                if resp.status == 206:
                    start = (resp.headers.get("Content-Range") or "").replace("bytes ", "").split("-")[0]
                    if start != str(have):
                        raise DownloadError(f"{remote.url}: asked for bytes {have}- but the server sent "
                                            f"'{resp.headers.get('Content-Range')}'; delete {part} and run again")
                    mode = "ab"
                else:                    # 200: the server ignored the range, start again from zero
                    mode, have = "wb", 0
                length = resp.headers.get("Content-Length")
                total = have + int(length) if length is not None else remote.size
                with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=remote.filename, disable=not progress,
                                                 leave=False) as bar:
                    for block in iter(lambda: resp.read(CHUNK), b""):
                        f.write(block)
                        bar.update(len(block))
                if length is not None and os.path.getsize(part) != total:
                    raise DownloadError(f"{remote.url}: connection closed after {os.path.getsize(part)} of "
                                        f"{total} bytes; run again to resume, or {_manual(remote, dest_dir)}")
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # + timeouts, resets
        kept = f" ({os.path.getsize(part)} bytes kept in {part}; run again to resume)" if os.path.exists(part) else ""
        raise DownloadError(f"{remote.url}: download failed: {e!r}{kept}. Or {_manual(remote, dest_dir)}") from None
    _verify(remote, part, allow_unverified, delete_on_mismatch=True)
    os.replace(part, final)
    return final


def _inside(root, path):
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _unsafe_name(name):
    """Why an archive member name is unsafe, or None."""
    n = name.replace("\\", "/")
    if n.startswith("/") or (len(n) > 1 and n[1] == ":"):
        return "absolute path"
    if ".." in n.split("/"):
        return "'..' in the path"
    return None


def _check_tar(tf, archive, dest_dir):
    for m in tf.getmembers():
        target = os.path.join(dest_dir, m.name)
        why = _unsafe_name(m.name)
        if why is None and not _inside(dest_dir, target):
            why = "path leaves the destination folder"
        if why is None and (m.issym() or m.islnk()):
            # a symlink's target is relative to the link's folder, a hard link's to the archive root
            base = os.path.dirname(target) if m.issym() else dest_dir
            if _unsafe_name(m.linkname) == "absolute path" or not _inside(dest_dir, os.path.join(base, m.linkname)):
                why = f"link to '{m.linkname}' outside the destination folder"
        if why is None and (m.ischr() or m.isblk() or m.isfifo()):
            why = "device or fifo"
        if why is None and hasattr(tarfile, "data_filter"):  # the stdlib's own check (Python >= 3.12, 3.11.4+)
            try:
                tarfile.data_filter(m, dest_dir)
            except tarfile.FilterError as e:
                why = str(e)
        if why:
            raise DataError(f"{archive}: refusing to extract unsafe member '{m.name}': {why}")


def _check_zip(zf, archive, dest_dir):
    for info in zf.infolist():
        why = _unsafe_name(info.filename)
        if why is None and not _inside(dest_dir, os.path.join(dest_dir, info.filename)):
            why = "path leaves the destination folder"
        if why is None and stat.S_ISLNK(info.external_attr >> 16):
            why = "symlink entry"
        if why:
            raise DataError(f"{archive}: refusing to extract unsafe member '{info.filename}': {why}")


def extract(archive, dest_dir):
    """Unpack a tar (any compression) or zip into dest_dir after checking every member is safe."""
    os.makedirs(dest_dir, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_zip(zf, archive, dest_dir)
            zf.extractall(dest_dir)
        return
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as e:
        raise DataError(f"{archive}: not a readable tar or zip archive ({e})") from None
    with tf:
        _check_tar(tf, archive, dest_dir)
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest_dir, filter="data")
        else:  # every member passed _check_tar above
            tf.extractall(dest_dir)


def download_dataset(mod, root=None, allow_unverified=False, progress=True, files=None):
    """Fetch, verify and unpack every archive of a dataset under data/<name>/ (or root); returns the root. `mod` is
    the dataset's loader module (`kpsemi.data.SOURCES[name]`): its NAME, FILES and how_to_get().

    Idempotent: an archive whose `.extracted-<filename>` marker exists is skipped without any request."""
    root = root or os.path.join(data_dir(), mod.NAME)
    files = mod.FILES if files is None else files
    missing = [r.filename for r in files if r.sha256 is None and not os.path.exists(_marker(root, r))]
    if missing and not allow_unverified:  # refuse before downloading anything
        raise DownloadError(f"{mod.NAME}: no published sha256 for {', '.join(missing)}, so they cannot be "
                            f"verified. Run `python -m kpsemi data download {mod.NAME} --allow-unverified` to "
                            "download and use them anyway (their computed sha256 is printed so you can pin it).")
    for r in files:
        marker = _marker(root, r)
        if os.path.exists(marker):
            continue
        try:
            path = fetch(r, root, allow_unverified=allow_unverified, progress=progress)
        except DownloadError as e:
            raise DownloadError(f"{e}\n\n{mod.how_to_get()}") from None
        if r.extract:
            extract(path, os.path.join(root, r.into))
        with open(marker, "w") as f:
            f.write(f"{r.url}\nsha256 {r.sha256 or 'unverified'}\n")
    return root


def _marker(root, remote):
    return os.path.join(root, f".extracted-{remote.filename}" if remote.extract else f".fetched-{remote.filename}")
