"""UI-format workflows (what ComfyUI's Save writes) into the API prompt its frontend would send.

This follows what the frontend's graphToPrompt does (ComfyUI_frontend 1.27): every node that is
not virtual (Note, MarkdownNote, Reroute, PrimitiveNode, subgraph and group containers) and not
muted (mode 2) or bypassed (mode 4) becomes one prompt entry; its widget values come from
`widgets_values` in the order the node's `/object_info` entry gives its widget inputs (plus the
UI-only widgets the frontend adds: a seed's "control after generate", an upload button), and its
links are followed through Reroutes, bypassed nodes (to the input of the matching type) and
subgraphs (inner nodes get ids "<subgraph node>:<inner node>"). Inputs linked from a node that is
not emitted are dropped, as the frontend drops them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.workflow import Workflow, WorkflowError

MUTED, BYPASSED = 2, 4
VIRTUAL = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_NAMES = ("seed", "noise_seed")  # INT inputs that get a "control after generate" widget
# the nodes the frontend gives an audio player widget (sent as audioUI: "")
AUDIO_PLAYERS = frozenset(
    {"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus"}
)
# Titles the frontend (1.27, English) shows where ComfyUI 0.3.6x gives no display name: the names
# these nodes had before they moved to ComfyUI's v3 node schema.
FRONTEND_TITLES = {
    "ImageBlend": "Image Blend",
    "ImageBlur": "Image Blur",
    "ImageQuantize": "Image Quantize",
    "ImageSharpen": "Image Sharpen",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}
INPUT_NODE, OUTPUT_NODE = "-10", "-20"  # a subgraph's own input and output nodes


class ConversionError(WorkflowError):
    """A UI-format workflow that cannot become a prompt: one line per node at fault."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = ["This workflow cannot be converted for this master:"]
        super().__init__("\n".join([*lines, *(f"  {p}" for p in self.problems)]))


def is_ui_workflow(data: object) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


@dataclass(frozen=True)
class Widget:
    name: str
    serialize: bool = True  # False: UI only (control after generate, an upload button)
    default: Any = None
    always: Any = None  # a value the frontend always sends (LoadAudio's audioUI: "")


@dataclass(frozen=True)
class Link:
    origin: str
    origin_slot: int
    target: str
    target_slot: int


@dataclass
class Graph:
    """The root graph or one subgraph definition."""

    nodes: dict[str, dict[str, Any]]
    links: dict[int, Link]
    inputs: list[dict[str, Any]] = field(default_factory=list)  # a subgraph's own inputs
    outputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Dto:
    """One node where it executes: its graph, and the subgraph nodes around it."""

    node: dict[str, Any]
    graph: Graph
    path: tuple[str, ...] = ()
    container: Dto | None = None  # the subgraph node it sits in

    @property
    def node_id(self) -> str:
        return str(self.node.get("id"))

    @property
    def exec_id(self) -> str:
        return ":".join((*self.path, self.node_id))

    @property
    def kind(self) -> str:
        return str(self.node.get("type", ""))

    @property
    def mode(self) -> int:
        mode = self.node.get("mode", 0)
        return mode if isinstance(mode, int) else 0

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return [i for i in self.node.get("inputs") or [] if isinstance(i, dict)]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return [o for o in self.node.get("outputs") or [] if isinstance(o, dict)]


@dataclass(frozen=True)
class Resolved:
    """Where an input's value comes from: a node's output, or a value (a subgraph's widget)."""

    origin: str = ""
    slot: int = 0
    value: Any = None
    is_value: bool = False


def to_prompt(
    ui: Mapping[str, Any],
    object_info: Mapping[str, Any],
    distributed_workers: Sequence[Mapping[str, Any]] = (),
) -> Workflow:
    """The prompt ComfyUI's frontend makes of `ui` against a master's `/object_info`;
    `distributed_workers` are the master's ComfyUI-Distributed workers (for DistributedValue)."""
    return _Converter(ui, object_info, distributed_workers).convert()


