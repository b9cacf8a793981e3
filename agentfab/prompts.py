"""Prompt layout: what the whole team shares comes first, each agent's role last.

A vLLM server caches prompt prefixes; putting the task, the options and the
previous answers before the agent-specific text lets every agent of a step
reuse the same cached prefix.

Only the text of each call: nothing here sends a request or reads a reply.
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


CONFIDENCE_INSTRUCTION = "Then say how sure you are, from 0 to 1, as: Confidence: <number>"


def shared_text(
    task: Task, inbox: Sequence[Message], answer_format: str, ask_confidence: bool = False
) -> str:
    """The part of the prompt every agent of a step sees identically."""
    parts = [task.prompt.strip()]
    if task.choices:
        parts.append(lettered(task.choices))
    if len(inbox) == 1:
        parts.append(f"An answer so far:\n[{inbox[0].sender}] {inbox[0].text.strip()}")
    elif inbox:
        parts.append(f"Answers so far, grouped by answer:\n{grouped(inbox)}")
    instruction = FORMAT_INSTRUCTIONS.get(answer_format, "")
    if instruction:
        parts.append(instruction)
    if ask_confidence:
        parts.append(CONFIDENCE_INSTRUCTION)
    return "\n\n".join(parts)


def grouped(inbox: Sequence[Message]) -> str:
    """Answers with who gave them and how sure they were, most supported first
    (the round-table view of ReConcile); explanations follow each group."""
    groups: dict[str, list[Message]] = {}
    for message in sorted(inbox, key=lambda m: m.id):
        groups.setdefault(message.answer or "(no clear answer)", []).append(message)
    blocks = []
    for answer, members in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        who = ", ".join(
            m.sender + (f" (confidence {m.confidence:.2f})" if m.confidence is not None else "")
            for m in members
        )
        texts = "\n".join(f"  [{m.sender}] {m.text.strip()}" for m in members)
        blocks.append(f"- {answer}: {who}\n{texts}")
    return "\n".join(blocks)


def build_messages(
    task: Task,
    inbox: Sequence[Message],
    agent: Agent,
    answer_format: str,
    ask_confidence: bool = False,
    layout: str = "shared_first",
) -> list[dict[str, str]]:
    """`shared_first`: one user turn, the shared text then the agent's role, so every agent
    of a step starts with the same tokens. `role_first`: the role as a system turn before
    the shared text, the usual layout elsewhere, kept to measure what shared_first saves."""
    text = shared_text(task, inbox, answer_format, ask_confidence)
    role = agent.role.strip()
    if layout == "role_first" and role:
        return [{"role": "system", "content": role}, {"role": "user", "content": text}]
    if role:
        text = f"{text}\n\n{role}"
    return [{"role": "user", "content": text}]
