"""The pictures of a run report, as inline SVG: the task graph, the timeline and the spend.

The graph is laid out by grandalf's Sugiyama layout (layers, crossing reduction, edges routed
around nodes), left to right; this module only turns its coordinates into SVG. Every text that
comes from the run goes through `esc` (html-escaped, credentials masked by the caller).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from delegate.observe._report_data import RunView, SpendPoint, TaskView

__all__ = ["STATUS_COLORS", "esc", "gantt_svg", "graph_svg", "spend_svg"]

STATUS_COLORS = {
    "succeeded": "#2e9d5b",
    "failed": "#d64545",
    "skipped": "#9aa0a6",
    "cancelled": "#e08a2c",
    "waiting": "#3d7bd9",
    "held": "#7a5cc9",
    "running": "#d6b425",
    "pending": "#c9ccd1",
    "not run": "#c9ccd1",
}

_LABEL_CHARS = 28  # characters of a task id written in a node or a timeline row
_CHAR_W = 7.0  # px per character of the 12px monospace labels
_NODE_H = 26.0
_GAP = 12.0  # between nodes of a layer
_LAYER_GAP = 56.0  # between layers (room for the edges)
_SHELF_W = 1400.0  # components of the graph are packed in rows this wide


def esc(value: object) -> str:
    """`value` as text safe anywhere in HTML: in an element or in a quoted attribute."""
    return html.escape(str(value), quote=True)


def _label(task_id: str) -> str:
    return task_id if len(task_id) <= _LABEL_CHARS else task_id[: _LABEL_CHARS - 1] + "…"


def _color(status: str) -> str:
    return STATUS_COLORS.get(status, "#c9ccd1")


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:,.1f} s"


# -- the task graph ---------------------------------------------------------------------------


class _Box:
    """A node's box as grandalf lays it out (w across a layer, h along the edges)."""

    def __init__(self, w: float, h: float) -> None:
        self.w = w
        self.h = h
        self.xy: tuple[float, float] = (0.0, 0.0)


def _layout(
    tasks: Mapping[str, TaskView],
) -> tuple[dict[str, tuple[float, float, float]], list[tuple[str, str, list[tuple[float, float]]]]]:
    """Node centres and widths (x, y, width) and edge polylines, left to right, in px."""
    try:
        from grandalf.graphs import Edge, Graph, Vertex  # type: ignore[import-untyped]
        from grandalf.layouts import SugiyamaLayout  # type: ignore[import-untyped]
        from grandalf.routing import EdgeViewer, route_with_lines  # type: ignore[import-untyped]
    except ImportError:  # a core dependency: only a broken install lacks it
        from delegate.errors import ConfigError

        raise ConfigError(
            "the run report lays out its task graph with grandalf, which is not installed: "
            'pip install "grandalf>=0.8" (or reinstall delegate)'
        ) from None

    vertices = {task_id: Vertex(task_id) for task_id in tasks}
    for task_id, vertex in vertices.items():
        # Left to right: a layer is a column, so a box's height is its width across the layer.
        vertex.view = _Box(_NODE_H, 16 + _CHAR_W * len(_label(task_id)))
    edges = []
    for task in tasks.values():
        for dep in dict.fromkeys(task.deps):
            if dep in vertices and dep != task.id:
                edge = Edge(vertices[dep], vertices[task.id])
                edge.view = EdgeViewer()
                edges.append(edge)
    graph = Graph(list(vertices.values()), edges)
    nodes: dict[str, tuple[float, float, float]] = {}
    lines: list[tuple[str, str, list[tuple[float, float]]]] = []
    shelf_x = shelf_y = shelf_h = 0.0
    for component in graph.C:
        layout = SugiyamaLayout(component)
        layout.xspace, layout.yspace = _GAP, _LAYER_GAP
        layout.route_edge = route_with_lines
        layout.init_all()
        layout.draw(2 if len(component.sV) <= 300 else 1)
        placed = {v.data: v.view for v in component.sV}
        # Swap the axes (grandalf lays layers top to bottom), then pack the component.
        left = min(view.xy[1] - view.h / 2 for view in placed.values())
        top = min(view.xy[0] - view.w / 2 for view in placed.values())
        width = max(view.xy[1] + view.h / 2 for view in placed.values()) - left
        height = max(view.xy[0] + view.w / 2 for view in placed.values()) - top
        if shelf_x and shelf_x + width > _SHELF_W:
            shelf_x, shelf_y, shelf_h = 0.0, shelf_y + shelf_h + _LAYER_GAP / 2, 0.0
        dx, dy = shelf_x - left, shelf_y - top
        for task_id, view in placed.items():
            nodes[task_id] = (view.xy[1] + dx, view.xy[0] + dy, view.h)
        for edge in component.sE:
            points = [(y + dx, x + dy) for x, y in getattr(edge.view, "_pts", ())]
            lines.append((edge.v[0].data, edge.v[1].data, points))
        shelf_x += width + _LAYER_GAP
        shelf_h = max(shelf_h, height)
    return nodes, lines


