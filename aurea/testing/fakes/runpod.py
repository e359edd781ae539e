"""A fake RunPod Serverless endpoint (``/v2/{endpoint_id}/run``, ``/runsync``, ``/status/{id}``,
``/stream/{id}``, ``/cancel/{id}``) running a worker shaped like RunPod's vLLM worker: input
``{"messages", "sampling_params": {"max_tokens"}, "stream"}``, outputs
``{"choices": [{"tokens": [...]}], "usage": {"input", "output"}}``, job states IN_QUEUE ->
IN_PROGRESS -> COMPLETED / FAILED / CANCELLED / TIMED_OUT, Bearer auth.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from aurea.testing.fakes._core import FakeServer, Fault, FaultKind, count_words, json_response

__all__ = ["FakeRunPod", "Job"]

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


@dataclass(slots=True)
class Job:
    id: str
    input: Any
    status: str = "IN_QUEUE"
    outputs: list[Any] = field(default_factory=list)  # every stream item's output
    streamed: int = 0  # how many outputs /stream has handed out
    error: str | None = None
    task: asyncio.Task[None] | None = None


def _worker_error(message: str, error_type: str) -> str:
    # RunPod reports a handler exception as a JSON *string* in the job's "error" field.
    return json.dumps(
        {
            "error_type": f"<class '{error_type}'>",
            "error_message": message,
            "error_traceback": f"Traceback (most recent call last):\n{error_type}: {message}\n",
        }
    )


class FakeRunPod(FakeServer):
    """RunPod Serverless; ``base_url`` is the origin; jobs live in ``jobs``.

    ``queue_delay_s`` keeps each job IN_QUEUE that long; ``runsync_wait_s`` is how long
    ``/runsync`` waits before answering with a still-running job; ``cancelled`` lists the ids the
    client cancelled (a cancel of a running job also counts as an aborted stream).
    """

    def __init__(self, *, api_key: str = "rp-test", endpoint_id: str = "fake-endpoint", **kw: Any):
        super().__init__(api_key=api_key, **kw)
        self.endpoint_id = endpoint_id
        self.queue_delay_s = 0.0
        self.runsync_wait_s = 5.0
        self.jobs: dict[str, Job] = {}
        self.cancelled: list[str] = []
        self.job_submitted = asyncio.Event()  # set whenever /run or /runsync accepts a job
        self._malformed_polls = 0

    def add_routes(self, app: web.Application) -> None:
        prefix = "/v2/{endpoint}"
        app.router.add_post(f"{prefix}/run", self._run)
        app.router.add_post(f"{prefix}/runsync", self._run)
        app.router.add_get(f"{prefix}/status/{{job}}", self._status)
        app.router.add_get(f"{prefix}/stream/{{job}}", self._stream)
        app.router.add_post(f"{prefix}/cancel/{{job}}", self._cancel)
        app.router.add_get(f"{prefix}/health", self._health)

    async def stop(self) -> None:
        for job in self.jobs.values():
            if job.task is not None:
                job.task.cancel()
        await super().stop()

    # -- checks ------------------------------------------------------------------------------
    def _check(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header.removeprefix("Bearer ").strip() != self.api_key:
            return web.Response(status=401, text="401 Unauthorized")
        if request.match_info["endpoint"] != self.endpoint_id:
            return json_response({"error": "endpoint not found"}, status=404)
        return None

    def _job(self, request: web.Request) -> Job | web.Response:
        job = self.jobs.get(request.match_info["job"])
        if job is None:
            return json_response({"error": "request does not exist"}, status=404)
        return job

    @staticmethod
    def _view(job: Job) -> dict[str, Any]:
        view: dict[str, Any] = {"id": job.id, "status": job.status}
        if job.status != "IN_QUEUE":
            view["delayTime"] = 12
        if job.status in TERMINAL:
            view["executionTime"] = 34
        if job.status == "COMPLETED":
            view["output"] = job.outputs
        if job.error is not None:
            view["error"] = job.error
        return view

    # -- the worker --------------------------------------------------------------------------
    async def _work(self, job: Job, fault: Fault | None) -> None:
        await asyncio.sleep(self.queue_delay_s)
        job.status = "IN_PROGRESS"
        params = job.input.get("sampling_params") or {} if isinstance(job.input, dict) else {}
        messages = job.input.get("messages") or [] if isinstance(job.input, dict) else []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        generation = self.generate(prompt, params.get("max_tokens"))
        usage_in = count_words(str(m.get("content", "")) for m in messages)
        if fault is not None and fault.kind in (FaultKind.CONTEXT_LENGTH, FaultKind.CONTENT_FILTER):
            message = {
                FaultKind.CONTEXT_LENGTH: "This model's maximum context length is 4096 tokens.",
                FaultKind.CONTENT_FILTER: "output blocked by the content filter",
            }[fault.kind]
            job.status, job.error = "FAILED", _worker_error(message, "ValueError")
            return
        stop_at = self.fault_point(fault, len(generation.tokens))
        streaming = isinstance(job.input, dict) and bool(job.input.get("stream"))
        for index, token in enumerate(generation.tokens):
            if fault is not None and index == stop_at:
                if fault.kind is FaultKind.CUT_STREAM:
                    self.jobs.pop(job.id, None)  # the job vanishes: polls get 404
                elif fault.kind is FaultKind.EARLY_EOF:
                    job.status = "TIMED_OUT"  # the endpoint's execution timeout hit
                else:
                    job.status = "FAILED"
                    job.error = _worker_error(
                        "CUDA error: an illegal memory access", "RuntimeError"
                    )
                return
            await asyncio.sleep(self.token_delay_s)
            if streaming:
                usage = {"input": usage_in, "output": index + 1}
                job.outputs.append({"choices": [{"tokens": [token]}], "usage": usage})
        if not streaming:
            usage = {"input": usage_in, "output": len(generation.tokens)}
            job.outputs.append(
                {"choices": [{"tokens": ["".join(generation.tokens)]}], "usage": usage}
            )
        job.status = "COMPLETED"

    # -- handlers ----------------------------------------------------------------------------
    async def _run(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        body = await request.json()
        if not isinstance(body, dict) or "input" not in body:
            return json_response({"error": "no input provided"}, status=400)
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            status = {
                FaultKind.RATE_LIMIT: 429,
                FaultKind.SERVER_ERROR: 500,
                FaultKind.OVERLOADED: 503,
                FaultKind.UNAUTHORIZED: 401,
            }.get(fault.kind)
            if status == 401:
                return web.Response(status=401, text="401 Unauthorized")
            if status is not None:
                headers = {"Retry-After": fault.retry_after} if status == 429 else {}
                message = {429: "rate limit exceeded", 500: "internal error", 503: "no workers"}
                return json_response({"error": message[status]}, status=status, headers=headers)
        if fault is not None and fault.kind is FaultKind.MALFORMED:
            self._malformed_polls += 1  # the next /stream answer is broken JSON
            fault = None
        job = Job(id=f"fake-job-{self.request_count}", input=body["input"])
        self.jobs[job.id] = job
        job.task = asyncio.create_task(self._work(job, fault))
        self.job_submitted.set()
        if request.path.endswith("/runsync"):
            await asyncio.wait({job.task}, timeout=self.runsync_wait_s)
            return json_response(self._view(job))
        return json_response({"id": job.id, "status": job.status})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        job = self._job(request)
        return job if isinstance(job, web.Response) else json_response(self._view(job))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if self._malformed_polls:
            self._malformed_polls -= 1
            broken = '{"status": "IN_PROGRESS", "stream": ['
            return web.Response(status=200, text=broken, content_type="application/json")
        fresh = job.outputs[job.streamed :]
        job.streamed = len(job.outputs)
        payload: dict[str, Any] = {"status": job.status, "stream": [{"output": o} for o in fresh]}
        if job.error is not None:
            payload["error"] = job.error
        return json_response(payload)

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status not in TERMINAL:
            job.status = "CANCELLED"
            if job.task is not None:
                job.task.cancel()
            self.aborted_streams += 1
            self.stream_aborted.set()
        self.cancelled.append(job.id)
        return json_response({"id": job.id, "status": job.status})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request)
        if denied is not None:
            return denied
        running = sum(j.status == "IN_PROGRESS" for j in self.jobs.values())
        return json_response(
            {
                "jobs": {"inQueue": 0, "inProgress": running, "completed": 0, "failed": 0},
                "workers": {"idle": 1, "running": running},
            }
        )
