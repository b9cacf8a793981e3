"""Generative self-aggregation: a model reads the candidates and writes a new, better answer.

After "LLMs can generate a better answer by aggregating their own responses":
instead of picking one of the candidates, the aggregating model (by default
the model that wrote them) sees them all and writes a fresh answer. It works
for free text and code, where no vote is possible, and its answer may be one
no candidate gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agentfab.aggregators.base import (
    AggregationContext,
    BaseAggregator,
    canonical,
    derive_seed,
    vote_stats,
)
from agentfab.answers import find_answer
from agentfab.errors import BackendError, ConfigError, ModelOutputError
from agentfab.llm import ChatRequest, ChatResponse
from agentfab.messages import Message, Task
from agentfab.prompts import FORMAT_INSTRUCTIONS, lettered

INSTRUCTION = (
    "Above are candidate answers to the question, written independently; some may be wrong. "
    "Weigh them critically and write one new answer that is better than each of them: "
    "keep what is right, correct what is wrong, and do not refer to the candidates."
)
CUT_MARK = "\n[...]\n"
MIN_CONTEXT_CHARS = 100
"""Below this a candidate's share would be too short to carry its answer."""


@dataclass(frozen=True)
class SelfAggregate(BaseAggregator):
    """The candidates go into one prompt; a model writes the answer that replaces them."""

    model: str | None = None
    """The synthesiser; by default the model that wrote most candidates (ties: alphabetical)."""
    max_tokens: int = 256
    """Longest new answer, in tokens."""
    temperature: float = 0.0
    context_chars: int = 12_000
    """Characters of candidate text the prompt may hold; longer candidates are cut to fit."""
    name: str = "self_aggregate"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"{self.name}: max_tokens must be at least 1, got {self.max_tokens}")
        if self.context_chars < MIN_CONTEXT_CHARS:
            raise ConfigError(
                f"{self.name}: context_chars must be at least {MIN_CONTEXT_CHARS}, "
                f"got {self.context_chars}"
            )

    def models(self) -> list[str]:
        return [self.model] if self.model else []

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        candidates = [m for m in canonical(messages) if m.ok and m.text.strip()]
        answers = [m.answer for m in candidates if m.answer is not None]
        details = vote_stats(answers) | {"candidates": len(candidates)}
        if not candidates:
            return ctx.decision(inputs=messages, text="", answer=None, details=details)
        model = self.model or _writers_model(candidates, ctx.node)
        request, truncated = self._request(task, candidates, model, ctx)
        details |= {"model": model, "truncated": truncated}
        try:
            response = await ctx.chat(model, request)
            text = _first_text(response, model)
        except (BackendError, ModelOutputError) as error:
            # A failed synthesis is this node's failure, as a failed call is an agent's: the
            # run goes on and readers downstream skip it.
            details["no_answer"] = f"the synthesiser's call failed: {error}"
            failed = ctx.decision(inputs=messages, text="", answer=None, details=details)
            return failed.model_copy(update={"model": model, "error": str(error)})
        found = find_answer(text, ctx.answer_format, task)
        answer = found.answer
        if found.reason is not None:
            details["no_answer"] = f"the synthesiser's reply: {found.reason}"
        details |= {
            "agrees_with_candidate": answer is not None and answer in answers,
            "finish_reason": response.completions[0].finish_reason,
        }
        usage = response.usage
        decision = ctx.decision(
            inputs=messages, text=text, answer=answer, details=details, usage=usage
        )
        # The new text has an author: a self-aggregation reading it (mixture-of-agents)
        # then knows which model to ask.
        return decision.model_copy(update={"model": model})

    def _request(
        self, task: Task, candidates: Sequence[Message], model: str, ctx: AggregationContext
    ) -> tuple[ChatRequest, list[str]]:
        """The synthesiser's request, and the ids of the candidates cut to fit the prompt."""
        texts = [m.text.strip() for m in candidates]
        fitted, cut = _fit(texts, self.context_chars)
        request = ChatRequest(
            messages=[{"role": "user", "content": _prompt(task, fitted, ctx.answer_format)}],
            model=model,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=derive_seed(ctx.seed, ctx.node, ctx.round),
        )
        return request, [candidates[i].id for i in cut]


def _writers_model(candidates: Sequence[Message], node: str) -> str:
    counts = Counter(m.model for m in candidates if m.model is not None)
    if not counts:
        raise ConfigError(
            f"node {node!r}: no input names the model that wrote it; "
            "give SelfAggregate a model to synthesise with"
        )
    return min(counts, key=lambda name: (-counts[name], name))


def _fit(texts: Sequence[str], budget: int) -> tuple[list[str], list[int]]:
    """Texts cut to share `budget` characters, and the indices of those that were cut.

    Short texts keep everything and leave their unused share to the longer
    ones, which split what is left evenly (water-filling).
    """
    allowance = [0] * len(texts)
    left = budget
    by_length = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    for rank, i in enumerate(by_length):
        allowance[i] = min(len(texts[i]), left // (len(texts) - rank))
        left -= allowance[i]
    cut = [i for i, text in enumerate(texts) if len(text) > allowance[i]]
    fitted = list(texts)
    for i in cut:
        fitted[i] = _cut(texts[i], max(allowance[i] - len(CUT_MARK), 2))
    return fitted, cut


def _cut(text: str, keep: int) -> str:
    # Keep both ends: the start frames the answer and the final answer line usually ends it.
    head = keep - keep // 2
    return text[:head].rstrip() + CUT_MARK + text[len(text) - keep // 2 :].lstrip()


def _prompt(task: Task, texts: Sequence[str], answer_format: str) -> str:
    """Question, options and the numbered candidates first (shared), the instruction last."""
    parts = [task.prompt.strip()]
    if task.choices:
        parts.append(lettered(task.choices))
    parts += [f"Candidate {i}:\n{text}" for i, text in enumerate(texts, start=1)]
    parts.append(INSTRUCTION)
    if FORMAT_INSTRUCTIONS.get(answer_format):
        parts.append(FORMAT_INSTRUCTIONS[answer_format])
    return "\n\n".join(parts)


def _first_text(response: ChatResponse, model: str) -> str:
    if not response.completions:
        raise ModelOutputError(f"synthesiser model {model!r} returned no completion")
    return response.completions[0].text
