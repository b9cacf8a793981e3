"""Your own code where agentfab takes a built-in: `package.module:Name` references, and the
suites, aggregators and topologies they name, with the built-ins' one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentfab import ConfigError
from agentfab.evals.suites import load_suite
from agentfab.references import build, is_reference, resolve
from tests.test_cli import agentfab

EXAMPLES = Path(__file__).parent.parent / "examples"


def write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


def test_a_reference_has_the_form_module_colon_name() -> None:
    assert is_reference("package.module:Name")
    assert is_reference("m:f.attr")
    for text in ("mc.jsonl", "module", "a:b:c", ":Name", "package.:Name", "C:/suite.csv"):
        assert not is_reference(text), text


def test_resolve_imports_from_the_folders_given(tmp_path: Path) -> None:
    write_module(tmp_path, "mine_resolve", "VALUE = 42\nclass Box:\n    inner = 'x'\n")
    assert resolve("mine_resolve:VALUE", folders=[tmp_path]) == 42
    assert resolve("mine_resolve:Box.inner", folders=[tmp_path]) == "x"


@pytest.mark.parametrize(
    ("source", "ref", "message"),
    [
        ("X = 1\n", "mine_missing_name:Y", r"'mine_missing_name' has no 'Y'"),
        ("Xylophone = 1\n", "mine_close_name:Xylophon", r"did you mean 'Xylophone'\?"),
        ("raise RuntimeError('broken\\n  at import')\n", "mine_broken:X",
         r"importing 'mine_broken' failed: RuntimeError: broken at import$"),
        ("import no_such_dependency_here\n", "mine_needs:X", r"no module named 'no_such_dependency_here'"),
    ],
)
def test_resolve_says_in_one_line_what_failed(
    tmp_path: Path, source: str, ref: str, message: str
) -> None:
    write_module(tmp_path, ref.partition(":")[0], source)
    with pytest.raises(ConfigError, match=message) as caught:
        resolve(ref, folders=[tmp_path])
    assert "\n" not in str(caught.value)


def test_a_module_that_is_not_there_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'nowhere_at_all:X': no module named 'nowhere_at_all'"):
        resolve("nowhere_at_all:X")


def test_build_passes_settings_and_names_the_ones_refused(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "mine_build",
        """
        def make(size: int = 1) -> list[int]:
            if size < 0:
                raise ValueError("size must be >= 0")
            return [0] * size
        """,
    )
    assert build("mine_build:make", {"size": 3}, folders=[tmp_path]) == [0, 0, 0]
    with pytest.raises(ConfigError, match=r"settings: .*unexpected keyword argument 'colour'"):
        build("mine_build:make", {"colour": "red"}, folders=[tmp_path])
    with pytest.raises(ConfigError, match=r"'mine_build:make': ValueError: size must be >= 0"):
        build("mine_build:make", {"size": -1}, folders=[tmp_path])


def test_the_example_suite_loads_checked_and_identified_by_its_records() -> None:
    suite = load_suite("examples.my_suite:arithmetic", seed=3)
    assert (suite.name, suite.kind, len(suite.items)) == ("arithmetic", "choice", 5)
    first = suite.items[0]
    assert first.choices[ord(first.answer) - ord("A")] == "5"  # 2 + 3, wherever it was shuffled
    assert load_suite("examples.my_suite:arithmetic", seed=4).sha256 == suite.sha256


def test_a_suite_of_your_own_is_checked_as_a_files_lines_are(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "mine_suites",
        """
        def good():
            return [{"question": "2 + 2?", "choices": ["4", "5"], "answer": "4"}]
        def other():
            return [{"question": "2 + 2?", "choices": ["4", "6"], "answer": "4"}]
        def no_answer():
            return [{"question": "q", "choices": ["a", "b"]}, {"question": "r"}]
        def not_dicts():
            return ["q"]
        def raises():
            raise OSError("the data server is down")
        """,
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert load_suite("mine_suites:good").sha256 != load_suite("mine_suites:other").sha256
        with pytest.raises(ConfigError, match=r"^mine_suites:no_answer:1: missing field 'answer'"):
            load_suite("mine_suites:no_answer")
        with pytest.raises(ConfigError, match=r"^mine_suites:not_dicts:1: expected a dict, got str"):
            load_suite("mine_suites:not_dicts")
        with pytest.raises(ConfigError, match=r"OSError: the data server is down"):
            load_suite("mine_suites:raises")
    finally:
        sys.path.remove(str(tmp_path))


def test_the_cli_names_a_suite_reference_that_does_not_resolve(tmp_path: Path) -> None:
    done = agentfab("eval", str(EXAMPLES / "star.yaml"), "--suite", "examples.my_suite:arithmetc",
                    "--out", str(tmp_path / "run"))
    assert done.returncode != 0
    assert "did you mean 'arithmetic'?" in done.stderr
    assert "Traceback" not in done.stderr
