"""API-format ComfyUI workflows: load, inspect, and derive a changed copy per job.

Imports only the standard library and comfy.errors / comfy._wire. A Workflow is never changed in
place: every `with_*` / `set_*` / `apply_updates` returns a new Workflow, so one template loaded
once can serve many jobs.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import cast

from comfy._wire import NodeJSON, PromptJSON
from comfy.errors import WorkflowError

log = logging.getLogger(__name__)

UI_FORMAT_HINT = "export it with Save (API Format)"
SEED_INPUTS = ("seed", "noise_seed")
TEXT_INPUTS = ("text", "prompt", "text_g", "text_l")
#: node classes that make a sound track from a text prompt of their own (kijai/ComfyUI-MMAudio's
#: sampler: `prompt` and `negative_prompt`, beside the video frames on `images`)
SOUND_NODES = frozenset({"MMAudioSampler"})
#: seeds are drawn below 2**32: every sampler accepts that range (some custom nodes cap there)
SEED_LIMIT = 2**32


def is_link(value: object) -> bool:
    """True for an input wired to another node's output: `["4", 1]`."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


class Workflow:
    """An API-format workflow (node id -> {class_type, inputs, _meta}); immutable by copy."""

    __slots__ = ("_nodes", "source")

    def __init__(self, nodes: Mapping[str, object], *, source: str = "<workflow>") -> None:
        self.source = source
        self._nodes: PromptJSON = _validated(copy.deepcopy(dict(nodes)), source)

    # ------------------------------------------------------------ construction

    @classmethod
    def _adopt(cls, nodes: PromptJSON, source: str) -> Workflow:
        """Wrap an already-validated dict this module owns, without copying it again."""
        wf = cls.__new__(cls)
        wf.source = source
        wf._nodes = nodes
        return wf

    @classmethod
    def load(cls, path: str | Path) -> Workflow:
        """Read an API-format workflow file; errors name the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkflowError(f"{path}: cannot read the workflow: {exc}") from exc
        return cls.from_json(text, source=str(path))

    @classmethod
    def from_json(cls, text: str, *, source: str = "<workflow>") -> Workflow:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        except RecursionError:
            # the decoder recurses per bracket: thousands of nested ones exhaust the stack
            raise WorkflowError(f"{source}: the JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise WorkflowError(f"{source}: a workflow must be a JSON object of nodes")
        return cls._adopt(_validated(data, source), source)

    # ------------------------------------------------------------ reading

    def to_dict(self) -> PromptJSON:
        """A deep copy of the nodes, ready to send as `prompt`."""
        return copy.deepcopy(self._nodes)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self._nodes, indent=indent)

    def copy(self) -> Workflow:
        return Workflow._adopt(copy.deepcopy(self._nodes), self.source)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._nodes))

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workflow) and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]  # equal by content, and content is not hashable

    def __repr__(self) -> str:
        return f"Workflow({self.source!r}, {len(self._nodes)} nodes)"

    def class_type(self, node_id: str) -> str:
        return self._node(node_id)["class_type"]

    def title(self, node_id: str) -> str | None:
        meta = self._node(node_id).get("_meta") or {}
        title = meta.get("title")
        return title if isinstance(title, str) else None

    def inputs(self, node_id: str) -> dict[str, object]:
        """A copy of one node's inputs."""
        return copy.deepcopy(self._node(node_id)["inputs"])

    def class_types(self) -> frozenset[str]:
        """Every node class the workflow uses (what preflight checks on a server)."""
        return frozenset(n["class_type"] for n in self._nodes.values())

    def describe(self, node_id: str) -> str:
        """`KSampler (3)`, or `"Positive Prompt" CLIPTextEncode (6)` when titled."""
        title = self.title(node_id)
        ct = self.class_type(node_id)
        if title and title != ct:
            return f'"{title}" {ct} ({node_id})'
        return f"{ct} ({node_id})"

    def find(self, *, title: str | None = None, class_type: str | None = None) -> list[str]:
        """Ids of nodes whose title (case-insensitive) and/or class_type match exactly."""
        found = []
        for node_id, node in self._nodes.items():
            if class_type is not None and node["class_type"] != class_type:
                continue
            if title is not None:
                own = self.title(node_id)
                if own is None or own.strip().casefold() != title.strip().casefold():
                    continue
            found.append(node_id)
        return found

    def resolve(self, ref: str) -> str:
        """One node by id, else by title; an error when none or several match."""
        if ref in self._nodes:
            return ref
        found = self.find(title=ref)
        if len(found) == 1:
            return found[0]
        if not found:
            raise WorkflowError(f"{self.source}: no node has id or title {ref!r}")
        raise WorkflowError(
            f"{self.source}: {len(found)} nodes are titled {ref!r} "
            f"({', '.join(self.describe(i) for i in found)}); use a node id"
        )

    def seeds(self) -> dict[str, dict[str, int]]:
        """node id -> {input: value} for every literal `seed` / `noise_seed`."""
        out: dict[str, dict[str, int]] = {}
        for node_id, node in self._nodes.items():
            for name in SEED_INPUTS:
                value = node["inputs"].get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    out.setdefault(node_id, {})[name] = value
        return out

    # ------------------------------------------------------------ deriving copies

    def set_input(self, ref: str, name: str, value: object) -> Workflow:
        """Set one input of the node with this id or title."""
        return self._set([self.resolve(ref)], name, value)

    def set_by_id(self, node_id: str, name: str, value: object) -> Workflow:
        self._node(node_id)
        return self._set([node_id], name, value)

    def set_by_title(self, title: str, name: str, value: object) -> Workflow:
        found = self.find(title=title)
        if not found:
            raise WorkflowError(f"{self.source}: no node is titled {title!r}")
        return self._set(found, name, value)

    def set_by_class(
        self, class_type: str, name: str, value: object, *, exactly_one: bool = False
    ) -> Workflow:
        """Set the input on every node of this class (or on the only one, if `exactly_one`)."""
        found = self.find(class_type=class_type)
        if not found:
            raise WorkflowError(f"{self.source}: no node has class_type {class_type!r}")
        if exactly_one and len(found) != 1:
            raise WorkflowError(
                f"{self.source}: expected exactly one {class_type} node, found {len(found)} "
                f"({', '.join(found)})"
            )
        return self._set(found, name, value)

    def with_prompt(self, positive: str | None = None, negative: str | None = None) -> Workflow:
        """Set the positive and/or negative prompt text.

        Nodes whose title contains "positive" / "negative" win; otherwise the text encoders
        wired to a sampler's `positive` / `negative` input.
        """
        nodes = copy.deepcopy(self._nodes)
        for side, text in (("positive", positive), ("negative", negative)):
            if text is None:
                continue
            targets = self._prompt_nodes(side)
            if not targets:
                raise WorkflowError(
                    f"{self.source}: no {side} prompt node found (title a text encoder "
                    f"'{side.capitalize()} Prompt', or wire one to a sampler's {side} input)"
                )
            for node_id in targets:
                inputs = nodes[node_id]["inputs"]
                for name in TEXT_INPUTS:
                    if isinstance(inputs.get(name), str):
                        inputs[name] = text
        return Workflow._adopt(nodes, self.source)

    def sound_nodes(self) -> list[str]:
        """The ids of the nodes that make a sound track from a prompt (`SOUND_NODES`)."""
        return sorted(node for node in self._nodes if self.class_type(node) in SOUND_NODES)

    def with_sound_prompt(self, text: str) -> Workflow:
        """Set the `prompt` input of every sound node (MMAudio's sampler) that is not wired to
        another node; a workflow without one comes back unchanged."""
        nodes = copy.deepcopy(self._nodes)
        for node_id in self.sound_nodes():
            inputs = nodes[node_id].setdefault("inputs", {})
            if not is_link(inputs.get("prompt")):
                inputs["prompt"] = text
        return Workflow._adopt(nodes, self.source)

    def with_random_seeds(self, rng: random.Random) -> Workflow:
        """Every literal `seed` / `noise_seed` set to a fresh value drawn from `rng`."""
        nodes = copy.deepcopy(self._nodes)
        for node_id, names in sorted(self.seeds().items()):
            for name in sorted(names):
                nodes[node_id]["inputs"][name] = rng.randrange(SEED_LIMIT)
        return Workflow._adopt(nodes, self.source)

    def with_batch_size(self, size: int) -> Workflow:
        """How many images one run makes: every `batch_size`, else RepeatLatentBatch `amount`."""
        if size < 1:
            raise WorkflowError(f"{self.source}: batch size must be at least 1, not {size}")
        targets = self._literal_inputs("batch_size")
        name = "batch_size"
        if not targets:
            targets = self.find(class_type="RepeatLatentBatch")
            name = "amount"
        if not targets:
            raise WorkflowError(
                f"{self.source}: no node has a batch_size input (or a RepeatLatentBatch node)"
            )
        return self._set(targets, name, size)

    def with_size(self, width: int, height: int) -> Workflow:
        """Width and height on every node that has both as literal numbers."""
        targets = [
            i for i in self._literal_inputs("width") if i in set(self._literal_inputs("height"))
        ]
        if not targets:
            raise WorkflowError(f"{self.source}: no node has width and height inputs")
        return self._set(targets, "width", width)._set(targets, "height", height)

    def with_denoise(self, denoise: float) -> Workflow:
        targets = self._literal_inputs("denoise")
        if not targets:
            raise WorkflowError(f"{self.source}: no node has a denoise input")
        return self._set(targets, "denoise", denoise)

    def with_input_image(self, name: str, *, node: str = "Input Image") -> Workflow:
        """Point the LoadImage node (by id or title, else the only one) at an uploaded image."""
        if node in self._nodes or self.find(title=node):
            target = self.resolve(node)
        else:
            loaders = self.find(class_type="LoadImage")
            if len(loaders) != 1:
                raise WorkflowError(
                    f"{self.source}: no node titled {node!r}, and {len(loaders)} LoadImage "
                    "nodes; title the input image node"
                )
            target = loaders[0]
        return self._set([target], "image", name)

    def apply_updates(self, updates: Iterable[Mapping[str, object]]) -> Workflow:
        """Apply a character's `custom_node_updates`.

        Each update is `{"node_type" | "title" | "id": ..., "inputs": {name: value}}`;
        `node_type` changes every node of that class. An update that matches no node, or names
        an input the node lacks, is an error naming both.
        """
        result = self
        for number, update in enumerate(updates, start=1):
            result = result._apply_update(number, update)
        return result

    # ------------------------------------------------------------ internals

    def _apply_update(self, number: int, update: Mapping[str, object]) -> Workflow:
        keys = [k for k in ("node_type", "class_type", "title", "id") if k in update]
        if len(keys) != 1:
            raise WorkflowError(
                f"{self.source}: update {number} must name exactly one of node_type, title or id "
                f"(got {sorted(update)})"
            )
        key = keys[0]
        selector = update[key]
        inputs = update.get("inputs")
        if not isinstance(selector, str | int) or isinstance(selector, bool):
            raise WorkflowError(f"{self.source}: update {number}: {key} must be a string")
        if not isinstance(inputs, Mapping) or not inputs:
            raise WorkflowError(
                f"{self.source}: update {number} ({key} {selector!r}) needs a mapping of inputs"
            )
        selector = str(selector)
        label = f"update {number} ({key} {selector!r})"
        if key in ("node_type", "class_type"):
            targets = self.find(class_type=selector)
            missing = f"no node has class_type {selector!r}"
        elif key == "title":
            targets = self.find(title=selector)
            missing = f"no node is titled {selector!r}"
        else:
            targets = [selector] if selector in self._nodes else []
            missing = f"no node has id {selector!r}"
        if not targets:
            raise WorkflowError(f"{self.source}: {label}: {missing}")
        nodes = copy.deepcopy(self._nodes)
        for node_id in targets:
            own = nodes[node_id]["inputs"]
            for name, value in cast(Mapping[str, object], inputs).items():
                if name not in own:
                    raise WorkflowError(
                        f"{self.source}: {label}: node {self.describe(node_id)} has no input "
                        f"{name!r} (it has: {', '.join(sorted(own))})"
                    )
                own[name] = copy.deepcopy(value)
        return Workflow._adopt(nodes, self.source)

    def _node(self, node_id: str) -> NodeJSON:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise WorkflowError(f"{self.source}: no node has id {node_id!r}") from None

    def _set(self, node_ids: list[str], name: str, value: object) -> Workflow:
        for node_id in node_ids:
            if name not in self._node(node_id)["inputs"]:
                raise WorkflowError(
                    f"{self.source}: node {self.describe(node_id)} has no input {name!r} "
                    f"(it has: {', '.join(sorted(self._nodes[node_id]['inputs']))})"
                )
        nodes = copy.deepcopy(self._nodes)
        for node_id in node_ids:
            nodes[node_id]["inputs"][name] = copy.deepcopy(value)
        return Workflow._adopt(nodes, self.source)

    def _literal_inputs(self, name: str) -> list[str]:
        """Ids of nodes where `name` is a literal number (not a link)."""
        return [
            node_id
            for node_id, node in self._nodes.items()
            if isinstance(node["inputs"].get(name), int | float)
            and not isinstance(node["inputs"].get(name), bool)
        ]

    def _has_text(self, node_id: str) -> bool:
        inputs = self._nodes[node_id]["inputs"]
        return any(isinstance(inputs.get(n), str) for n in TEXT_INPUTS)

    def _prompt_nodes(self, side: str) -> list[str]:
        titled = [
            node_id
            for node_id in self._nodes
            if side in (self.title(node_id) or "").casefold() and self._has_text(node_id)
        ]
        if titled:
            return titled
        found: list[str] = []
        for node in self._nodes.values():
            link = node["inputs"].get(side)
            if is_link(link):
                target = self._follow_to_text(str(cast(list[object], link)[0]), side, depth=0)
                if target is not None and target not in found:
                    found.append(target)
        return found

    def _follow_to_text(self, node_id: str, side: str, depth: int) -> str | None:
        """Walk conditioning links back from a sampler to the node that holds the text."""
        if node_id not in self._nodes or depth > 8:
            return None
        if self._has_text(node_id):
            return node_id
        inputs = self._nodes[node_id]["inputs"]
        for name in (side, "conditioning", "conditioning_to", "conditioning_1"):
            link = inputs.get(name)
            if is_link(link):
                found = self._follow_to_text(str(cast(list[object], link)[0]), side, depth + 1)
                if found is not None:
                    return found
        return None


def _validated(data: dict[str, object], source: str) -> PromptJSON:
    """Check the API-format shape; refuse the UI format with the way out."""
    if "nodes" in data and "links" in data:
        raise WorkflowError(
            f"{source}: this is a UI-format workflow (it has 'nodes' and 'links'), which ComfyUI "
            f"cannot queue; open it in ComfyUI and {UI_FORMAT_HINT}"
        )
    if not data:
        raise WorkflowError(f"{source}: the workflow has no nodes")
    for node_id, node in data.items():
        if not isinstance(node, dict):
            raise WorkflowError(f"{source}: node {node_id!r} is not an object")
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            raise WorkflowError(f"{source}: node {node_id!r} has no class_type")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowError(
                f"{source}: node {node_id!r} ({class_type}): inputs must be an object"
            )
        node.setdefault("inputs", inputs)
        if not isinstance(node.get("_meta", {}), dict):
            raise WorkflowError(f"{source}: node {node_id!r}: _meta must be an object")
    return cast(PromptJSON, data)