class _Converter:
    def __init__(
        self,
        ui: Mapping[str, Any],
        object_info: Mapping[str, Any],
        workers: Sequence[Mapping[str, Any]],
    ) -> None:
        if not is_ui_workflow(ui):
            raise WorkflowError("not a ComfyUI workflow: it has no 'nodes' and 'links'")
        problems = shape_problems(ui)
        if problems:
            raise ConversionError(problems)
        self.info = object_info
        self.workers = [w for w in workers if w.get("enabled")]
        self.problems: list[str] = []
        definitions = (ui.get("definitions") or {}).get("subgraphs") or []
        self.subgraphs = {str(d.get("id")): _graph(d) for d in definitions}
        self.groups: dict[str, Any] = ((ui.get("extra") or {}).get("groupNodes")) or {}
        root = _graph(ui)
        try:
            _expand_group_nodes(root, self.groups, object_info)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            problem = f"a group node's definition is not the frontend's ({exc})"
            raise ConversionError([problem]) from None
        self.dtos: dict[str, Dto] = {}
        self._add(root, (), None)
        if self.problems:
            raise ConversionError(self.problems)
        self.values: dict[str, dict[str, Any]] = {}  # exec id → widget name → value

    def _add(self, graph: Graph, path: tuple[str, ...], container: Dto | None) -> None:
        for node in graph.nodes.values():
            dto = Dto(node, graph, path, container)
            self.dtos[dto.exec_id] = dto
            if dto.kind not in self.subgraphs:
                continue
            around = [d.kind for d in _containers(container)]
            if dto.kind in around:  # the frontend would recurse for ever
                self.problems.append(f"{_who(dto)}: this subgraph contains itself")
            else:
                self._add(self.subgraphs[dto.kind], (*path, dto.node_id), dto)

    # the prompt

    def convert(self) -> Workflow:
        for dto in self.dtos.values():
            self.values[dto.exec_id] = self._widget_values(dto)
        for dto in self.dtos.values():
            if dto.kind == "PrimitiveNode":
                self._apply_primitive(dto)
        output: Workflow = {}
        for dto in self.dtos.values():
            if self._is_virtual(dto) or dto.mode in (MUTED, BYPASSED):
                continue
            if dto.kind not in self.info:
                self.problems.append(_missing_node(dto))
                continue
            output[dto.exec_id] = self._entry(dto)
        if self.problems:
            raise ConversionError(self.problems)
        if not output:
            raise WorkflowError(
                "it has nothing to run: no nodes, or only notes and muted or bypassed ones"
            )
        for entry in output.values():  # inputs linked from nodes that are not sent go too
            inputs = entry["inputs"]
            for name, value in list(inputs.items()):
                if _is_link(value) and value[0] not in output:
                    del inputs[name]
        return output

    def _entry(self, dto: Dto) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        values = self.values[dto.exec_id]
        for widget in self._widgets(dto):
            if widget.serialize:
                value = widget.always if widget.always is not None else values.get(widget.name)
                inputs[widget.name] = {"__value__": value} if isinstance(value, list) else value
        for slot, slot_input in enumerate(dto.inputs):
            found = self._resolve_input(dto, slot, None, set())
            if found is None:
                continue
            name = str(slot_input.get("name"))
            if found.is_value:
                value = found.value
                inputs[name] = {"__value__": value} if isinstance(value, list) else value
            else:
                inputs[name] = [found.origin, found.slot]
        if dto.kind == "DistributedValue":
            inputs.update(self._distributed_value(dto))
        title = (
            dto.node.get("title")
            or self.info[dto.kind].get("display_name")
            or FRONTEND_TITLES.get(dto.kind, dto.kind)
        )
        return {"inputs": inputs, "class_type": dto.kind, "_meta": {"title": title}}

    def _is_virtual(self, dto: Dto) -> bool:
        return dto.kind in VIRTUAL or dto.kind in self.subgraphs

    # widgets

    def _widgets(self, dto: Dto) -> list[Widget]:
        spec = self.info.get(dto.kind)
        return widgets_of(dto.kind, spec) if isinstance(spec, Mapping) else []

    def _widget_values(self, dto: Dto) -> dict[str, Any]:
        stored = dto.node.get("widgets_values")
        widgets = self._widgets(dto)
        if isinstance(stored, dict):
            return {w.name: stored.get(w.name, w.default) for w in widgets}
        stored = stored if isinstance(stored, list) else []
        return {w.name: stored[n] if n < len(stored) else w.default for n, w in enumerate(widgets)}

    def _apply_primitive(self, dto: Dto) -> None:
        """A PrimitiveNode copies its value into the widget of every input it feeds."""
        stored = dto.node.get("widgets_values")
        if not isinstance(stored, list) or not stored or not dto.outputs:
            return
        for link_id in dto.outputs[0].get("links") or []:
            link = dto.graph.links.get(link_id)
            target = dto.graph.nodes.get(link.target) if link else None
            if link is None or target is None:
                continue
            inputs = [i for i in target.get("inputs") or [] if isinstance(i, dict)]
            if link.target_slot >= len(inputs):
                continue
            name = (inputs[link.target_slot].get("widget") or {}).get("name")
            target_id = ":".join((*dto.path, link.target))
            if name and name in self.values.get(target_id, {}):
                self.values[target_id][name] = stored[0]

    # links

    def _resolve_input(
        self, dto: Dto, slot: int, want: str | None, visited: set[tuple[str, int, str]]
    ) -> Resolved | None:
        key = (dto.exec_id, slot, "in")
        if key in visited:
            self.problems.append(f"{_who(dto)}: its links go round in a loop")
            return None
        visited.add(key)
        inputs = dto.inputs
        if slot >= len(inputs):
            return None
        link_id = inputs[slot].get("link")
        if link_id is None:
            return None
        link = dto.graph.links.get(link_id)
        name = inputs[slot].get("name")
        if link is None:
            self.problems.append(
                f"{_who(dto)}: input '{name}' has link {link_id}, which is missing"
            )
            return None
        if link.origin == INPUT_NODE:  # from outside the subgraph it is in
            return self._subgraph_input(dto, link.origin_slot, visited)
        origin = self.dtos.get(":".join((*dto.path, link.origin)))
        if origin is None:
            self.problems.append(
                f"{_who(dto)}: input '{name}' comes from node {link.origin}, "
                "which is not in the workflow"
            )
            return None
        return self._resolve_output(
            origin, link.origin_slot, want or inputs[slot].get("type"), visited
        )

    def _subgraph_input(
        self, dto: Dto, slot: int, visited: set[tuple[str, int, str]]
    ) -> Resolved | None:
        container = dto.container
        if container is None:
            return None
        definition = self.subgraphs[container.kind]
        if slot >= len(definition.inputs):
            return None
        name = definition.inputs[slot].get("name")
        outer = next((n for n, i in enumerate(container.inputs) if i.get("name") == name), None)
        if outer is not None and container.inputs[outer].get("link") is not None:
            return self._resolve_input(container, outer, None, visited)
        widget = self._promoted_widget(container, slot)
        return None if widget is None else Resolved(value=widget, is_value=True)

    def _promoted_widget(self, container: Dto, slot: int) -> Any:
        """The subgraph node's own widget for that input (one per input that feeds a widget)."""
        definition = self.subgraphs[container.kind]
        widget_slots = [n for n, i in enumerate(definition.inputs) if _feeds_widget(definition, i)]
        values = container.node.get("widgets_values")
        if slot not in widget_slots or not isinstance(values, list):
            return None
        index = widget_slots.index(slot)
        return values[index] if index < len(values) else None

    def _resolve_output(
        self, dto: Dto, slot: int, want: Any, visited: set[tuple[str, int, str]]
    ) -> Resolved | None:
        key = (dto.exec_id, slot, "out")
        if key in visited:
            self.problems.append(f"{_who(dto)}: its links go round in a loop")
            return None
        visited.add(key)
        if dto.mode == BYPASSED:
            index = _bypass_slot(dto, slot, want)
            return None if index < 0 else self._resolve_input(dto, index, None, visited)
        if dto.kind in self.subgraphs:
            return self._subgraph_output(dto, slot, want, visited)
        if dto.kind in VIRTUAL:  # a Reroute passes its input on; others have none
            return self._resolve_input(dto, slot, want, visited) if dto.inputs else None
        return Resolved(dto.exec_id, slot)

    def _subgraph_output(
        self, dto: Dto, slot: int, want: Any, visited: set[tuple[str, int, str]]
    ) -> Resolved | None:
        definition = self.subgraphs[dto.kind]
        if slot >= len(definition.outputs):
            return None
        for link_id in definition.outputs[slot].get("linkIds") or []:
            link = definition.links.get(link_id)
            if link is None:
                continue
            if link.origin == INPUT_NODE:  # straight through
                inner = Dto(
                    {"id": OUTPUT_NODE, "inputs": []}, definition, (*dto.path, dto.node_id), dto
                )
                return self._subgraph_input(inner, link.origin_slot, visited)
            inner_dto = self.dtos.get(":".join((*dto.path, dto.node_id, link.origin)))
            if inner_dto is not None:
                return self._resolve_output(inner_dto, link.origin_slot, want, visited)
        return None

    # ComfyUI-Distributed's DistributedValue (its frontend extension rebuilds these widgets)

    def _distributed_value(self, dto: Dto) -> dict[str, Any]:
        values = self.values[dto.exec_id]
        kind, options = self._value_target(dto)
        raw_default = values.get("default_value")
        try:
            store = json.loads(values.get("worker_values") or "{}")
        except (TypeError, ValueError):
            store = {}
        store = store if isinstance(store, dict) else {}
        if kind is None:  # not connected: back to a neutral default
            kind, raw_default, store = "STRING", "", {"_type": "STRING"}
        made: dict[str, Any] = {
            "default_value": raw_default,
            "_dv_default": _dv_initial(raw_default, kind, options),
        }
        if self.workers:
            next_store: dict[str, Any] = {"_type": kind}
            if kind == "COMBO" and options is not None:
                next_store["_options"] = options
            by_id = {}
            for number, worker in enumerate(self.workers, start=1):
                key, worker_id = str(number), worker.get("id")
                saved = (store.get("_by_worker_id") or {}).get(worker_id) if worker_id else None
                value = _dv_initial(
                    saved if saved is not None else store.get(key), kind, options, True
                )
                made[f"_dv_worker_{key}"] = value
                if value not in ("", None):
                    next_store[key] = _js_string(value)
                    if worker_id:
                        by_id[str(worker_id)] = _js_string(value)
            if by_id:
                next_store["_by_worker_id"] = by_id
            store = next_store
        else:
            store["_type"] = kind
            if kind == "COMBO" and options is not None:
                store["_options"] = options
            else:
                store.pop("_options", None)
        made["worker_values"] = _js_json(store)
        return made

    def _value_target(self, dto: Dto) -> tuple[str | None, list[Any] | None]:
        """The type of the input its value goes to (the first link of its output)."""
        links = (dto.outputs[0].get("links") or []) if dto.outputs else []
        link = dto.graph.links.get(links[0]) if links else None
        target = dto.graph.nodes.get(link.target) if link else None
        if link is None or target is None:
            return None, None
        inputs = [i for i in target.get("inputs") or [] if isinstance(i, dict)]
        name = inputs[link.target_slot].get("name") if link.target_slot < len(inputs) else None
        spec = self.info.get(str(target.get("type")))
        found = (
            _input_spec(str(target.get("type")), spec, str(name))
            if isinstance(spec, Mapping) and name
            else None
        )
        if found is None:
            return "STRING", None
        kind, options = found
        if isinstance(kind, list):
            return "COMBO", kind
        if kind == "COMBO":
            return "COMBO", list(options.get("options") or [])
        return (kind if kind in ("INT", "FLOAT") else "STRING"), None


