"""Your own code where agentfab takes a built-in: `package.module:Name` references, and the
suites, aggregators and topologies they name, with the built-ins' one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentfab import Agent, ConfigError, Orchestrator
from agentfab.evals.suites import load_suite
from agentfab.prompts import CONFIDENCE_INSTRUCTION
from agentfab.references import build, is_reference, resolve
from agentfab.topologies import star
from tests.scripted import ScriptedClient
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


# --- aggregators and topologies of your own, from YAML and from Python --------------------


AGGREGATOR_YAML = (EXAMPLES / "my_aggregator.yaml").read_text()
TOPOLOGY_YAML = (EXAMPLES / "my_topology.yaml").read_text()
AGGREGATOR_REF = 'ref: "my_aggregator:MostConfident", settings: {floor: 0.6}'
TOPOLOGY_REF = 'ref: "my_topology:pairs"\n  settings: {quorum: 2}'


def beside_its_modules(tmp_path: Path, text: str) -> Path:
    """A pipeline in a folder of its own, with copies of the example modules beside it."""
    for module in ("my_aggregator.py", "my_topology.py"):
        (tmp_path / module).write_text((EXAMPLES / module).read_text())
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_the_examples_name_their_own_code_and_validate() -> None:
    for example in ("my_aggregator.yaml", "my_topology.yaml"):
        done = agentfab("validate", str(EXAMPLES / example), cwd=Path("/"))  # found beside the file
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ('ref: "my_aggregator:MostConfidnt"', "'my_aggregator' has no 'MostConfidnt'; did you mean 'MostConfident'?"),
        ('ref: "my_aggregator:MostConfident", settings: {flor: 0.5}', "settings: MostConfident.__init__() got an unexpected keyword argument 'flor'"),
        ('ref: "my_aggregator:MostConfident", settings: {floor: 3}', "most_confident: floor must be in [0, 1], got 3"),
        ('ref: "collections:OrderedDict"', "is not an aggregator (it needs a `name`, `needs`, `models()`"),
        ('ref: "my_aggregator:Missing.Name"', "'my_aggregator' has no 'Missing'"),
        ('ref: "my aggregator"', "'my aggregator' is not a reference to Python code"),
        ('settings: {floor: 0.5}', "ref: Field required"),
    ],
)
def test_a_python_aggregator_that_cannot_be_made_is_one_line_at_its_line(
    tmp_path: Path, ref: str, message: str
) -> None:
    path = beside_its_modules(tmp_path, AGGREGATOR_YAML.replace(AGGREGATOR_REF, ref))
    done = agentfab("validate", str(path))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"agentfab: error: {path}:11: topology.aggregator")
    assert message in line


@pytest.mark.parametrize(
    ("ref", "where", "message"),
    [
        ('ref: "my_topology:pair"', "14: topology:", "has no 'pair'; did you mean 'pairs'?"),
        ('ref: "my_topology:pairs"\n  settings: {quorom: 2}', "14: topology:", "unexpected keyword argument 'quorom'"),
        ('ref: "my_topology:pairs"\n  settings: {quorum: 5}', "16: topology.settings.quorum:", "quorum 5 must be between 1 and its 2 inputs"),
    ],
)
def test_a_python_topology_that_cannot_be_made_is_one_line_at_its_line(
    tmp_path: Path, ref: str, where: str, message: str
) -> None:
    path = beside_its_modules(tmp_path, TOPOLOGY_YAML.replace(TOPOLOGY_REF, ref))
    done = agentfab("validate", str(path))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"agentfab: error: {path}:{where}"), line
    assert message in line


def test_a_python_topology_must_return_a_team(tmp_path: Path) -> None:
    write_module(tmp_path, "counted", "def agents(agents, name):\n    return len(agents)\n")
    text = TOPOLOGY_YAML.replace(TOPOLOGY_REF, 'ref: "counted:agents"')
    done = agentfab("validate", str(beside_its_modules(tmp_path, text)))
    assert done.returncode == 2
    assert "pipeline.yaml:15: topology.ref: 'counted:agents' returned a value of type int, not a Team" in done.stderr


def test_a_python_topologys_own_check_is_reported_at_the_topology(tmp_path: Path) -> None:
    odd = TOPOLOGY_YAML.replace("  - name: checker\n    count: 2", "  - name: checker\n    count: 1")
    done = agentfab("validate", str(beside_its_modules(tmp_path, odd)))
    assert done.returncode == 2
    assert "pipeline.yaml:14: topology: pairs needs an even number of agents, got 3" in done.stderr


def test_a_python_aggregators_judge_must_be_a_model_of_the_pipeline(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "judged",
        """
        from dataclasses import dataclass
        from agentfab.aggregators import BaseAggregator

        @dataclass(frozen=True)
        class Judged(BaseAggregator):
            judge: str = "judge"
            name: str = "judged"

            def models(self) -> list[str]:
                return [self.judge]

            async def aggregate(self, task, messages, ctx):
                raise AssertionError("never run")
        """,
    )
    text = AGGREGATOR_YAML.replace(AGGREGATOR_REF, 'ref: "judged:Judged"')
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    done = agentfab("validate", str(path))
    assert done.returncode == 2
    assert "topology.aggregator.ref: unknown name 'judge' (known: default)" in done.stderr


async def test_the_example_aggregator_from_python_votes_among_the_sure() -> None:
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from my_aggregator import MostConfident
    finally:
        sys.path.remove(str(EXAMPLES))
    replies = {"You are a.": "Answer: Rome\nConfidence: 0.9", "You are b.": "Answer: Paris\nConfidence: 0.2",
               "You are c.": "Answer: Paris\nConfidence: 0.3"}
    client = ScriptedClient(lambda request: (replies[request.messages[-1]["content"][-10:]], 0.0))
    team = star([Agent(name=n, role=f"You are {n}.") for n in "abc"], MostConfident(floor=0.6))
    result = await Orchestrator({"default": client}).run(team, "Capital of Italy?")
    assert result.answer == "rome"  # a plurality of all three would say paris
    assert all(CONFIDENCE_INSTRUCTION in r.messages[-1]["content"] for r in client.requests)
