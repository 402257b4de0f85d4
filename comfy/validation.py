"""A workflow checked against a server's `/object_info` as ComfyUI's own `validate_prompt` does.

Pure, imports only the standard library and comfy.workflow: the client's preflight, the pool's
choice and `python -m pipeline check` share it.
Follows execution.py (0.3.x): only what an output node needs is validated; links to node ids that
do not exist, linked types that do not match, values that do not convert to INT / FLOAT, values
below `min` or above `max`, values not among a choice list and missing required inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from comfy.workflow import Workflow

#: endings of files a server lists as installed models (a value not listed is "not installed")
MODEL_FILE_ENDINGS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
#: how many allowed values a problem quotes before it only counts them
SHOWN_CHOICES = 6


@dataclass(frozen=True)
class NodeProblem:
    """One thing ComfyUI would refuse: at a node and input (None when it is the whole workflow).

    `kind` is ComfyUI's own error type (`value_bigger_than_max`, ...); `message` is one sentence
    without the node, for people.
    """

    node_id: str | None
    input_name: str | None
    kind: str
    message: str


def _spec_of(info: Mapping[str, object], class_type: str) -> list[tuple[str, object, bool]]:
    """(input name, spec, required) of a class: required inputs first, in /object_info order."""
    node = info.get(class_type)
    declared = node.get("input") if isinstance(node, Mapping) else None
    if not isinstance(declared, Mapping):
        return []
    found: list[tuple[str, object, bool]] = []
    for group in ("required", "optional"):
        inputs = declared.get(group)
        if isinstance(inputs, Mapping):
            found.extend((str(name), spec, group == "required") for name, spec in inputs.items())
    return found


def _outputs_of(info: Mapping[str, object], class_type: str) -> list[object] | None:
    node = info.get(class_type)
    outputs = node.get("output") if isinstance(node, Mapping) else None
    return list(outputs) if isinstance(outputs, list) else None


def _is_output_node(info: Mapping[str, object], class_type: str) -> bool:
    node = info.get(class_type)
    return isinstance(node, Mapping) and node.get("output_node") is True


def _types_match(received: object, wanted: object) -> bool:
    """ComfyUI's validate_node_input: equal, a `*` wildcard, or comma-separated unions meeting."""
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False  # unequal choice lists
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _choices(spec: Sequence[object]) -> tuple[list[object], Mapping[str, object]] | None:
    """The allowed values of a choice input (old `[[...], {}]` or schema-v3 `["COMBO", {...}]`)."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if isinstance(spec[0], list):
        return spec[0], options
    if spec[0] == "COMBO" and isinstance(options.get("options"), list):
        return list(options["options"]), options
    return None


def _shown_choices(allowed: Sequence[object]) -> str:
    if not allowed:
        return "the server lists none"
    head = ", ".join(str(v) for v in allowed[:SHOWN_CHOICES])
    more = len(allowed) - SHOWN_CHOICES
    return f"{head} and {more} more" if more > 0 else head


def _convert(type_name: object, value: object) -> object:
    """The value as ComfyUI converts it before its range check; raises as ComfyUI's would fail."""
    if isinstance(value, Mapping) and "__value__" in value:
        value = value["__value__"]
    if type_name == "INT":
        return int(value)  # type: ignore[call-overload]  # any JSON value; TypeError is caught
    if type_name == "FLOAT":
        return float(value)  # type: ignore[arg-type]  # as above
    return value


