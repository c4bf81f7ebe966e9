"""`stepaudio bench --json` keeps the DESIGN.md §5 contract (keys, units, consistent ratios) on the
tiny synthetic model for every weight format. This checks the report, not the speed: timings are
measured by the bench program itself, never asserted in tests."""
import json
import os
import subprocess

import pytest

BIN = os.environ.get("STEPAUDIO_BIN", "build/bin/stepaudio")


@pytest.mark.parametrize("quant", ["f32", "bf16", "q8", "q4"])
def test_bench_json_contract(quant):
    out = subprocess.run([BIN, "bench", "--synthetic", "tiny", "--quant", quant, "--audio-seconds", "1",
                          "--reps", "1", "--decode-tokens", "4", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    m = r["machine"]
    for key in ("read_gbps", "peak_fp32_gflops", "peak_bf16_gflops", "peak_int8_gops"):
        assert m[key] > 0, key
    assert r["quant"] == quant
    assert r["weight_bytes"] > 0 and r["peak_rss_bytes"] > 0 and r["end_to_end_ms"] > 0
    for stage, rate in (("decode", "tokens_per_s"), ("prefill", "tokens_per_s")):
        s = r[stage]
        assert s[rate] > 0 and s["ratio_to_bound"] > 0
        assert abs(s["ratio_to_bound"] - s[rate] / s["bound_tokens_per_s"]) < 1e-6 * s["ratio_to_bound"] + 1e-12
    assert r["prefill"]["tokens"] > 0
    enc = r["encoder"]
    assert enc["audio_seconds"] == 1 and enc["ms"] > 0
    assert abs(enc["ratio_to_bound"] - enc["bound_ms"] / enc["ms"]) < 1e-6 * enc["ratio_to_bound"] + 1e-12
    # The decode bound is the measured bandwidth over the bytes read per token.
    assert abs(r["decode"]["bound_tokens_per_s"] - m["read_gbps"] * 1e9 / r["weight_bytes"]) \
        < 1e-6 * r["decode"]["bound_tokens_per_s"]


def test_bench_rejects_bad_arguments():
    out = subprocess.run([BIN, "bench", "--synthetic", "nope", "--quant", "q8"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "error" in out.stderr
