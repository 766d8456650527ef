"""The short soak: 300 recipients through a faulty server in its own process, 3 SIGKILLs.

The same scenario as `bench/soak.py` (10,000 recipients, 10 kills), small enough for `make test`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import run_soak


@pytest.mark.slow
def test_killed_sender_skips_nobody_and_sends_nobody_twice(tmp_path: Path) -> None:
    # Throttled, so that each kill falls while messages are on the wire however fast the
    # machine: at most 50 in a burst and 50 a second, each run is killed before it is done.
    result = run_soak(
        tmp_path,
        recipients=300,
        kills=3,
        concurrency=4,
        seed=7,
        kill_after=(0.5, 2.0),
        per_second=50,
    )
    assert result.kills == 3
    assert result.faults > 0  # the server did misbehave
    assert result.skipped == 0
    assert result.duplicates_among_sent == 0
    assert result.sent_without_copy == 0
    assert result.sent + result.failed + result.uncertain == 300
    assert result.uncertain_after_kill <= result.concurrency * result.kills
    assert result.uncertain_listed == result.uncertain  # every uncertain one is in `status`
    assert result.duplicates == 0  # uncertain ones are never resent either