def graph_svg(view: RunView, critical: Collection[str]) -> str:
    """The task graph: a box per task coloured by status, linked to the task's details; the
    critical path's boxes and edges drawn bold."""
    if not view.tasks:
        return "<p>No tasks.</p>"
    nodes, lines = _layout(view.tasks)
    pad = 8.0
    width = max(x + w / 2 for x, _, w in nodes.values()) + 2 * pad
    height = max(y for _, y, _ in nodes.values()) + _NODE_H / 2 + 2 * pad
    on_path = set(itertools.pairwise(critical))
    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="{-pad:.0f} {-pad:.0f} {width:.0f} {height:.0f}" '
        'role="img" aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0L10,5L0,10z" '
        'fill="#8a8f98"/></marker></defs>',
    ]
    for dep, task_id, points in lines:
        if len(points) < 2:
            continue
        crit = (dep, task_id) in on_path
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<polyline class="edge{" crit" if crit else ""}" points="{path}" '
            'marker-end="url(#arrow)"/>'
        )
    for task_id, (x, y, w) in nodes.items():
        task = view.tasks[task_id]
        crit = task_id in critical
        tip = f"{task_id}: {task.status}" + (f", {task.agent}" if task.agent else "")
        marked = ' data-critical="true"' if crit else ""
        parts.append(
            f'<a href="#task-{esc(task_id)}" class="node{" crit" if crit else ""}" '
            f'data-task="{esc(task_id)}" data-status="{esc(task.status)}"{marked}>'
            f"<title>{esc(tip)}</title>"
            f'<rect x="{x - w / 2:.1f}" y="{y - _NODE_H / 2:.1f}" width="{w:.1f}" '
            f'height="{_NODE_H:.0f}" rx="5" fill="{_color(task.status)}"/>'
            f'<text x="{x:.1f}" y="{y + 4:.1f}">{esc(_label(task_id))}</text></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- the timeline ----------------------------------------------------------------------------

_ROW = 18.0
_LABEL_W = 16 + _CHAR_W * _LABEL_CHARS
_TIME_W = 860.0


def _ticks(span: float) -> list[float]:
    """About six round tick values from 0 to `span`."""
    if span <= 0:
        return [0.0]
    raw = span / 6
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    count = int(span / step) + 1
    return [i * step for i in range(count)]


def _rows(view: RunView) -> list[tuple[str, str, float | None, float | None, str, str]]:
    """(key, label, start, end, status, tooltip) of each row: plans, then tasks by start."""
    from datetime import datetime

    rows = []
    for plan in view.plans:
        start, end = plan.get("started_at"), plan.get("finished_at")
        begin = datetime.fromisoformat(start).timestamp() if isinstance(start, str) else None
        finish = datetime.fromisoformat(end).timestamp() if isinstance(end, str) else None
        label = f"plan {plan.get('revision')}"
        status = "succeeded" if plan.get("complete") else "failed"
        rows.append((label, label, begin, finish, status, f"{label} ({plan.get('reason')})"))
    ordered = sorted(
        view.tasks.values(), key=lambda t: (t.started is None, t.started or 0.0, t.finished or 0.0)
    )
    for task in ordered:
        tip = f"{task.id}: {task.status}, {_seconds(task.seconds)}"
        rows.append((task.id, task.id, task.started, task.finished, task.status, tip))
    return rows


def gantt_svg(view: RunView, critical: Collection[str]) -> str:
    """The timeline: a row per plan revision and per task, a bar from its start to its end,
    the critical path's bars outlined; the axis in seconds from the run's start."""
    rows = _rows(view)
    starts = [row[2] for row in rows if row[2] is not None]
    ends = [row[3] for row in rows if row[3] is not None]
    t0 = min([view.started, *starts])
    t1 = max([view.finished or t0, *ends, *starts])
    span = max(t1 - t0, 1e-6)
    scale = _TIME_W / span
    height = 24 + _ROW * len(rows)
    width = _LABEL_W + _TIME_W + 16
    parts = [
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="timeline">'
    ]
    for tick in _ticks(span):
        x = _LABEL_W + tick * scale
        parts.append(
            f'<line class="tick" x1="{x:.1f}" y1="16" x2="{x:.1f}" y2="{height:.0f}"/>'
            f'<text class="axis" x="{x:.1f}" y="12">{tick:g} s</text>'
        )
    for index, (key, label, start, end, status, tip) in enumerate(rows):
        y = 20 + index * _ROW
        crit = key in critical and key in view.tasks
        attrs = f'data-row="{esc(key)}"' + (' data-critical="true"' if crit else "")
        parts.append(f'<g class="row{" crit" if crit else ""}" {attrs}><title>{esc(tip)}</title>')
        parts.append(f'<text class="label" x="4" y="{y + 12:.1f}">{esc(_label(label))}</text>')
        if start is not None:
            x = _LABEL_W + (start - t0) * scale
            w = max(((end if end is not None else t1) - start) * scale, 1.5)
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2:.1f}" width="{w:.1f}" height="{_ROW - 4:.0f}" '
                f'rx="2" fill="{_color(status)}"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


