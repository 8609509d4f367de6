"""One typed configuration, read from ``LOOKALIKE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Each field is ``LOOKALIKE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")

    # Models
    model: str = "sscd"
    threads: int = Field(0, description="onnxruntime intra-op threads; 0 = all cores")
    batch_size: int = 16
    providers: str = Field("auto", description="'auto' uses CUDA when onnxruntime-gpu is installed, else CPU")
    detector_dir: Path = Field(
        Path.home() / ".cache" / "lookalike" / "detector",
        description="where `lookalike models install detector` writes the product groups' subject detector",
    )
    subject_windows: bool = Field(
        True, description="product groups: a query's class-agnostic windows compete with the detector's boxes"
    )
    subject_side: int = Field(
        512, ge=128, le=1024,
        description="product groups: shorter side of a query's region map, whose windows are scored against the group "
        "(larger: a finer box, slower)",
    )

    # Retrieval quality (each measured in docs/benchmarks.md, "Quality"; the defaults won there)
    input_geometry: str = Field(
        "short288", description="model input: shortN (shorter side N, aspect kept) or stretchN (NxN, the pre-0.2 input)"
    )
    index_flip: bool = Field(True, description="stored and compared vectors average the image and its mirror image")
    local_features: int = Field(
        1000, ge=0, le=4000, description="SIFT keypoints kept per image for geometric verification; 0 = off"
    )
    rerank_depth: int = Field(20, ge=0, le=200, description="search: top hits re-ranked by geometric verification")
    query_keypoints: int = Field(
        0, ge=0, le=4000, description="search: SIFT keypoints of the query (fewer verify faster); 0 = local_features"
    )
    query_feature_side: int = Field(
        512, ge=128, le=2048, description="search: longer side the query's keypoints are found at (smaller is faster)"
    )
    query_expansion: bool = Field(
        True, description="search: a second pass with the query averaged with its best verified hit (alpha-QE)"
    )

    # Cost per job (docs/benchmarks.md, "Speed"): pairs and dedup ask a cheap model first
    fast_model: str = Field(
        "sscd-small",
        description="first opinion of pair comparisons (AWS, PAI, /v1/compare) and dedup; the full model "
        "runs only where that opinion is close to a decision boundary. '' = the full model always",
    )
    fast_geometry: str = Field("stretch224", description="input geometry of the fast first opinion")
    cascade_margin: float = Field(
        0.06,
        ge=0.0,
        le=1.0,
        description="reference-scale cosine either side of a boundary within which the fast opinion defers "
        "to the full model",
    )
    pair_feature_side: int = Field(
        320, ge=128, le=2048,
        description="pairs: longer side the keypoints of a compared pair are found at (SIFT costs a third of 512's; "
        "under 512 a copy needs 45% of the shared keypoints instead of 40%; docs/benchmarks.md)",
    )
    verify_from: float = Field(
        0.2, ge=-1.0, le=1.0,
        description="geometric verification runs from this reference-scale cosine up: pairs up to the copy "
        "boundary, search on its top hits (below it no copy was measured to verify; -1 = every hit)",
    )

    # Image input
    max_image_bytes: int = 5 * 1024 * 1024
    max_image_side: int = 4096
    max_image_pixels: int = 4096 * 4096
    fetch_timeout_s: float = 10.0
    fetch_max_redirects: int = 3
    allow_private_urls: bool = Field(False, description="allow loopback/private/link-local URL targets")
    s3_endpoint_url: str | None = None
    s3_instance_credentials: bool = Field(
        False, description="let s3:// fetches use EC2/ECS role credentials (asks the metadata address)"
    )

    # Request limits
    max_batch_images: int = 64
    max_request_bytes: int = 32 * 1024 * 1024
    model_concurrency: int = Field(2, description="model runs at once; more wait in the queue")
    model_queue: int = Field(
        16, description="requests waiting for the model; past it they get ServerBusy (503). Keep it under the "
        "server's 40 worker threads, or the wait moves to the thread pool, where nothing sheds it"
    )
    model_queue_timeout_s: float = Field(10.0, description="longest wait for the model before ServerBusy")
    group_qps: bool = Field(True, description="enforce each group's MaxQps on its searches")

    # Scale-out storage (unset: the embedded SQLite store in data_dir)
    milvus_uri: str | None = Field(None, description="e.g. http://milvus:19530: keep the galleries in Milvus")
    milvus_token: str = Field("", description="Milvus credentials, 'user:password' or an API key")
    milvus_db: str = Field("", description="Milvus database ('' = its default)")
    milvus_prefix: str = Field("lookalike", description="collection name prefix (several deployments, one cluster)")
    milvus_consistency: Literal["Strong", "Session", "Bounded", "Eventually"] = Field(
        "Session",
        description="'Session': a server sees its own writes at once; 'Strong': every write, +1 time tick a search",
    )
    milvus_thumbnails: bool = Field(True, description="keep thumbnails in Milvus (memory: ~15 KB a picture)")
    milvus_features: bool = Field(
        True, description="keep local features in Milvus for geometric verification (memory: up to ~176 KB a picture)"
    )
    milvus_timeout_s: int = Field(
        10, description="longest Milvus call, retries included, before StoreUnavailable (503)"
    )
    milvus_hnsw_m: int = 16
    milvus_hnsw_ef_construction: int = 200
    milvus_hnsw_ef: int = Field(128, description="HNSW search breadth (raised to Offset+Limit when larger)")

    # Access
    auth: Literal["open", "keys"] = Field(
        "open",
        description="'open': no credentials, one tenant; 'keys': every API call needs a key from `lookalike keys`",
    )
    auth_clock_skew_s: int = Field(300, description="how old (or early) a signed request may be")
    rate_limit_qps: float = Field(50.0, description="requests a second per credential (keys mode); 0 = no limit")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
