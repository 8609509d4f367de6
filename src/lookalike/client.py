"""A small Python client for a running lookalike server's native API.

>>> from lookalike.client import Client
>>> with Client("http://127.0.0.1:8000") as c:
...     c.compare("a.jpg", "b.jpg")["verdict"]
'near copy'
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from lookalike.errors import LookalikeError


class ApiError(LookalikeError):
    """An error answered by the server; ``code`` is the server's error code."""

    def __init__(self, code: str, message: str, status: int, request_id: str = "") -> None:
        super().__init__(message, code=code, status=status)
        self.request_id = request_id


def _ref(image: str | Path | bytes) -> dict[str, str]:
    """A URL stays a URL (the server fetches it); a path or bytes travels as base64."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "s3://")):
        return {"url": image}
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return {"base64": base64.b64encode(data).decode()}


class Client:
    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None, timeout: float = 60
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                error = body.get("error", {})
                raise ApiError(
                    error.get("code", "HttpError"),
                    error.get("message", response.text),
                    response.status_code,
                    body.get("request_id", ""),
                )
            except ValueError:
                raise ApiError("HttpError", response.text, response.status_code) from None
        return response.json() if response.content else None

    def embed(self, images: Sequence[str | Path | bytes] | str | Path | bytes, model: str | None = None) -> np.ndarray:
        """One image -> (dim,); a list -> (n, dim), float32, unit length."""
        single = isinstance(images, (str, Path, bytes))
        items = [images] if isinstance(images, (str, Path, bytes)) else list(images)
        body: dict[str, Any] = {"images": [_ref(i) for i in items]}
        if model:
            body["model"] = model
        vectors = np.asarray(self._call("POST", "/v1/embed", json=body)["vectors"], dtype=np.float32)
        return vectors[0] if single else vectors

    def compare(self, a: str | Path | bytes, b: str | Path | bytes, model: str | None = None) -> dict[str, Any]:
        """cosine, similarity (AWS scale), score (0..100), l2_distance, verdict."""
        body: dict[str, Any] = {"a": _ref(a), "b": _ref(b)}
        if model:
            body["model"] = model
        return self._call("POST", "/v1/compare", json=body)

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")

    def duplicates(
        self,
        group_id: str,
        level: str = "near",
        *,
        match_threshold: float | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> dict[str, Any]:
        """Sets of near-duplicate pictures in a gallery group (``sets``, ``total``, ``pictures``)."""
        body: dict[str, Any] = {"level": level, "limit": limit, "offset": offset}
        if match_threshold is not None:
            body["match_threshold"] = match_threshold
        return self._call("POST", f"/v1/groups/{group_id}/duplicates", json=body)

    def duplicates_job(
        self, group_id: str, level: str = "near", *, match_threshold: float | None = None, poll_s: float = 0.5,
        limit: int = 10, offset: int = 0,
    ) -> dict[str, Any]:
        """:meth:`duplicates` as the server's background job (for a large group): started, polled
        until it is done, and its first page returned (``result``); a failed job raises ApiError."""
        import time

        body: dict[str, Any] = {"level": level}
        if match_threshold is not None:
            body["match_threshold"] = match_threshold
        job = self._call("POST", f"/v1/groups/{group_id}/duplicates/jobs", json=body)
        while True:
            job = self._call(
                "GET",
                f"/v1/groups/{group_id}/duplicates/jobs/{job['job_id']}",
                params={"limit": limit, "offset": offset},
            )
            if job["status"] == "failed":
                raise ApiError(job["error"]["code"], job["error"]["message"], 0, job["request_id"])
            if job["status"] == "done":
                return job
            time.sleep(poll_s)

    def mark_reviewed(self, group_id: str, pic_names: Sequence[str]) -> str:
        """Keeps a duplicate set (its members' PicNames) as it is: left out from now on. Its key."""
        return self._call("POST", f"/v1/groups/{group_id}/duplicates/reviewed", json={"pic_names": list(pic_names)})[
            "key"
        ]

    def ready(self) -> bool:
        return self._http.get("/readyz").status_code == 200