# -- the spend over time ---------------------------------------------------------------------


def spend_svg(points: Sequence[SpendPoint], budget: float | None, usd: Any) -> str:
    """Cumulative spend over time as a step line, and the budget's limit as a dashed line;
    `usd` formats a dollar amount for the axis."""
    width, height, left, bottom = 720.0, 220.0, 70.0, 24.0
    t0 = points[0].at
    span = max(max(p.at for p in points) - t0, 1e-6)
    most = max([p.usd for p in points] + ([budget] if budget else []) + [1e-9])
    top_usd = most * 1.08  # headroom above the highest line
    sx = (width - left - 10) / span
    sy = (height - bottom - 10) / top_usd

    def xy(at: float, value: float) -> str:
        return f"{left + (at - t0) * sx:.1f},{height - bottom - value * sy:.1f}"

    steps = [xy(points[0].at, points[0].usd)]
    for before, point in itertools.pairwise(points):
        steps += [xy(point.at, before.usd), xy(point.at, point.usd)]
    parts = [
        f'<svg class="spend" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
        f'height="{height:.0f}" role="img" aria-label="spend over time">',
        f'<line class="tick" x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
        f'y2="{height - bottom}"/>',
        f'<text class="axis" x="{left - 4}" y="{height - bottom}" text-anchor="end">$0</text>',
        f'<text class="axis" x="{left - 4}" y="{height - bottom - most * sy + 4:.1f}" '
        f'text-anchor="end">{esc(usd(most))}</text>',
        f'<text class="axis" x="{width - 10}" y="{height - 6}" text-anchor="end">'
        f"{span:.3g} s</text>",
        f'<polyline class="spent" points="{" ".join(steps)}"/>',
    ]
    for point in points[1:]:
        cx, cy = xy(point.at, point.usd).split(",")
        parts.append(
            f'<circle cx="{cx}" cy="{cy}" r="2.5">'
            f"<title>{esc(point.label)}: {esc(usd(point.usd))}</title></circle>"
        )
    if budget:
        y = height - bottom - budget * sy
        parts.append(
            f'<line class="budget" x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{width - 12}" y="{y + 14:.1f}" text-anchor="end">'
            f"budget {esc(usd(budget))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