class _Validator:
    def __init__(self, prompt: Mapping[str, Mapping[str, object]], info: Mapping[str, object]):
        self.prompt = prompt
        self.info = info
        self.problems: list[NodeProblem] = []
        self.seen: set[str] = set()
        #: nodes reached through valid links, still to check (a stack: no recursion limit)
        self.todo: list[str] = []

    def add(self, node_id: str | None, name: str | None, kind: str, message: str) -> None:
        self.problems.append(NodeProblem(node_id, name, kind, message))

    def reach(self, node_id: str) -> None:
        """Check `node_id` and everything its links reach, each node once."""
        self.todo.append(node_id)
        while self.todo:
            found = self.todo.pop()
            if found not in self.seen:
                self.seen.add(found)
                self.node(found)

    def node(self, node_id: str) -> None:
        """Every problem of one node; the nodes its valid links reach go on `todo`."""
        node = self.prompt[node_id]
        class_type = str(node.get("class_type"))
        if class_type not in self.info:
            return  # reported apart: a class the server has not installed
        raw_inputs = node.get("inputs")
        inputs: Mapping[str, object] = raw_inputs if isinstance(raw_inputs, Mapping) else {}
        for name, spec, required in _spec_of(self.info, class_type):
            if name not in inputs:
                if required:
                    self.add(node_id, name, "required_input_missing", "is required but missing")
                continue
            if not isinstance(spec, list) or not spec:
                continue
            value = inputs[name]
            if isinstance(value, list):
                self.link(node_id, name, spec[0], value)
            else:
                self.literal(node_id, name, spec, value)

    def link(self, node_id: str, name: str, wanted: object, value: list[object]) -> None:
        if len(value) != 2:
            self.add(node_id, name, "bad_linked_input", "a link must be [node id, output index]")
            return
        target, slot = value
        if not isinstance(target, str) or target not in self.prompt:
            self.add(
                node_id,
                name,
                "exception_during_validation",
                f"links to node {target}, which is not in the workflow",
            )
            return
        target_class = str(self.prompt[target].get("class_type"))
        outputs = _outputs_of(self.info, target_class)
        if outputs is not None:
            if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < len(outputs):
                self.add(
                    node_id,
                    name,
                    "exception_during_validation",
                    f"links to output {slot} of node {target} ({target_class}), which has "
                    f"{len(outputs)} output(s)",
                )
                return
            received = outputs[slot]
            if not _types_match(received, wanted):
                self.add(
                    node_id,
                    name,
                    "return_type_mismatch",
                    f"expects {wanted} but is linked to {received} "
                    f"(output {slot} of node {target}, {target_class})",
                )
                return
        self.todo.append(target)

    def literal(self, node_id: str, name: str, spec: list[object], value: object) -> None:
        type_name = spec[0]
        try:
            converted = _convert(type_name, value)
        except (TypeError, ValueError, OverflowError):
            kind = "a whole number" if type_name == "INT" else "a number"
            self.add(node_id, name, "invalid_input_type", f"{value!r} is not {kind} ({type_name})")
            return
        options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
        if isinstance(converted, (int, float)) and not isinstance(converted, bool):
            low, high = options.get("min"), options.get("max")
            if isinstance(low, (int, float)) and converted < low:
                self.add(
                    node_id,
                    name,
                    "value_smaller_than_min",
                    f"{value!r} is below the minimum {low}",
                )
                return
            if isinstance(high, (int, float)) and converted > high:
                self.add(
                    node_id,
                    name,
                    "value_bigger_than_max",
                    f"{value!r} is above the maximum {high}",
                )
                return
        found = _choices(spec)
        if found is None:
            return
        allowed, choice_options = found
        if any(str(key).endswith("upload") for key in choice_options):
            return  # an upload's name: checked by the node itself once the file is there
        if converted in allowed:
            return
        if isinstance(value, str) and value.lower().endswith(MODEL_FILE_ENDINGS):
            message = f"{value!r} is not installed on the server"
        else:
            message = f"{value!r} is not one of the server's choices ({_shown_choices(allowed)})"
        self.add(node_id, name, "value_not_in_list", message)


def validate(
    prompt: Mapping[str, Mapping[str, object]], object_info: Mapping[str, object]
) -> list[NodeProblem]:
    """Every problem ComfyUI would refuse `prompt` for, given the server's `/object_info`.

    Node classes the server lacks are not reported here (the caller names them together); the
    nodes behind them are skipped. A workflow with no output node is one problem.
    """
    validator = _Validator(prompt, object_info)
    classes = {node_id: str(node.get("class_type")) for node_id, node in prompt.items()}
    outputs = [nid for nid, ct in classes.items() if _is_output_node(object_info, ct)]
    if not outputs:
        if all(ct in object_info for ct in classes.values()):
            validator.add(
                None,
                None,
                "prompt_no_outputs",
                "has no output node (such as SaveImage), so ComfyUI would run nothing",
            )
        return validator.problems
    for node_id in outputs:
        validator.reach(node_id)
    return validator.problems


def workflow_problems(
    workflow: Workflow, object_info: Mapping[str, object]
) -> list[tuple[str | None, str]]:
    """What stops a server with this `/object_info` running `workflow`, one line each with the
    node it is at (None: the whole workflow): node classes it lacks first, then `validate`'s."""
    problems: list[tuple[str | None, str]] = []
    missing = sorted(workflow.class_types() - set(object_info))
    if missing:
        first = next(n for n in workflow if workflow.class_type(n) in missing)
        problems.append((first, f"node classes not installed: {', '.join(missing)}"))
    for found in validate(workflow.to_dict(), object_info):
        if found.node_id is None:
            problems.append((None, f"the workflow {found.message}"))
            continue
        where = f"node {workflow.describe(found.node_id)}"
        if found.input_name is not None:
            where += f" input {found.input_name}"
        problems.append((found.node_id, f"{where}: {found.message}"))
    return problems
