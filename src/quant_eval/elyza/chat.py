"""Loading a GGUF model for chat completion with the chat template stored in the file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import InvalidModelError

GGUF_TEMPLATE = "tokenizer.chat_template"
# llama-cpp-python's name for the chat handler built from the GGUF's own template.
GGUF_CHAT_FORMAT = "chat_template.default"


def load_chat_model(model_path: Path, context: int, threads: int, seed: int) -> Any:
    """Load `model_path` so that create_chat_completion renders the GGUF's own chat template.

    llama-cpp-python would otherwise replace the template by a built-in format it guesses
    to be equal, or fall back to the llama-2 format when the file has no template.
    """
    from llama_cpp import Llama

    model = Llama(model_path=str(model_path), n_ctx=context, n_threads=threads, n_threads_batch=threads,
                  seed=seed, verbose=False)
    if GGUF_TEMPLATE not in model.metadata:
        raise InvalidModelError(
            f"{model_path} has no chat template ({GGUF_TEMPLATE}); chat tasks need an instruction-tuned "
            "GGUF that stores its chat template"
        )
    model.chat_format = GGUF_CHAT_FORMAT
    return model


def template_sha256(model: Any) -> str:
    return hashlib.sha256(model.metadata[GGUF_TEMPLATE].encode("utf-8")).hexdigest()


def chat_completion(model: Any, content: str, max_tokens: int, temperature: float, seed: int) -> dict[str, Any]:
    """Return the completion of one user message: plain temperature sampling, no truncation."""
    return model.create_chat_completion(
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
        seed=seed,
    )
