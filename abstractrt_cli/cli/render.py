"""Output for people and for programs.

Views are built from neutral pieces (tables and cards) and printed either plainly —
when stdout is not a terminal or ``NO_COLOR`` is set, without importing rich at all — or
with rich in a terminal. ``--json`` output goes through ``print_json`` only.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.models import RunState, RunStatus, WaitReason
from ..core.timeutil import parse_timestamp


def is_plain() -> bool:
    if os.environ.get("NO_COLOR"):
        return True
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return True


_JSON_STREAM: Optional[Any] = None  # the real stdout while a --json command runs


def print_json(data: Any) -> None:
    stream = _JSON_STREAM or sys.stdout
    stream.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()


@contextmanager
def json_output() -> Iterator[None]:
    """Keep stdout for the one JSON document: anything else printed (say, a ``print()``
    in a workflow's node) goes to stderr meanwhile."""
    global _JSON_STREAM
    saved, _JSON_STREAM = _JSON_STREAM, sys.stdout
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _JSON_STREAM = saved


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------- neutral pieces


@dataclass
class Table:
    columns: List[str]
    rows: List[List[str]] = field(default_factory=list)
    title: Optional[str] = None
    styles: List[Optional[str]] = field(default_factory=list)  # per row, rich mode only


@dataclass
class Card:
    title: str
    fields: List[Tuple[str, str]] = field(default_factory=list)
    footer: List[str] = field(default_factory=list)
    style: str = "cyan"
    code: Optional[Tuple[str, str]] = None  # (label, json text), highlighted in rich mode


class Printer:
    """Prints tables, cards and lines, plainly or with rich."""

    def __init__(self, plain: Optional[bool] = None) -> None:
        self.plain = is_plain() if plain is None else plain
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, soft_wrap=False)
        return self._console

    def line(self, text: str = "", style: Optional[str] = None) -> None:
        if self.plain:
            sys.stdout.write(text + "\n")
        else:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""))

    def table(self, t: Table) -> None:
        if self.plain:
            if t.title:
                sys.stdout.write(t.title + "\n")
            widths = [len(c) for c in t.columns]
            for row in t.rows:
                for i, cell in enumerate(row):
                    widths[i] = max(widths[i], len(cell))
            fmt = "  ".join("{:<%d}" % w for w in widths)
            sys.stdout.write(fmt.format(*[c.upper() for c in t.columns]).rstrip() + "\n")
            for row in t.rows:
                sys.stdout.write(fmt.format(*row).rstrip() + "\n")
            return
        from rich.table import Table as RichTable

        rt = RichTable(title=t.title, header_style="bold", expand=False)
        for c in t.columns:
            rt.add_column(c, overflow="fold")
        for i, row in enumerate(t.rows):
            style = t.styles[i] if i < len(t.styles) else None
            rt.add_row(*row, style=style)
        self.console.print(rt)

    def card(self, c: Card) -> None:
        if self.plain:
            sys.stdout.write(f"== {c.title} ==\n")
            width = max((len(k) for k, _ in c.fields), default=0)
            for k, v in c.fields:
                lines = v.splitlines() or [""]
                sys.stdout.write(f"  {k + ':':<{width + 1}} {lines[0]}\n")
                for extra in lines[1:]:
                    sys.stdout.write(f"  {'':<{width + 1}} {extra}\n")
            if c.code:
                sys.stdout.write(f"  {c.code[0]}:\n")
                for ln in c.code[1].splitlines():
                    sys.stdout.write(f"    {ln}\n")
            for f in c.footer:
                sys.stdout.write(f"  {f}\n")
            sys.stdout.write("\n")
            return
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table as RichTable
        from rich.text import Text

        grid = RichTable.grid(padding=(0, 1))
        grid.add_column(style="bold")
        grid.add_column()
        for k, v in c.fields:
            grid.add_row(k, Text(v))
        parts: List[Any] = [grid]
        if c.code:
            from rich.syntax import Syntax

            parts.append(Text(c.code[0], style="bold"))
            parts.append(Syntax(c.code[1], "json", theme="ansi_dark", background_color="default"))
        for f in c.footer:
            parts.append(Text(f, style="green"))
        self.console.print(Panel(Group(*parts), title=c.title, title_align="left",
                                 border_style=c.style))


# ---------------------------------------------------------------------------- helpers


def short(run_id: str) -> str:
    return run_id[:8]


def ago(iso: Optional[str], now: Optional[datetime] = None) -> str:
    if not iso:
        return "-"
    try:
        then = parse_timestamp(iso)
    except ValueError:
        return iso
    now = now or datetime.now(timezone.utc)
    secs = int((now - then).total_seconds())
    future = secs < 0
    secs = abs(secs)
    if secs < 60:
        text = f"{secs}s"
    elif secs < 3600:
        text = f"{secs // 60}m {secs % 60}s" if secs < 600 else f"{secs // 60}m"
    elif secs < 86400:
        text = f"{secs // 3600}h {secs % 3600 // 60}m"
    else:
        text = f"{secs // 86400}d {secs % 86400 // 3600}h"
    return f"in {text}" if future else f"{text} ago"


