"""Prompt layout: what the whole team shares comes first, each agent's role last.

A vLLM server caches prompt prefixes; putting the task, the options and the
previous answers before the agent-specific text lets every agent of a step
reuse the same cached prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentfab.agent import Agent
from agentfab.messages import Message, Task

FORMAT_INSTRUCTIONS = {
    "letter": "Reply with the letter of the correct option, as: Answer: <letter>",
    "number": "Reply with the number, as: Answer: <number>",
    "short": "Reply with a short answer of a few words, as: Answer: <answer>",
    "text": "",
}


def lettered(choices: Sequence[str]) -> str:
    return "\n".join(f"{chr(ord('A') + i)}) {c}" for i, c in enumerate(choices))


def shared_text(task: Task, inbox: Sequence[Message], answer_format: str) -> str:
    """The part of the prompt every agent of a step sees identically."""
    parts = [task.prompt.strip()]
    if task.choices:
        parts.append(lettered(task.choices))
    if inbox:
        answers = "\n\n".join(f"[{m.sender}] {m.text.strip()}" for m in inbox)
        parts.append(f"Answers so far:\n{answers}")
    instruction = FORMAT_INSTRUCTIONS.get(answer_format, "")
    if instruction:
        parts.append(instruction)
    return "\n\n".join(parts)


def build_messages(
    task: Task, inbox: Sequence[Message], agent: Agent, answer_format: str
) -> list[dict[str, str]]:
    """One user turn: the shared text, then the agent's role."""
    text = shared_text(task, inbox, answer_format)
    if agent.role.strip():
        text = f"{text}\n\n{agent.role.strip()}"
    return [{"role": "user", "content": text}]
