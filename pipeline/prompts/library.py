"""The template library: description system prompts and visual styles, as files.

Built-in templates live beside this module; a user folder (TEMPLATES_DIR) adds or overrides
them without code: `image/NAME.md`, `video/NAME.md`, and `styles.yaml` (name: style text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROMPT_METHODS = ("arbitrary", "news", "two_character")

BUILTIN_DIR = Path(__file__).parent / "templates"
BUILTIN_STYLES = Path(__file__).parent / "styles.yaml"


#: libyaml's safe loader when PyYAML has it (ten times faster), else the pure Python one
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class TemplateLibrary:
    """Names and texts of every description template and style a character may choose."""

    image_templates: Mapping[str, str] = field(default_factory=dict)
    video_templates: Mapping[str, str] = field(default_factory=dict)
    styles: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, user_dir: Path | None = None) -> TemplateLibrary:
        """Built-in templates and styles, then the user's, which win on equal names."""
        image = _read_folder(BUILTIN_DIR / "image")
        video = _read_folder(BUILTIN_DIR / "video")
        styles = _read_styles(BUILTIN_STYLES)
        if user_dir is not None and user_dir.is_dir():
            image |= _read_folder(user_dir / "image")
            video |= _read_folder(user_dir / "video")
            styles |= _read_styles(user_dir / "styles.yaml")
        styles[""] = ""
        return cls(image_templates=image, video_templates=video, styles=styles)

    def template(self, name: str, *, video: bool = False) -> str:
        texts = self.video_templates if video else self.image_templates
        try:
            return texts[name]
        except KeyError:
            kind = "video" if video else "image"
            raise KeyError(f"no {kind} template named {name!r}") from None


def _read_folder(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        path.stem: path.read_text(encoding="utf-8").strip() for path in sorted(folder.glob("*.md"))
    }


def _read_styles(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}  # noqa: S506 (safe)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must map style names to style text")
    return {str(name): str(text) for name, text in data.items()}
