"""GET / of `stepaudio serve`: the one-page web UI (server/web/index.html) as the server sends it.

Open without a key and without taking rate-limit tokens; HTML with a Content-Security-Policy whose
script and style hashes are those of the page's own inline blocks; nosniff, no referrer, no-cache;
HEAD answers the headers only; no external URL anywhere in the page; the other routes unchanged
(an unknown path is still 401 without a key, 404 with one; POST / is 405). The page in a browser:
tests/browser (browser_web_ui).
"""
import base64
import hashlib
import re

import pytest
import requests

from server_harness import HAVE_SHARED, Server, make_tiny_model

pytestmark = pytest.mark.skipif(not HAVE_SHARED, reason="../shared/data is absent: the tiny model needs it")

KEY = "sk-web-alpha-0123456789"
KEY2 = "sk-web-bravo-9876543210"
BURST = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("web_ui")
    model = make_tiny_model(d / "model")
    keys = d / "keys.txt"
    keys.write_text(KEY + "\n" + KEY2 + "\n")
    # A bucket of BURST tokens that does not refill within the test (one token per 1000 s).
    with Server(model, d, "--api-keys", keys, "--rate-limit", "0.001", "--rate-burst", BURST,
                key=KEY, wait_ready=False) as s:
        yield s


def blocks(html, tag):
    """The text of each <tag> block outside comments, as the browser hashes it."""
    html = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    return re.findall(r"<%s>(.*?)</%s>" % (tag, tag), html, flags=re.S)


def csp_hash(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_page_is_open_html_with_strict_headers(server):
    r = requests.get(server.base + "/", timeout=10)  # no Authorization header
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-cache"
    assert r.headers["X-Request-Id"]
    html = r.content.decode("utf-8")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert 'id="job-form"' in html

    csp = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'self'"
    scripts, styles = blocks(html, "script"), blocks(html, "style")
    assert len(scripts) == 1 and len(styles) == 1
    assert csp["script-src"] == csp_hash(scripts[0])  # no 'unsafe-inline', nothing else
    assert csp["style-src"] == csp_hash(styles[0])
    assert csp["object-src"] == "'none'" and csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    assert "unsafe" not in r.headers["Content-Security-Policy"]


def test_page_has_no_external_reference(server):
    html = requests.get(server.base + "/", timeout=10).text
    assert "http://" not in html and "https://" not in html
    for attr, value in re.findall(r"""\b(src|href|action)\s*=\s*["']([^"']*)["']""", html):
        assert not value.startswith("//"), (attr, value)
        assert value.startswith(("#", "/", "data:")) or ":" not in value, (attr, value)
    # Every script-made request goes to this server: fetch() of a path only.
    targets = re.findall(r"""\bfetch\(\s*([`"'])(.)""", html)
    assert targets and all(second == "/" for _, second in targets), targets
    # Inline handlers and style attributes would be refused by the CSP: the markup has none.
    markup = re.sub(r"<!--.*?-->|<(script|style)>.*?</\1>", "", html, flags=re.S)
    assert not re.search(r"""<[^>]*\son[a-z]+\s*=""", markup)
    assert not re.search(r"""<[^>]*\sstyle\s*=""", markup)


def test_head_answers_the_headers_only(server):
    get = requests.get(server.base + "/", timeout=10)
    s = requests.Session()
    head = s.head(server.base + "/", timeout=10)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(get.content))
    assert head.headers["Content-Security-Policy"] == get.headers["Content-Security-Policy"]
    # The connection is still in step: the next request on it gets its own answer.
    assert s.get(server.base + "/healthz", timeout=10).json() == {"status": "ok"}


def test_page_takes_no_rate_limit_tokens_and_other_routes_unchanged(server):
    for _ in range(2 * BURST):  # with and without a key: never limited
        assert requests.get(server.base + "/", timeout=10).status_code == 200
        assert server.get("/", key=KEY2).status_code == 200
    for _ in range(BURST):
        assert server.get("/v1/models", key=KEY2).status_code == 200
    limited = server.get("/v1/models", key=KEY2)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"

    # Other paths still need a key first, then are 404/405 as before.
    nope = requests.get(server.base + "/nope", timeout=10)
    assert nope.status_code == 401 and nope.json()["error"]["code"] == "unauthorized"
    assert server.get("/nope").json()["error"]["code"] == "not_found"
    assert requests.post(server.base + "/", timeout=10).status_code == 401
    post = server.post("/")
    assert post.status_code == 405 and post.json()["error"]["code"] == "method_not_allowed"
    assert requests.get(server.base + "/index.html", timeout=10).status_code == 401

    metrics = server.get("/metrics").text
    assert re.search(r'stepaudio_http_requests_total\{route="GET /",status="200"\} [1-9]', metrics)