def clock(iso: Optional[str]) -> str:
    if not iso:
        return "-"
    try:
        return parse_timestamp(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def compact(value: Any, limit: int = 60) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           separators=(",", ":"), default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


STATUS_STYLE = {"running": "cyan", "waiting": "yellow", "completed": "green",
                "failed": "red", "cancelled": "magenta"}


def answer_command(run: RunState) -> Optional[str]:
    """The exact command that unblocks a waiting run."""
    w = run.waiting
    if w is None:
        return None
    rid = run.run_id
    if w.reason == WaitReason.USER:
        example = w.choices[0] if w.choices else "TEXT"
        return f"abstractrt resume {rid} --answer {shlex.quote(example)}"
    if w.reason == WaitReason.EVENT:
        return f"abstractrt emit {shlex.quote(w.wait_key or '')} --payload '{{}}'"
    if w.reason == WaitReason.JOB:
        return f"abstractrt resume {rid} --payload-file result.json"
    if w.reason == WaitReason.UNTIL:
        return f"abstractrt tick {rid}   (or let `abstractrt tick --all` from cron do it)"
    if w.reason == WaitReason.SUBWORKFLOW:
        details = w.details or {}
        child = details.get("sub_run_id")
        if (details.get("sub_waiting") or {}).get("reason") == "user":
            return f"abstractrt answer {rid}   (answers the child run {child})"
        return f"abstractrt show {child}   (the child run must finish first)"
    return None


def wait_fields(run: RunState) -> List[Tuple[str, str]]:
    w = run.waiting
    if w is None:
        return []
    out: List[Tuple[str, str]] = []
    if w.prompt:
        out.append(("Prompt", w.prompt))
    if w.choices:
        out.append(("Choices", "\n".join(f"{i}) {c}" for i, c in enumerate(w.choices, 1))))
        out.append(("Free text", "allowed" if w.allow_free_text else "no — pick a choice"))
    out.append(("Waiting for", {"user": "a person's answer", "event": "an event",
                                "until": "a time", "job": "a job done elsewhere",
                                "subworkflow": "a child run"}.get(w.reason.value, w.reason.value)
                + f" ({w.reason.value})"))
    if w.wait_key:
        out.append(("Wait key", w.wait_key))
    out.append(("Waiting since", f"{clock(run.updated_at)} ({ago(run.updated_at)})"))
    if w.until:
        due = ago(w.until)
        out.append(("Due", f"{clock(w.until)} ({'due now' if due.endswith('ago') else due})"))
    details = dict(w.details or {})
    retry = details.pop("retry", None)
    if retry:
        out.append(("Retry", f"attempt {retry.get('next_attempt')} of {retry.get('max_attempts')} "
                             f"after: {compact(retry.get('last_error'), 80)}"))
    if w.reason == WaitReason.SUBWORKFLOW:
        sub = details.get("sub_waiting") or {}
        out.append(("Child", f"{details.get('sub_run_id')} ({details.get('sub_workflow_id')})"))
        if sub.get("prompt"):
            out.append(("Child asks", str(sub["prompt"])))
    elif w.reason == WaitReason.JOB:
        out.append(("Job", compact(details, 200)))
    elif details and w.reason != WaitReason.UNTIL:
        out.append(("Details", compact(details, 200)))
    return out


def waiting_card(run: RunState) -> Card:
    cmd = answer_command(run)
    return Card(
        title=f"run {short(run.run_id)} · {run.workflow_id} · {run.current_node}",
        fields=[("Run", run.run_id)] + wait_fields(run),
        footer=[f"→ {cmd}"] if cmd else [],
        style="yellow",
    )


def runs_table(runs: Sequence[RunState], corrupt: Sequence[Any] = ()) -> Table:
    t = Table(columns=["run", "workflow", "status", "node", "updated", "waiting on"])
    for r in runs:
        w = r.waiting
        on = ""
        if w is not None:
            on = f"{w.reason.value}: " + compact(w.prompt or w.wait_key or w.until or "", 40)
        elif r.status == RunStatus.FAILED:
            on = compact(r.error, 45)
        t.rows.append([short(r.run_id), r.workflow_id, r.status.value, r.current_node,
                       ago(r.updated_at), on])
        t.styles.append(STATUS_STYLE.get(r.status.value))
    for c in corrupt:
        t.rows.append(["?", "?", "CORRUPT", "", "", compact(str(c), 60)])
        t.styles.append("bold red")
    return t


def ledger_table(records: Sequence[Dict[str, Any]]) -> Table:
    t = Table(columns=["#", "time", "node", "what", "status", "try", "took", "detail"])
    for rec in records:
        kind = rec.get("kind") or "effect"
        eff = rec.get("effect") or {}
        what = eff.get("type") if kind == "effect" else kind
        status = rec.get("status") or ""
        detail = ""
        if rec.get("error"):
            detail = "error: " + compact(rec["error"], 70)
        elif kind == "resume":
            res = rec.get("result") or {}
            detail = f"by {rec.get('actor_id') or '?'}: " + compact(res.get("payload"), 55)
        elif kind == "cancel":
            detail = f"by {rec.get('actor_id') or '?'}: " + compact((rec.get("result") or {}).get("reason") or "", 50)
        elif kind == "limits":
            changes = (rec.get("result") or {}).get("changes") or {}
            detail = f"by {rec.get('actor_id') or '?'}: " + ", ".join(
                f"{k} {v.get('old')}→{v.get('new')}" for k, v in changes.items())
        elif status == "waiting":
            wait = (rec.get("result") or {}).get("wait") or {}
            detail = "waits: " + compact(wait.get("prompt") or wait.get("wait_key") or wait.get("until"), 60)
        elif kind == "complete":
            detail = "output: " + compact((rec.get("result") or {}).get("output"), 60)
        else:
            detail = compact(rec.get("result"), 70)
        t.rows.append([str(rec.get("seq", "")), _hms(rec.get("ended_at") or rec.get("started_at")),
                       rec.get("node_id") or "", what or "", status,
                       str(rec.get("attempt") or "") if kind == "effect" else "",
                       _took(rec.get("started_at"), rec.get("ended_at")), detail])
        t.styles.append({"failed": "red", "completed": "green", "waiting": "yellow",
                         "resumed": "cyan", "cancelled": "magenta"}.get(status))
    return t


def _hms(iso: Optional[str]) -> str:
    if not iso:
        return ""
    try:
        return parse_timestamp(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _took(start: Optional[str], end: Optional[str]) -> str:
    if not start or not end:
        return ""
    try:
        ms = (parse_timestamp(end) - parse_timestamp(start)).total_seconds() * 1000
    except ValueError:
        return ""
    return f"{ms:.0f}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"


def run_summary_card(run: RunState, *, heading: Optional[str] = None) -> Card:
    """Where a run stands after start/tick/resume: the prompt if it waits."""
    if run.status == RunStatus.WAITING:
        card = waiting_card(run)
        if heading:
            card.title = f"{heading} · {card.title}"
        return card
    fields = [("Run", run.run_id), ("Workflow", run.workflow_id),
              ("Status", run.status.value), ("Node", run.current_node)]
    code = None
    if run.status == RunStatus.COMPLETED:
        code = ("Output", json.dumps(run.output, indent=2, ensure_ascii=False, default=str))
    if run.error:
        fields.append(("Error", run.error))
    return Card(title=heading or f"run {short(run.run_id)}", fields=fields, code=code,
                style=STATUS_STYLE.get(run.status.value, "cyan"))


def show_card(data: Dict[str, Any]) -> Card:
    run: RunState = data["run"]
    fields = [
        ("Run", run.run_id), ("Workflow", run.workflow_id), ("Status", run.status.value),
        ("Node", run.current_node), ("Created", f"{clock(run.created_at)} ({ago(run.created_at)})"),
        ("Updated", f"{clock(run.updated_at)} ({ago(run.updated_at)})"),
    ]
    if run.actor_id:
        fields.append(("Started by", run.actor_id))
    if run.parent_run_id:
        fields.append(("Parent", run.parent_run_id))
    children = data.get("children") or []
    if children:
        fields.append(("Children", "\n".join(f"{c.run_id} {c.workflow_id} {c.status.value}"
                                              for c in children)))
    if run.workflow_source:
        fields.append(("Source", run.workflow_source))
    fields.extend(wait_fields(run))
    if run.output is not None:
        fields.append(("Output", compact(run.output, 200)))
    if run.error:
        fields.append(("Error", run.error))
    lim = data.get("limits")
    if lim:
        it, tok = lim["iterations"], lim["tokens"]
        fields.append(("Limits", f"iterations {it['current']}/{it['max']}, "
                                 f"tokens {tok['estimated_used']}/{tok['max']}"
                                 + (" (warning)" if it["warning"] or tok["warning"] else "")))
    fields.append(("Ledger", f"{run.ledger_count} records at last checkpoint"))
    user_vars = {k: v for k, v in run.vars.items() if k != "_limits"}
    cmd = answer_command(run)
    return Card(title=f"run {short(run.run_id)}", fields=fields,
                code=("Vars", json.dumps(user_vars, indent=2, ensure_ascii=False, default=str)),
                footer=[f"→ {cmd}"] if cmd else [],
                style=STATUS_STYLE.get(run.status.value, "cyan"))


def workflows_table(items: Sequence[Dict[str, Any]]) -> Table:
    t = Table(columns=["workflow", "entry", "nodes", "source", "description"])
    for it in items:
        src = os.path.relpath(it["source"]) if it.get("source") else ""
        if it.get("error"):
            t.rows.append([it.get("workflow_id") or "BROKEN", "", "", src, "error: " + it["error"]])
            t.styles.append("red")
            continue
        desc = (it.get("description") or "").strip().splitlines()
        t.rows.append([it["workflow_id"], it["entry_node"], ", ".join(it["nodes"]), src,
                       desc[0] if desc else ""])
        t.styles.append(None)
    return t
