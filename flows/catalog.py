"""Every always-on flow, found by its spec: a module of `flows/` with a `SPEC = FlowSpec(...)`.

Adding a flow is adding its module: the worker registry (`soma flow run NAME`), the processes
`make up` runs, the scrape targets, the gateway's state routes and the docs' flow table all
read this catalog. Importing it must stay cheap (no Faust): flow modules import only specs
and processors at module level.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import flows
from flows.errors import UnknownFlow
from flows.spec import FlowSpec

_NOT_FLOWS = frozenset({"catalog", "errors", "failpoints", "spec"})


@functools.cache
def flow_specs() -> tuple[FlowSpec, ...]:
    """The specs of every flow, in name order."""
    specs: dict[str, FlowSpec] = {}
    for module_info in pkgutil.iter_modules(flows.__path__):
        if module_info.ispkg or module_info.name in _NOT_FLOWS:
            continue
        module = importlib.import_module(f"flows.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, FlowSpec):
            if spec.name in specs:
                raise ValueError(f"two flows are named {spec.name!r}")
            specs[spec.name] = spec
    return tuple(sorted(specs.values(), key=lambda s: s.name))


def flow_names() -> list[str]:
    return [spec.name for spec in flow_specs()]


def flow_spec(name: str) -> FlowSpec:
    """The spec of the flow called `name`."""
    for spec in flow_specs():
        if spec.name == name:
            return spec
    raise UnknownFlow(f"unknown flow {name!r}; known: {', '.join(flow_names())}")


def flow_table_markdown() -> str:
    """The docs' table of flows (docs/flows.md holds it between markers; a test compares)."""
    rows = [
        "| flow | group | sources | tables | outputs | state pages | workers |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in flow_specs():
        pages = ", ".join(f"`/v1/state/{p.name}/{{id}}`" for p in spec.state_pages) or "-"
        rows.append(
            f"| `{spec.name}` | `{spec.app_id}` | "
            + ", ".join(f"`{s}`" for s in spec.sources)
            + " | "
            + (", ".join(f"`{t.name}`" for t in spec.tables) or "-")
            + " | "
            + (", ".join(f"`{o}`" for o in spec.outputs) or "-")
            + f" | {pages} | {spec.workers} |"
        )
    return "\n".join(rows) + "\n"
