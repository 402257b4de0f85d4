"""Language and vision model providers behind TextModel and VisionModel.

`open_models(settings)` / `build_models(settings)` give one fallback chain per task; the rest of
the pipeline sees only the Protocols in `pipeline.ports`. Never imports `bot` or `discord`.
"""

from pipeline.llm.base import FailureKind, ModelRequest, Provider, ProviderFailure, Task
from pipeline.llm.chain import FallbackChain, Lane
from pipeline.llm.factory import LanguageModels, build_models, build_providers, open_models
from pipeline.llm.limits import Health, RateLimiter, RetryPolicy
from pipeline.llm.parsing import AnswerError, clean_text, extract_json, strip_reasoning

__all__ = [
    "AnswerError",
    "FailureKind",
    "FallbackChain",
    "Health",
    "Lane",
    "LanguageModels",
    "ModelRequest",
    "Provider",
    "ProviderFailure",
    "RateLimiter",
    "RetryPolicy",
    "Task",
    "build_models",
    "build_providers",
    "clean_text",
    "extract_json",
    "open_models",
    "strip_reasoning",
]