def widgets_of(class_type: str, spec: Mapping[str, Any]) -> list[Widget]:
    """A node's widgets in the frontend's order: its widget inputs (required, then optional, in
    `input_order`), each INT seed followed by its "control after generate", then the inputs the
    frontend's own extensions add (an audio player, an upload button)."""
    widgets: list[Widget] = []
    for name, kind, options in _inputs(class_type, spec):
        if kind == "AUDIO_UI":
            widgets.append(Widget(name, always=""))
        elif kind in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
            widgets.append(Widget(name, serialize=False, default=options.get("value")))
        elif (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput"):
            widgets.append(Widget(name, default=_default(kind, options)))
            if kind == "INT":
                control = options.get("control_after_generate", name in SEED_NAMES)
            else:
                control = (isinstance(kind, list) or kind == "COMBO") and bool(
                    options.get("control_after_generate")
                )
            if control:
                widgets.append(Widget("control_after_generate", serialize=False, default="fixed"))
    return widgets


def _inputs(class_type: str, spec: Mapping[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(name, type, options) of each input, as the frontend orders them after its extensions
    added theirs to the required ones (those come last when `input_order` is given)."""
    declared = spec.get("input") or {}
    required = dict(declared.get("required") or {})
    if class_type in AUDIO_PLAYERS:
        required["audioUI"] = ["AUDIO_UI", {}]
    uploads = [e for e in required.values() if isinstance(e, list) and _upload_kind(e)]
    if uploads:
        kind = _upload_kind(uploads[0])
        required["upload"] = [kind, {"value": "image" if kind == "IMAGEUPLOAD" else None}]
    sections = {"required": required, "optional": dict(declared.get("optional") or {})}
    order = spec.get("input_order")
    names: list[tuple[str, str]] = []
    if isinstance(order, dict):
        for section in ("required", "optional"):
            names += [(section, n) for n in order.get(section) or [] if n in sections[section]]
    seen = {n for _, n in names}
    names += [(s, n) for s in ("required", "optional") for n in sections[s] if n not in seen]
    for section, name in names:
        entry = sections[section][name]
        if isinstance(entry, list) and entry:
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            yield str(name), entry[0], options


def _upload_kind(entry: list[Any]) -> str:
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    if not (isinstance(entry[0], list) or entry[0] == "COMBO"):
        return ""
    if any(
        options.get(k) is True for k in ("image_upload", "video_upload", "animated_image_upload")
    ):
        return "IMAGEUPLOAD"
    return "AUDIOUPLOAD" if options.get("audio_upload") is True else ""


def _input_spec(
    class_type: str, spec: Mapping[str, Any], name: str
) -> tuple[Any, dict[str, Any]] | None:
    return next(((k, o) for n, k, o in _inputs(class_type, spec) if n == name), None)


def _default(kind: Any, options: Mapping[str, Any]) -> Any:
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    if kind == "COMBO":
        choices = options.get("options") or []
        return choices[0] if choices else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(str(kind))


def _containers(dto: Dto | None) -> Iterator[Dto]:
    while dto is not None:
        yield dto
        dto = dto.container


def shape_problems(ui: Mapping[str, Any]) -> list[str]:
    """What is not in the frontend's shape, a line per node or link: a list or null where an
    object belongs, a link id or slot that is no whole number (JSON's 4.0 is 4, as in the
    frontend's JavaScript)."""
    problems: list[str] = []
    definitions = ui.get("definitions") or {}
    subgraphs = definitions.get("subgraphs") or [] if isinstance(definitions, dict) else None
    if not isinstance(subgraphs, list):
        return ["'definitions' is not an object with a list of 'subgraphs'"]
    graphs: list[tuple[str, Any]] = [("", ui)]
    for n, definition in enumerate(subgraphs):
        if not isinstance(definition, dict):
            problems.append(f"subgraph definition {n + 1} is {_kind_of(definition)}, not an object")
            continue
        graphs.append(
            (f"in subgraph “{definition.get('name') or definition.get('id')}”: ", definition)
        )
    for where, graph in graphs:
        problems += [where + p for p in _graph_problems(graph)]
    return problems


def _graph_problems(graph: Mapping[str, Any]) -> list[str]:
    nodes, links = graph.get("nodes") or [], graph.get("links") or []
    if not isinstance(nodes, list) or not isinstance(links, list):
        return ["'nodes' and 'links' must be lists"]
    problems = []
    for n, node in enumerate(nodes):
        if isinstance(node, dict):
            problems += _node_problems(n, node)
        else:
            problems.append(f"node entry {n + 1} is {_kind_of(node)}, not an object")
    for n, link in enumerate(links):
        fields = _link_fields(link)
        if fields is None or not all(_is_whole(v) for v in (fields[0], fields[2], fields[4])):
            problems.append(f"link entry {n + 1} ({json.dumps(link)[:80]}) is not a link")
    return problems


def _node_problems(n: int, node: Mapping[str, Any]) -> list[str]:
    who = f"node {node.get('id')} ({node.get('type')})"
    problems = []
    if not _is_id(node.get("id")):
        problems.append(f"node entry {n + 1} ({node.get('type')}): its id is not a number")
    if not isinstance(node.get("type"), str):
        problems.append(f"{who}: its type is {_kind_of(node.get('type'))}, not a node name")
    for key in ("inputs", "outputs"):
        slots = node.get(key) or []
        if not isinstance(slots, list) or not all(isinstance(s, dict) for s in slots):
            problems.append(f"{who}: its {key} are not a list of objects")
    for slot in node.get("inputs") or []:
        if isinstance(slot, dict) and not _is_whole(slot.get("link"), none=True):
            link = json.dumps(slot.get("link"))
            problems.append(f"{who}: input '{slot.get('name')}' has link {link}, not a link number")
    if not isinstance(node.get("widgets_values", []), list | dict):
        problems.append(f"{who}: its widgets_values are neither a list nor an object")
    if not _is_whole(node.get("mode", 0)):
        problems.append(f"{who}: its mode {json.dumps(node.get('mode'))} is not a number")
    return problems


def _link_fields(link: Any) -> tuple[Any, ...] | None:
    """[id, origin, origin slot, target, target slot] of either spelling of a link."""
    if isinstance(link, list) and len(link) >= 5:
        return tuple(link[:5])
    if isinstance(link, dict):
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot")
        return tuple(link.get(k, 0) for k in keys)
    return None


def _is_whole(value: Any, none: bool = False) -> bool:
    if value is None:
        return none
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value: Any) -> bool:
    return _is_whole(value) or (isinstance(value, str) and bool(value))


def _kind_of(value: Any) -> str:
    return {list: "a list", dict: "an object", str: "a text", type(None): "null"}.get(
        type(value), f"the number {value}" if isinstance(value, int | float) else "a value"
    )


def _graph(data: Mapping[str, Any]) -> Graph:
    """A graph in shape_problems' shape; JSON's whole floats (4.0) read as the ints they are."""
    nodes = {}
    for node in data.get("nodes") or []:
        node_id = _whole(node.get("id"))
        nodes[str(node_id)] = {**node, "id": node_id}
    links: dict[int, Link] = {}
    for entry in data.get("links") or []:
        link_id, origin, origin_slot, target, target_slot = map(_whole, _link_fields(entry) or ())
        links[link_id] = Link(str(origin), int(origin_slot), str(target), int(target_slot))
    return Graph(nodes, links, list(data.get("inputs") or []), list(data.get("outputs") or []))


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _feeds_widget(definition: Graph, subgraph_input: Mapping[str, Any]) -> bool:
    for link_id in subgraph_input.get("linkIds") or []:
        link = definition.links.get(link_id)
        target = definition.nodes.get(link.target) if link else None
        inputs = [i for i in (target or {}).get("inputs") or [] if isinstance(i, dict)]
        if (
            link is not None
            and link.target_slot < len(inputs)
            and inputs[link.target_slot].get("widget")
        ):
            return True
    return False


def _bypass_slot(dto: Dto, slot: int, want: Any) -> int:
    """Which input a bypassed node passes to its output `slot`, for an input of type `want`:
    the same slot if its type fits both, else the first input of exactly `want`'s type, else
    the first that fits both; -1 for none."""
    inputs, outputs = dto.inputs, dto.outputs
    if want in ("*", ""):
        return slot if len(inputs) > slot else 0
    made = outputs[slot].get("type") if slot < len(outputs) else None
    types = [i.get("type") for i in inputs]
    if slot < len(types) and _fits(types[slot], made) and _fits(types[slot], want):
        return slot
    if want in types:
        return types.index(want)
    return next((n for n, t in enumerate(types) if _fits(t, made) and _fits(t, want)), -1)


def _fits(a: Any, b: Any) -> bool:
    """LiteGraph's isValidConnection: "*" fits all, "A,B" fits A and B, case aside."""
    a = 0 if a in ("", "*") else a
    b = 0 if b in ("", "*") else b
    if not a or not b or a == b:
        return True
    first, second = str(a).lower().split(","), str(b).lower().split(",")
    return any(x == y for x in first for y in second)


def _expand_group_nodes(graph: Graph, groups: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """Legacy group nodes ("workflow>Name", defined in extra.groupNodes) into their inner nodes,
    numbered "<group node>:<index>" as the frontend numbers them."""
    for group_id, group in list(graph.nodes.items()):
        kind = str(group.get("type", ""))
        definition = groups.get(kind.removeprefix("workflow>")) if "workflow>" in kind else None
        if not isinstance(definition, dict):
            continue
        del graph.nodes[group_id]
        inner = [n for n in definition.get("nodes") or [] if isinstance(n, dict)]
        ids = [f"{group_id}:{n.get('index', i)}" for i, n in enumerate(inner)]
        internal = {
            (t, ts): (o, os)
            for o, os, t, ts, *_ in definition.get("links") or []
            if o is not None and t is not None
        }
        group_inputs = [i for i in group.get("inputs") or [] if isinstance(i, dict)]
        sockets = iter(i for i in group_inputs if not i.get("widget"))
        widget_inputs = iter(i for i in group_inputs if i.get("widget"))
        values = iter(group.get("widgets_values") or [])
        next_link = max([0, *(k for k in graph.links if isinstance(k, int))]) + 1
        for index, (node, node_id) in enumerate(zip(inner, ids, strict=True)):
            copy = {**node, "id": node_id, "inputs": []}
            for slot, slot_input in enumerate(node.get("inputs") or []):
                made = dict(slot_input)
                if (index, slot) in internal:
                    origin, origin_slot = internal[(index, slot)]
                    graph.links[next_link] = Link(ids[origin], origin_slot, node_id, slot)
                    made["link"], next_link = next_link, next_link + 1
                else:
                    outer = next(widget_inputs if slot_input.get("widget") else sockets, None)
                    made["link"] = None
                    if outer is not None and outer.get("link") in graph.links:
                        link = graph.links[outer["link"]]
                        graph.links[outer["link"]] = Link(
                            link.origin, link.origin_slot, node_id, slot
                        )
                        made["link"] = outer["link"]
                copy["inputs"].append(made)
            kind, stored = str(node.get("type")), node.get("widgets_values")
            spec, own = info.get(kind), stored if isinstance(stored, list) else []
            count = len(widgets_of(kind, spec)) if isinstance(spec, Mapping) else len(own)
            copy["widgets_values"] = [
                next(values, own[n] if n < len(own) else None) for n in range(count)
            ]
            graph.nodes[node_id] = copy
        for number, (index, slot, *_) in enumerate(definition.get("external") or []):
            for link_id, link in list(graph.links.items()):
                if link.origin == group_id and link.origin_slot == number:
                    graph.links[link_id] = Link(ids[index], slot, link.target, link.target_slot)


def _missing_node(dto: Dto) -> str:
    properties = dto.node.get("properties") or {}
    pack = properties.get("cnr_id") or properties.get("aux_id")
    where = f"the custom-node pack “{pack}”" if pack else "a custom-node pack"
    return f"{_who(dto)}: this master has no such node; install {where} on it"


def _who(dto: Dto) -> str:
    title = dto.node.get("title")
    named = f" “{title}”" if title and title != dto.kind else ""
    return f"node {dto.exec_id}{named} ({dto.kind})"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _dv_initial(value: Any, kind: str, options: list[Any] | None, worker: bool = False) -> Any:
    """DistributedValue's widget values as its frontend code makes them."""
    if value is None and worker:
        if kind in ("INT", "FLOAT"):
            return 0
        return options[0] if kind == "COMBO" and options else ""
    if kind in ("INT", "FLOAT"):
        number = _js_number(value)
        return math.trunc(number) if kind == "INT" else number
    if kind == "COMBO" and options:
        text = "" if value is None else _js_string(value)
        return text if text in options else options[0]
    return "" if value is None else _js_string(value)


def _js_number(value: Any) -> float | int:
    """JavaScript's Number(value), NaN and infinities taken as 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        number: float | int = value
    else:
        text = str(value).strip() if value is not None else ""
        try:
            number = float(text) if text else 0
        except ValueError:
            return 0
    if isinstance(number, float) and (math.isnan(number) or math.isinf(number)):
        return 0
    return int(number) if isinstance(number, float) and number.is_integer() else number


def _js_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _js_json(value: Any) -> str:
    """JSON.stringify: integer-like keys first, ascending, then the others in order."""

    def ordered(item: Any) -> Any:
        if isinstance(item, dict):
            numeric = sorted((k for k in item if _array_index(k)), key=int)
            rest = [k for k in item if not _array_index(k)]
            return {k: ordered(item[k]) for k in (*numeric, *rest)}
        if isinstance(item, list):
            return [ordered(i) for i in item]
        return item

    return json.dumps(ordered(value), separators=(",", ":"), ensure_ascii=False)


def _array_index(key: str) -> bool:
    return key.isdigit() and str(int(key)) == key and int(key) < 2**32 - 1


def model_sources(ui: Mapping[str, Any]) -> dict[str, str]:
    """File name → download URL of the models a UI workflow lists (`models` on the workflow or
    in a node's properties, subgraphs' nodes included), as ComfyUI's templates give them."""
    nodes = [n for n in _list(ui.get("nodes")) if isinstance(n, dict)]
    for definition in _list(_dict(ui.get("definitions")).get("subgraphs")):
        if isinstance(definition, dict):
            nodes += [n for n in _list(definition.get("nodes")) if isinstance(n, dict)]
    listed = _list(ui.get("models"))
    for node in nodes:
        listed += _list(_dict(node.get("properties")).get("models"))
    sources: dict[str, str] = {}
    for model in listed:
        if not isinstance(model, dict):
            continue
        name, url = model.get("name"), model.get("url")
        if (
            isinstance(name, str)
            and isinstance(url, str)
            and url.startswith(("https://", "http://"))
        ):
            sources.setdefault(name, url)
    return sources


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
