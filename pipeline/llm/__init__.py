"""Language and vision model providers behind TextModel and VisionModel.

`pipeline.llm.factory.open_models(settings)` gives one fallback chain per task; the rest of the
pipeline sees only the Protocols in `pipeline.ports`. This package root stays light (no client
library is imported by it). Never imports `bot` or `discord`.
"""

from pipeline.llm.base import FailureKind, ModelRequest, Provider, ProviderFailure, Task
from pipeline.llm.chain import FallbackChain, Lane
from pipeline.llm.limits import Health, RateLimiter, RetryPolicy
from pipeline.llm.parsing import AnswerError, clean_text, extract_json, strip_reasoning

__all__ = [
    "AnswerError",
    "FailureKind",
    "FallbackChain",
    "Health",
    "Lane",
    "ModelRequest",
    "Provider",
    "ProviderFailure",
    "RateLimiter",
    "RetryPolicy",
    "Task",
    "clean_text",
    "extract_json",
    "strip_reasoning",
]
