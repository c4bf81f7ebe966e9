"""`stepaudio eval` end to end: the tiny random checkpoint over a few real recordings of
../shared/data, compared with a real `stepaudio serve` as the OpenAI-compatible baseline.

The error rates in report.json are recomputed here by an independent implementation of the
normalization and edit distance of docs/EVAL.md (this file's own code, so a bug in the C++ shows),
the baseline's transcripts are checked against what the server answers for the same files, the
costs against the prices, and report.html is rendered in headless Chromium (network blocked) to
check that the script drew every chart from the data. Also: a malformed manifest line, a missing
audio file, and a baseline that is down.
"""
import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import time
import unicodedata

import pytest
import requests

from server_harness import BIN, HAVE_SHARED, SHARED, SLOW, Server, make_tiny_model

pytestmark = pytest.mark.skipif(not HAVE_SHARED,
                                reason="../shared/data is absent: the eval test needs its recordings")

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser",
                             shutil.which("chromium") or "") if p and os.path.exists(p)), None)
PRICE_PER_HOUR = 0.75
PRICE_PER_MINUTE = 0.004
# One English item, one Chinese item with Chinese numerals in its reference, one emotion label.
PICK = ["audio/stepaudio2_assets/give_me_a_brief_introduction_to_the_great_wall.wav",
        "audio/stepaudio2_assets/multi_turn_round2.wav",
        "audio/emotion/chuan_F22_angry_20012.wav"]


# ---- the documented normalization and scoring, written again (docs/EVAL.md) ------------------

DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
          "八": 8, "九": 9}
UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10**4, "亿": 10**8}


def numeral_value(run):
    """The value of a run with units, or None when it is not a well-formed numeral."""
    total = section = last_unit = section_unit = last_big = 0
    pending, after_zero = None, False
    for ch in run:
        if ch in DIGITS:
            if pending:  # a non-zero digit is waiting: two digits in a row
                return None
            pending = DIGITS[ch]
            after_zero = after_zero or pending == 0
        elif UNITS[ch] < 10**4:
            u = UNITS[ch]
            if pending is None:
                if u != 10 or section:
                    return None
                pending = 1
            if pending == 0 or (section_unit and u >= section_unit):
                return None
            section += pending * u
            section_unit = last_unit = u
            pending, after_zero = None, False
        else:
            u = UNITS[ch]
            if pending:
                section += pending
            pending = None
            if u == 10**4:
                if section == 0 or last_big == 10**4:
                    return None
                total += section * 10**4
            else:
                if last_big == 10**8 or (section == 0 and last_big != 10**4):
                    return None
                if total + section >= 10**8:
                    return None
                total = (total + section) * 10**8
            section = section_unit = 0
            last_unit = last_big = u
            after_zero = False
    if pending:
        section += pending * (last_unit // 10) if (not after_zero and last_unit >= 100) else pending
    return total + section


def numerals_to_digits(text):
    out, i = [], 0
    while i < len(text):
        if text[i] not in DIGITS and text[i] not in UNITS:
            out.append(text[i])
            i += 1
            continue
        j = i
        while j < len(text) and (text[j] in DIGITS or text[j] in UNITS):
            j += 1
        run = text[i:j]
        while run and run[0] in UNITS and run[0] != "十":  # 千万, 万一: words
            out.append(run[0])
            run = run[1:]
        if run:
            value = numeral_value(run) if any(c in UNITS for c in run) else None
            out.append(str(value) if value is not None else
                       "".join(str(DIGITS[c]) if c in DIGITS else c for c in run))
        i = j
    return "".join(out)


def normalize(text):
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKD", text).casefold())
    cps = numerals_to_digits(text)
    cat = unicodedata.category
    out, pending_space = [], False
    for i, ch in enumerate(cps):
        prev = cps[i - 1] if i > 0 else ""
        nxt = cps[i + 1] if i + 1 < len(cps) else ""
        in_word = bool(prev and nxt) and cat(prev)[0] == "L" and cat(nxt)[0] == "L"
        in_number = bool(prev and nxt) and cat(prev) == "Nd" and cat(nxt) == "Nd"
        if ch in "'\u2019" and in_word or ch == "," and in_number:
            continue
        c = cat(ch)
        action = "space" if c[0] in "PSZ" or c == "Cc" else "drop" if c == "Cf" else "keep"
        if ch == "." and in_number:
            action = "keep"
        if action == "drop":
            continue
        if action == "space":
            pending_space = bool(out)
            continue
        if pending_space:
            out.append(" ")
        pending_space = False
        out.append(ch)
    return "".join(out)


CJK_RANGES = [(0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029),
              (0x3031, 0x3035), (0x3038, 0x303C), (0x3040, 0x30FF), (0x3100, 0x31BF),
              (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F),
              (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x1B000, 0x1B16F),
              (0x20000, 0x3134F)]
CHAR_LANGS = {"zh", "ja", "ko", "yue", "wuu", "cmn", "nan", "hak", "th"}


def is_cjk(ch):
    return any(a <= ord(ch) <= b for a, b in CJK_RANGES)


def unit_of(norm, lang):
    chars = [c for c in norm if c != " "]
    if not chars:
        return None
    cjk = any(is_cjk(c) for c in chars)
    other = any(not is_cjk(c) and unicodedata.category(c)[0] == "L" for c in chars)
    if cjk:
        return "mer" if other else "cer"
    return "cer" if re.split("[-_]", lang)[0].lower() in CHAR_LANGS else "wer"


def units(norm, unit):
    if unit == "wer":
        return norm.split()
    out, word = [], ""
    for c in norm:
        if c == " " or unit == "cer" or is_cjk(c):
            if word:
                out.append(word)
            word = ""
            if c != " ":
                out.append(c)
        else:
            word += c
    if word:
        out.append(word)
    return out


def edit_counts(ref, hyp):
    """Levenshtein; among the shortest alignments the one with the fewest substitutions."""
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]  # (edits, S, D, I)
    for r in range(1, len(ref) + 1):
        cur = [(r, 0, r, 0)]
        for j in range(1, len(hyp) + 1):
            d = prev[j - 1]
            same = ref[r - 1] == hyp[j - 1]
            cands = [(d[0] + (not same), d[1] + (not same), d[2], d[3]),
                     (prev[j][0] + 1, prev[j][1], prev[j][2] + 1, prev[j][3]),
                     (cur[j - 1][0] + 1, cur[j - 1][1], cur[j - 1][2], cur[j - 1][3] + 1)]
            cur.append(min(cands, key=lambda c: (c[0], c[1])))
        prev = cur
    _, s, d, i = prev[-1]
    return s, d, i


