"""The viewer's page in a real headless Chromium, on runs of the embedded model: opened
from disk, one element per node, clicks that show messages, the wrong-items filter, no
console error. Screenshots go to build/test-artifacts/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.browser import chromium, console_errors

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_embedded", "real_browser")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"


def cli(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentfab.cli", *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr


def fills_follow_answers(driver: Any) -> None:
    """Nodes with the same answer share a colour; different answers differ."""
    painted = driver.execute_script(
        "return [...document.querySelectorAll('#graph g[id^=node-]')]"
        ".map(g => [g.dataset.answer, g.querySelector('path').style.fill])"
    )
    assert all(fill for _, fill in painted), painted
    colour = {}
    for answer, fill in painted:
        assert colour.setdefault(answer, fill) == fill, painted
    answered = {a: f for a, f in colour.items() if a != "none"}
    assert len(set(answered.values())) == len(answered), painted


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / name))


def test_an_eval_run_s_page_in_a_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = tmp_path / "run"
    cli("eval", str(ROOT / "examples/eval_mc.yaml"), "--suite", "gpqa-project",
        "--limit", "3", "--out", str(run), "--no-progress")  # fmt: skip
    cli("view", str(run))
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    nodes = json.loads((run / "run.json").read_text())["shape"]["nodes"]
    with chromium() as driver:
        driver.get((run / "view.html").as_uri())
        assert len(driver.find_elements(By.CSS_SELECTOR, "#graph g[id^=node-]")) == len(nodes)
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.item")
        assert len(rows) == len(records)
        rows[1].click()
        second = records[1]
        assert driver.find_element(By.ID, "item-title").text == f"Item {second['item']}"
        fills_follow_answers(driver)
        driver.find_element(By.ID, "node-0").click()  # the first solver
        first_agent = second["agents"][0]
        selection = driver.find_element(By.ID, "selection").text
        assert f"{first_agent['id']}:" in selection
        messages = driver.find_element(By.ID, "messages").text
        assert all(f"{a['id']}:" in messages for a in second["agents"])
        decision = driver.find_element(By.ID, "decision").text
        assert "votes" in decision and "right answer: " + second["reference"] in decision
        shot(driver, "viewer-eval.png")
        driver.find_element(By.ID, "only-wrong").click()
        wrong = [r for r in records if not r["team"]["correct"]]
        assert len(driver.find_elements(By.CSS_SELECTOR, "tr.item")) == len(wrong)
        assert console_errors(driver) == []


def test_a_trace_s_page_in_a_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    trace = tmp_path / "star.jsonl"
    cli("run", str(ROOT / "examples/star.yaml"), "--trace", str(trace))
    cli("view", str(trace), "--out", str(tmp_path / "page.html"))
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    team = lines[0]
    messages = [line for line in lines if line["event"] == "message"]
    with chromium() as driver:
        driver.get((tmp_path / "page.html").as_uri())
        assert len(driver.find_elements(By.CSS_SELECTOR, "#graph g[id^=node-]")) == len(
            team["nodes"]
        )
        fills_follow_answers(driver)
        # An edge is a thin line: its click is dispatched rather than aimed.
        index = team["edges"].index(["worker-2", "hub"])
        driver.execute_script(
            f"document.getElementById('edge-{index}').dispatchEvent(new MouseEvent('click'))"
        )
        selection = driver.find_element(By.ID, "selection").text
        assert "worker-2 → hub" in selection and "worker-2@1:" in selection
        assert "worker-1@1:" not in selection
        timeline = driver.find_elements(By.CSS_SELECTOR, "#timeline tr")
        assert len(timeline) == 1 + len(messages) + 1  # the header, one per call, the totals
        shot(driver, "viewer-trace.png")
        assert console_errors(driver) == []
