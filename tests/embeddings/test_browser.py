"""Notebook 10's explorer in a real browser: JupyterLab on 127.0.0.1 and headless Chromium driven by Playwright.

The headless tests in test_explorer.py set the widgets' traits the way the browser does; this one checks that the
browser really sends them: it runs the notebook (smoke preset, from conftest.py) in JupyterLab, hovers a point of the
map and waits for its crop, lassoes a region and waits for the list of images, and switches models. It also checks
what a user sees: no broken-image icons, nothing moves when a detail or a selection appears, the detail picture is
shown at the size it was drawn.

Needs Chromium (/usr/bin/chromium: `apt-get install chromium`; Playwright's own browser download is not used) and
the `playwright` package. Without them the test skips, unless KPSEMI_REQUIRE_BROWSER=1 (CI), which makes that a
failure.
"""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = "10_embeddings_tsne.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK_TIMEOUT_S = 600         # the notebook trains two smoke runs unless an earlier test session left them
EVENT_TIMEOUT_MS = 20_000        # one hover / lasso / model switch, answered by the kernel


def _unavailable(reason):
    if os.environ.get("KPSEMI_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; KPSEMI_REQUIRE_BROWSER=1 requires the browser test")
    pytest.skip(reason)


def _chromium():
    for path in (os.environ.get("KPSEMI_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server of its own: temporary root, config, data, runtime, settings and workspace folders,
    a random port and token, no browser, no news or update checks. Yields its URL and token."""
    chromium = _chromium()
    if chromium is None:
        _unavailable("no Chromium found (/usr/bin/chromium or chromium on PATH; apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    base = tmp_path_factory.mktemp("jupyterlab")
    dirs = {k: base / k for k in ("root", "config", "data", "runtime", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir()
    shutil.copy(os.path.join(ROOT, "notebooks", NOTEBOOK), dirs["root"])
    notify = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notify.mkdir(parents=True)
    (notify / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
           "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),                     # the kernel imports the kpsemi
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}   # of this checkout
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={dirs['root']}",
           "--ServerApp.allow_root=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log_path = base / "jupyterlab.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(dirs["root"]))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"JupyterLab did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.3)
        yield {"url": url, "token": token, "chromium": chromium, "log": log_path}
    finally:
        proc.terminate()                                       # the server shuts its kernels down
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


# JavaScript run in the page ------------------------------------------------------------------------------------
POINTS_JS = """() => {
  // centres of drawn points: pixels of the map's 2-D canvas that are opaque with their four neighbours
  const cs = Array.from(document.querySelectorAll('.kpsemi-map canvas')).filter(c => c.width >= 100);
  let best = [];
  for (const c of cs) {
    const g = c.getContext('2d');
    if (!g) continue;
    const W = c.width, H = c.height, d = g.getImageData(0, 0, W, H).data, r = c.getBoundingClientRect();
    const on = (x, y) => d[(y * W + x) * 4 + 3] > 200, out = [];
    for (let y = 1; y < H - 1; y++) for (let x = 1; x < W - 1; x++)
      if (on(x, y) && on(x - 1, y) && on(x + 1, y) && on(x, y - 1) && on(x, y + 1))
        out.push([r.x + (x + 0.5) * r.width / W, r.y + (y + 0.5) * r.height / H]);
    if (out.length > best.length) best = out;
  }
  return best;
}"""
BOXES_JS = """(sels) => Object.fromEntries(sels.map(s => {
  const e = document.querySelector(s); if (!e) return [s, null];
  const r = e.getBoundingClientRect(); return [s, [r.x, r.y, r.width, r.height]]; }))"""
IMAGES_JS = """() => Array.from(document.querySelectorAll('.kpsemi-explorer img')).map(i => ({
  cls: i.className, shown: getComputedStyle(i).display !== 'none' && getComputedStyle(i).visibility !== 'hidden'
    && i.getBoundingClientRect().width > 0,
  natural: [i.naturalWidth, i.naturalHeight], client: [i.clientWidth, i.clientHeight]}))"""
SHOWN_JS = """(cls) => { const i = document.querySelector('img.' + cls), s = i && getComputedStyle(i);
  return !!i && s.visibility !== 'hidden' && s.display !== 'none' && i.complete && i.naturalWidth > 0; }"""
STEADY = (".kpsemi-model select", ".kpsemi-map", ".kpsemi-types", ".kpsemi-selection")


def _text(page, selector):
    return page.locator(selector).first.inner_text()


def _notebook_errors(page):
    return page.evaluate("""() => Array.from(document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'))
      .map(e => e.innerText.slice(-1500))""")


def _hover_a_point(page):
    """Move the mouse over drawn points (nearest the centre first) until the detail panel shows one."""
    pts = page.evaluate(POINTS_JS)
    assert pts, "the map's canvas has no drawn points"
    cx = sum(p[0] for p in pts) / len(pts)
    cy = sum(p[1] for p in pts) / len(pts)
    pts.sort(key=lambda p: (p[0] - cx) ** 2 + (p[1] - cy) ** 2)
    for x, y in pts[::max(1, len(pts) // 15)][:15]:
        page.mouse.move(x, y)
        try:
            page.wait_for_function(SHOWN_JS, arg="kpsemi-detail", timeout=5000)
            return
        except Exception:                                          # between two points: the next candidate
            continue
    pytest.fail(f"hovering {min(15, len(pts))} drawn points never showed a detail")


def _lasso(page):
    """Drag a lasso around the middle of the map; it ends away from its start (a drag, not a click)."""
    b = page.locator(".kpsemi-map canvas").first.bounding_box()
    at = lambda fx, fy: (b["x"] + fx * b["width"], b["y"] + fy * b["height"])  # noqa: E731
    path = [at(0.15, 0.15), at(0.85, 0.2), at(0.85, 0.85), at(0.2, 0.85), at(0.15, 0.4)]
    page.mouse.move(*path[0])
    page.mouse.down()
    for p in path[1:]:
        page.mouse.move(*p, steps=8)
    page.mouse.up()


def _same_place(before, after):
    """The boxes kept their position and width (a list may grow downwards)."""
    moved = {s: (before[s], after[s]) for s in before
             if before[s] is None or after[s] is None or max(abs(a - b) for a, b in zip(before[s][:3], after[s][:3])) > 1}
    assert not moved, f"the layout moved (selector: before, after): {moved}"


def _run_all(page):
    """Run > Run All Cells once the kernel is idle; accept JupyterLab's kernel dialog if it asks (it does when the
    click comes while the session is still connecting). Returns when the first code cell has started."""
    page.wait_for_function("() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent)",
                           timeout=90_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    started = ("() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
               ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))")
    deadline = time.time() + 30
    while not page.evaluate(started):
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        if time.time() > deadline:
            pytest.fail("Run All Cells did not start notebook 10")
        page.wait_for_timeout(200)


def test_explorer_hover_lasso_and_model_switch_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    t0 = time.time()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=lab["chromium"], args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{lab['url']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
            _run_all(page)
            try:
                page.wait_for_selector(".kpsemi-explorer", state="attached", timeout=NOTEBOOK_TIMEOUT_S * 1000)
            except Exception:
                pytest.fail(f"notebook 10 showed no explorer; its error outputs: {_notebook_errors(page)}")
            page.locator(".kpsemi-explorer").scroll_into_view_if_needed()
            page.wait_for_function(f"() => ({POINTS_JS})().length > 0", timeout=EVENT_TIMEOUT_MS)
            ran = time.time() - t0

            # before any hover: no image is shown, so no broken-image icon
            assert not [i for i in page.evaluate(IMAGES_JS) if i["shown"]]
            assert "lasso" in _text(page, ".kpsemi-selection")
            start = page.evaluate(BOXES_JS, list(STEADY))
            assert start[".kpsemi-model select"][2] >= 250, start            # the model names fit

            _hover_a_point(page)                                           # hover: the crop and heatmap
            detail = [i for i in page.evaluate(IMAGES_JS) if "kpsemi-detail" in i["cls"]][0]
            assert detail["natural"] == detail["client"], detail            # drawn at the size shown
            _same_place(start, page.evaluate(BOXES_JS, list(STEADY)))

            _lasso(page)                                                   # lasso: the list of images
            page.wait_for_function("() => document.querySelector('.kpsemi-selection').innerText"
                                   ".includes('images selected')", timeout=EVENT_TIMEOUT_MS)
            page.wait_for_function(SHOWN_JS, arg="kpsemi-thumbs", timeout=EVENT_TIMEOUT_MS)
            listed = _text(page, ".kpsemi-selection")
            assert int(listed.split()[0]) >= 2, listed
            thumbs = [i for i in page.evaluate(IMAGES_JS) if "kpsemi-thumbs" in i["cls"]][0]
            assert thumbs["shown"] and thumbs["natural"] == thumbs["client"] and thumbs["natural"][0] > 0, thumbs
            _same_place(start, page.evaluate(BOXES_JS, list(STEADY)))

            other = page.locator(".kpsemi-model select option").nth(1).inner_text()
            page.locator(".kpsemi-model select").select_option(index=1)     # another model: a fresh map
            page.wait_for_function(
                "(name) => document.querySelector('.kpsemi-status').innerText.startsWith(name + ':') &&"
                " !document.querySelector('.kpsemi-selection').innerText.includes('images selected')",
                arg=other, timeout=EVENT_TIMEOUT_MS)
            assert not page.evaluate(SHOWN_JS, "kpsemi-detail") and not page.evaluate(SHOWN_JS, "kpsemi-thumbs")
            _hover_a_point(page)                                           # its points answer hovers too
            _same_place(start, page.evaluate(BOXES_JS, list(STEADY)))
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))         # what the page showed, for the report
            print(f"browser test failed: screenshot {tmp_path / 'failure.png'}, JupyterLab log {lab['log']}")
            raise
        finally:
            browser.close()
    interactive = time.time() - t0 - ran
    print(f"browser test: notebook ran in {ran:.0f} s, interactions took {interactive:.0f} s")