def score(reference, hypothesis, lang):
    r, h = normalize(reference), normalize(hypothesis)
    unit = unit_of(r, lang) or unit_of(h, lang) or ("cer" if lang in CHAR_LANGS else "wer")
    s, d, i = edit_counts(units(r, unit), units(h, unit))
    return {"unit": unit, "reference_norm": r, "hypothesis_norm": h, "substitutions": s,
            "deletions": d, "insertions": i, "reference_units": len(units(r, unit))}


def test_python_twin_matches_the_documented_examples():
    assert normalize("九月十九号") == normalize("9月19号") == "9月19号"
    assert normalize("二〇二六年") == "2026年"
    assert numerals_to_digits("一百零五 两千 三千五 千万 三四十") == "105 2000 3500 千万 34十"
    assert normalize("ＨＥＬＬＯ，Don't  1,000!") == "hello dont 1000"
    assert edit_counts("the cat sat on the mat".split(), "the cat sit on mat now".split()) == (1, 1, 1)
    assert score("我用iPhone拍照", "我用 iphone 拍的照", "zh")["unit"] == "mer"


# ---- the run ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny_eval"))


@pytest.fixture(scope="module")
def baseline(tiny, tmp_path_factory):
    with Server(tiny, tmp_path_factory.mktemp("eval_serve"), "--parallel", "1") as s:
        yield s


