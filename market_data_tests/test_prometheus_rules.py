"""The shipped Prometheus alerting rules (docs/alerts.rules.yml) are valid and behave as their
unit tests say (docs/alerts.rules.test.yml), by promtool itself (`make test` installs
Debian's prometheus package for it when missing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: `make test` installs it (prometheus)"
    return subprocess.run([promtool, *args], cwd=DOCS, capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid() -> None:
    done = _promtool("check", "rules", "alerts.rules.yml")
    assert done.returncode == 0 and "SUCCESS: 6 rules found" in done.stdout, (
        done.stdout + done.stderr
    )


def test_each_rule_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    done = _promtool("test", "rules", "alerts.rules.test.yml")
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def test_the_rules_name_only_metrics_the_api_exports() -> None:
    from market_data.api.metrics import PER_GROUP, PER_PROBLEM, PER_SERIES

    exported = {*PER_SERIES, *PER_PROBLEM, *PER_GROUP, "market_data_database_up", "up"}
    rules = yaml.safe_load((DOCS / "alerts.rules.yml").read_text())["groups"][0]["rules"]
    used = {
        name for rule in rules for name in re.findall(r"\b(market_data_[a-z_]+|up)\b", rule["expr"])
    }
    assert used and used <= exported
