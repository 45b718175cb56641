"""A short run of each fuzz family against a real server (the full run is
`python benchmarks/reliability.py --parts families`): no 5xx, no crash, bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability.fuzz_families import PEAK_RSS_LIMIT_MB, run_fuzz_families
from tests.redis_address import redis_url_for_tests

REDIS_URL = redis_url_for_tests(10)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize(
    ("family", "cases"),
    [("archive-headers", 40), ("member-names", 40), ("multipart-framing", 60), ("report-text", 2)],
)
def test_a_fuzz_family_finds_nothing(tmp_path: Path, family: str, cases: int) -> None:
    results = run_fuzz_families(
        work_dir=tmp_path,
        cases=cases,
        report_cases=cases,
        seed=11,
        families=(family,),
        redis_url=REDIS_URL,
    )
    result = results[family]
    assert result["cases"] == cases
    assert (result["status_5xx"], result["crashes"]) == (0, 0), result["failures"]
    assert result["peak_rss_mb_above_idle"] < PEAK_RSS_LIMIT_MB, result
