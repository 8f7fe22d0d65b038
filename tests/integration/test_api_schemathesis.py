"""schemathesis against a real ``voxproof serve`` from its own OpenAPI document, every check on:
no server error, every response as the document says (status, content type, headers, schema),
schema-valid requests accepted and invalid ones refused (``scripts/schemathesis.toml`` lists
the refusals JSON Schema cannot express). A small seeded run; ``scripts/bench_api_fuzz.py``
runs a larger one. The text cap is lowered to 24 characters so the speech it really makes stays
short."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_api_fuzz


def test_schemathesis_finds_no_failure_against_serve(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    with bench_api_fuzz.serve(state, max_text_chars=24) as url:
        code, summary, output = bench_api_fuzz.run(url, tmp_path / "reports", examples=4,
                                                   seed=3)
        # TRACE (once answered with an HTML 501 page) gets the JSON error like any method.
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("TRACE", "/v1/speech")
        response = conn.getresponse()
        assert response.status == 405 and response.getheader("Allow") == "POST"
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read())["error"]["code"] == "method_not_allowed"
        # A path with a parameter is a known route too: another method is 405, not 404.
        conn.request("DELETE", "/v1/c2pa/manifests/urn:c2pa:00000000-0000-4000-8000-000000000000")
        response = conn.getresponse()
        assert response.status == 405 and response.getheader("Allow") == "GET"
        response.read()
        conn.close()
    assert summary.cases >= 40, output[-3000:]  # it really ran
    # Every check ran, and none failed.
    assert {"not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_schema_conformance", "response_headers_conformance",
            "positive_data_acceptance", "negative_data_rejection",
            "unsupported_method"} <= summary.checks_run
    assert not summary.failures, output[-6000:]
    assert summary.server_errors == 0 and not summary.errors
    assert code == 0, output[-6000:]
    # Both outcomes of each kind were seen: spoken and refused, verified and refused.
    statuses = {key.split(" ")[0] + " " + key.split(" ")[2] for key in summary.by_status}
    assert {"200 /v1/speech", "200 /v1/verify", "405 /v1/health"} <= statuses
    assert any(s.startswith("4") and s.endswith("/v1/speech") for s in statuses)