def write_manifest(folder):
    """The picked lines of the shared manifest, paths made relative to `folder`, plus a missing file."""
    by_path = {}
    with open(os.path.join(SHARED, "manifest.jsonl"), encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            by_path[item["path"]] = item
    lines = []
    for p in PICK:
        item = dict(by_path[p])
        item["path"] = os.path.relpath(os.path.join(SHARED, p), folder)
        lines.append(item)
    lines.insert(2, {"path": "missing.wav", "lang": "en", "reference": "nothing here"})
    path = os.path.join(folder, "manifest.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for item in lines:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path, lines


@pytest.fixture(scope="module")
def run(tiny, baseline, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("eval_run"))
    manifest, lines = write_manifest(folder)
    report = os.path.join(folder, "report")
    port = baseline.base.rsplit(":", 1)[1]
    t0 = time.time()
    r = subprocess.run([BIN, "eval", "--model", tiny, "--manifest", manifest, "--report", report,
                        "--compare", "openai://127.0.0.1:%s" % port, "--compare-model", "whisper-1",
                        "--price-per-hour", str(PRICE_PER_HOUR), "--compare-price-per-minute",
                        str(PRICE_PER_MINUTE), "--max-tokens", "96", "--json"],
                       capture_output=True, timeout=300 * SLOW)
    wall = time.time() - t0
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    with open(os.path.join(report, "report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    return {"report": rep, "dir": report, "lines": lines, "proc": r, "wall": wall}


def test_items_and_their_error_rates_recomputed(run):
    rep, lines = run["report"], run["lines"]
    assert rep["items_total"] == len(lines) == 4
    assert set(rep["systems"]) == {"ours", "baseline"}
    sums, checked = {}, set()
    for item, line in zip(rep["items"], lines):
        assert item["path"] == line["path"] and item["reference"] == line.get("reference")
        for key in ("ours", "baseline"):
            o = item[key]
            if line["path"] == "missing.wav":
                assert not o["ok"] and o["error"]["code"] == "io_error", o
                continue
            assert o["ok"], o
            if line.get("reference") is None:
                assert "score" not in o
                continue
            mine = score(line["reference"], o["transcript"], line["lang"] or "")
            assert o["score"]["reference_norm"] == mine["reference_norm"]
            assert o["score"]["unit"] == mine["unit"]
            edits = mine["substitutions"] + mine["deletions"] + mine["insertions"]
            # The random model's text may hold characters newer than Python's Unicode tables
            # (unassigned there, maybe symbols in utf8proc's): those items are checked by sums only.
            if not any(unicodedata.category(c) == "Cn" for c in o["transcript"]):
                for field, value in mine.items():
                    assert o["score"][field] == value, (key, line["path"], field, o["score"], mine)
                assert o["score"]["rate"] == pytest.approx(edits / mine["reference_units"])
                checked.add(key)
            else:
                c = o["score"]
                edits = c["substitutions"] + c["deletions"] + c["insertions"]
            acc = sums.setdefault((key, mine["unit"]), [0, 0])
            acc[0] += edits
            acc[1] += mine["reference_units"]
    assert checked == {"ours", "baseline"}
    assert {u for _, u in sums} == {"wer", "cer"}  # the English and the Chinese item
    for (key, unit), (edits, n) in sums.items():  # corpus rate = sum of edits / sum of units
        a = rep["systems"][key]["accuracy"][unit]
        assert a["substitutions"] + a["deletions"] + a["insertions"] == edits
        assert a["reference_units"] == n and a["rate"] == pytest.approx(edits / n)
    zh = rep["items"][1]["ours"]["score"]
    assert "9月19号" in zh["reference_norm"]  # 九月十九号 through the Chinese numeral rules


def test_baseline_transcripts_are_the_servers(run, baseline):
    for item, line in zip(run["report"]["items"], run["lines"]):
        if line["path"] == "missing.wav":
            continue
        with open(os.path.join(os.path.dirname(run["dir"]), line["path"]), "rb") as f:
            r = baseline.post("/v1/audio/transcriptions",
                              files={"file": (os.path.basename(line["path"]), f.read())},
                              data={"model": "whisper-1", "response_format": "json"})
        assert r.status_code == 200, r.text
        assert item["baseline"]["transcript"] == r.json()["text"]
        assert item["baseline"]["attempts"] == 1 and item["baseline"]["wall_ms"] > 0


def test_emotion_latency_and_cost(run):
    rep = run["report"]
    ours, base = rep["systems"]["ours"], rep["systems"]["baseline"]
    assert base["emotion"] is None and ours["emotion"]["items"] == 1
    angry = rep["items"][3]
    assert angry["emotion_label"] == "angry"
    predicted = angry["ours"]["emotion"]
    e = ours["emotion"]
    assert e["labels"] == sorted({"angry", predicted})
    assert sum(map(sum, e["confusion"])) == 1
    assert e["confusion"][e["labels"].index("angry")][e["labels"].index(predicted)] == 1
    assert e["accuracy"] == (1.0 if predicted == "angry" else 0.0)
    ok = [it for it in rep["items"] if it["ours"]["ok"]]
    assert ours["items_ok"] == base["items_ok"] == 3 and ours["items_failed"] == 1
    walls = sorted(it["ours"]["wall_ms"] for it in ok)
    assert ours["latency_ms"]["wall"]["p50"] == pytest.approx(walls[1])
    assert ours["latency_ms"]["wall"]["p95"] == pytest.approx(walls[1] + 0.9 * (walls[2] - walls[1]))
    for stage in ("decode", "mel", "encode", "prefill", "generate", "total"):
        assert ours["latency_ms"][stage]["n"] == 3
    audio = sum(it["audio_seconds"] for it in ok)
    expected_audio = sum(line.get("duration_s", 0) for line in run["lines"] if line["path"] != "missing.wav")
    assert audio == pytest.approx(expected_audio, abs=0.05)
    compute = sum(walls) / 1000
    assert ours["rtf"] == pytest.approx(compute / audio)
    # Ours: compute time x price per hour; the baseline: audio minutes x price per minute.
    assert ours["cost"]["per_request"] == pytest.approx(compute / 3 * PRICE_PER_HOUR / 3600)
    assert ours["cost"]["per_audio_hour"] == pytest.approx(PRICE_PER_HOUR * compute / audio)
    assert base["cost"]["per_request"] == pytest.approx(audio / 3 / 60 * PRICE_PER_MINUTE)
    assert base["cost"]["per_audio_hour"] == pytest.approx(60 * PRICE_PER_MINUTE)
    for it in ok:
        assert it["ours"]["cost"] == pytest.approx(it["ours"]["wall_ms"] / 1000 * PRICE_PER_HOUR / 3600)
        assert it["baseline"]["cost"] == pytest.approx(it["audio_seconds"] / 60 * PRICE_PER_MINUTE)
    assert [c["system"] for c in rep["cost_table"]] == ["ours", "baseline"]


def test_json_summary_markdown_and_progress(run):
    summary = json.loads(run["proc"].stdout)
    assert "items" not in summary and summary["systems"] == run["report"]["systems"]
    err = run["proc"].stderr.decode()
    assert len(re.findall(r"^eval: \d/4 ", err, re.M)) == 4  # not a terminal: one line per item
    assert "missing.wav: ours error [io_error]" in err
    with open(os.path.join(run["dir"], "report.md"), encoding="utf-8") as f:
        md = f.read()
    assert "| items ok / failed | 3 / 1 | 3 / 1 |" in md
    assert re.search(r"^\| ours: .* \| compute time \| \$0\.750 / hour \|", md, re.M)
    assert re.search(r"^\| baseline: whisper-1 at .* \| audio minutes \| \$0\.00400 / audio minute \| ",
                     md, re.M)
    for line in run["lines"]:
        assert "| " + line["path"] + " |" in md
    assert "## Emotion confusion: ours" in md


class _Charts(html.parser.HTMLParser):
    """Counts the SVG elements under each chart container of the rendered DOM."""

    def __init__(self):
        super().__init__()
        self.stack, self.charts, self.titles = [], {}, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        chart = a.get("id") if a.get("class") == "chart" else None
        self.stack.append((tag, chart))
        current = next((c for _, c in reversed(self.stack) if c), None)
        if current:
            c = self.charts.setdefault(current, {"marks": None, "rect": 0, "legend": 0, "path": 0})
            if tag == "svg":
                c["marks"] = int(a["data-marks"])
            elif tag == "rect":
                c["legend" if a.get("class") == "legend" else "rect"] += 1
            elif tag == "path":
                c["path"] += 1
            if tag == "title":
                self.titles.setdefault(current, []).append("")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "title":
            current = next((c for _, c in reversed(self.stack) if c), None)
            if current:
                self.titles[current][-1] += data

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def test_html_is_offline_and_its_charts_are_drawn(run, tmp_path):
    path = os.path.join(run["dir"], "report.html")
    with open(path, encoding="utf-8") as f:
        page = f.read()
    for needle in ("http://", "https://", "src=", "href=", "url(", "@import", "<link", "fetch("):
        assert needle not in page, needle
    static = page[:page.index("<script")]
    assert "<svg" not in static and "<rect" not in static  # the charts come from the script
    if not CHROMIUM:
        pytest.skip("chromium is not installed (scripts/setup installs it): report.html not rendered")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--host-resolver-rules=MAP * ~NOTFOUND", "--user-data-dir=" + str(tmp_path),
                        "--virtual-time-budget=5000", "--dump-dom", "file://" + path],
                       capture_output=True, timeout=120 * SLOW)
    dom = r.stdout.decode("utf-8", errors="replace")
    assert 'data-rendered="1"' in dom, r.stderr.decode(errors="replace")[-2000:]
    p = _Charts()
    p.feed(dom)
    rep = run["report"]
    charts = p.charts
    for name in ("chart-latency", "chart-stages", "chart-items", "chart-confusion", "chart-cost"):
        assert name in charts and charts[name]["marks"] > 0, (name, charts.get(name))
        assert charts[name]["rect"] == charts[name]["marks"], (name, charts[name])
    # Latency histogram: the bars of each system add up to its successful requests.
    per_system = {}
    for t in p.titles["chart-latency"]:
        m = re.match(r".* (ours|baseline): ([\d.]+)$", t)
        if m:
            per_system[m.group(1)] = per_system.get(m.group(1), 0) + float(m.group(2))
    assert per_system == {"ours": 3, "baseline": 3}
    assert charts["chart-latency"]["path"] >= 1 + 4  # axes + p50/p95 markers of both systems
    scored = sum(1 for it in rep["items"] for k in ("ours", "baseline")
                 if it[k]["ok"] and it[k].get("score") and it[k]["score"]["rate"] is not None)
    assert charts["chart-items"]["marks"] == scored == 4
    n = len(rep["systems"]["ours"]["emotion"]["labels"])
    assert charts["chart-confusion"]["marks"] == n * n
    assert charts["chart-cost"]["marks"] == len(rep["cost_table"]) == 2
    stages = len(rep["systems"]["ours"]["latency_ms"])
    assert charts["chart-stages"]["marks"] == 2 * stages


# ---- errors ----------------------------------------------------------------------------------

def test_malformed_manifest_line_is_named(tmp_path):
    m = tmp_path / "manifest.jsonl"
    m.write_text('{"path": "a.wav", "lang": "en"}\n{"path": "b.wav", "lang": \n', encoding="utf-8")
    r = subprocess.run([BIN, "eval", "--model", str(tmp_path / "no-model"), "--manifest", str(m)],
                       capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.startswith("stepaudio: error [invalid_argument]: ") and "manifest.jsonl:2: not valid JSON" in err
    m.write_text('{"lang": "en"}\n', encoding="utf-8")
    r = subprocess.run([BIN, "eval", "--model", str(tmp_path), "--manifest", str(m)],
                       capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 2 and b'manifest.jsonl:1: "path"' in r.stderr


def test_baseline_down_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = tmp_path / "manifest.jsonl"
    m.write_text(json.dumps({"path": os.path.join(SHARED, PICK[0]), "lang": "en", "reference": "x"}) + "\n")
    t0 = time.time()
    r = subprocess.run([BIN, "eval", "--manifest", str(m), "--compare", "openai://127.0.0.1:%d" % port],
                       capture_output=True, timeout=60 * SLOW)
    assert time.time() - t0 < 20 * SLOW
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("stepaudio: error [io_error]: the baseline openai://127.0.0.1:%d" % port), err
    assert "unreachable" in err
    r = subprocess.run([BIN, "eval", "--manifest", str(m), "--compare", "ftp://x"],
                       capture_output=True, timeout=30 * SLOW)
    assert r.returncode == 2 and b"--compare must be" in r.stderr
