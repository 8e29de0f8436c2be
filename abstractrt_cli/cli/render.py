"""Output for people and for programs.

Views are built from neutral pieces (tables and cards) and printed either plainly —
when stdout is not a terminal or ``NO_COLOR`` is set, without importing rich at all — or
with rich in a terminal. ``--json`` output goes through ``print_json`` only.

While a command runs, ``sys.stdout`` is pointed at stderr (``command_output``): whatever
else prints (a ``print()`` in a workflow's node) never lands in the output a script or
``--quiet`` relies on. Everything here writes to the real stdout (``out()``).
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.models import RunState, RunStatus, WaitReason
from ..core.timeutil import parse_timestamp
from ..ops.session import waiting_since

_STDOUT: Optional[Any] = None  # the real stdout while a command runs


def out() -> Any:
    """Where output for the person or program goes: the real stdout."""
    return _STDOUT or sys.stdout


def is_plain() -> bool:
    if os.environ.get("NO_COLOR"):
        return True
    try:
        return not out().isatty()
    except (AttributeError, ValueError):
        return True


def print_json(data: Any) -> None:
    stream = out()
    stream.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()


def flush() -> None:
    out().flush()


@contextmanager
def command_output() -> Iterator[None]:
    """Keep stdout for the command's own output: anything else printed meanwhile (say, a
    ``print()`` in a workflow's node) goes to stderr."""
    global _STDOUT
    saved, _STDOUT = _STDOUT, sys.stdout
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        _STDOUT = saved


@contextmanager
def real_stdout() -> Iterator[None]:
    """``sys.stdout`` back to the real one for a moment (``input()`` prompts on it)."""
    if _STDOUT is None:
        yield
        return
    with redirect_stdout(_STDOUT):
        yield


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------- neutral pieces


class Table:
    """Columns and rows of text; a style per row (rich mode only)."""

    # Plain classes, not dataclasses: this module is imported by every command, and a
    # dataclass costs its generated methods at import.
    def __init__(self, columns: List[str], rows: Optional[List[List[str]]] = None,
                 title: Optional[str] = None, styles: Optional[List[Optional[str]]] = None) -> None:
        self.columns = columns
        self.rows = rows if rows is not None else []
        self.title = title
        self.styles = styles if styles is not None else []


class Card:
    """A titled block of fields, footer lines and an optional highlighted JSON text."""

    def __init__(self, title: str, fields: Optional[List[Tuple[str, str]]] = None,
                 footer: Optional[List[str]] = None, style: str = "cyan",
                 code: Optional[Tuple[str, str]] = None,
                 field_styles: Optional[Dict[str, str]] = None) -> None:
        self.title = title
        self.fields = fields if fields is not None else []
        self.footer = footer if footer is not None else []
        self.style = style
        self.code = code  # (label, json text), highlighted in rich mode
        self.field_styles = field_styles if field_styles is not None else {}


class Printer:
    """Prints tables, cards and lines, plainly or with rich."""

    def __init__(self, plain: Optional[bool] = None) -> None:
        self.plain = is_plain() if plain is None else plain
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=out(), highlight=False, soft_wrap=False)
        return self._console

    def line(self, text: str = "", style: Optional[str] = None) -> None:
        if self.plain:
            out().write(text + "\n")
        else:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""))

    def table(self, t: Table) -> None:
        if self.plain:
            if t.title:
                out().write(t.title + "\n")
            widths = [len(c) for c in t.columns]
            for row in t.rows:
                for i, cell in enumerate(row):
                    widths[i] = max(widths[i], len(cell))
            fmt = "  ".join("{:<%d}" % w for w in widths)
            out().write(fmt.format(*[c.upper() for c in t.columns]).rstrip() + "\n")
            for row in t.rows:
                out().write(fmt.format(*row).rstrip() + "\n")
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
            out().write(f"== {c.title} ==\n")
            width = max((len(k) for k, _ in c.fields), default=0)
            for k, v in c.fields:
                lines = v.splitlines() or [""]
                out().write(f"  {k + ':':<{width + 1}} {lines[0]}\n")
                for extra in lines[1:]:
                    out().write(f"  {'':<{width + 1}} {extra}\n")
            if c.code:
                out().write(f"  {c.code[0]}:\n")
                for ln in c.code[1].splitlines():
                    out().write(f"    {ln}\n")
            for f in c.footer:
                out().write(f"  {f}\n")
            out().write("\n")
            return
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table as RichTable
        from rich.text import Text

        grid = RichTable.grid(padding=(0, 1))
        grid.add_column(style="bold")
        grid.add_column()
        for k, v in c.fields:
            grid.add_row(k, Text(v, style=c.field_styles.get(k, "")))
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


def plural(n: int, word: str, many: Optional[str] = None) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


def _local(iso: Optional[str]) -> Optional[datetime]:
    if not iso:
        return None
    try:
        return parse_timestamp(iso).astimezone()  # people see their local time…
    except ValueError:
        return None


def _offset(dt: datetime) -> str:
    """``+01:00``, ``-05:30``, ``+00:00`` (…with its offset, so it is never ambiguous)."""
    z = dt.strftime("%z")
    return f"{z[:3]}:{z[3:]}" if len(z) == 5 else z


def clock(iso: Optional[str]) -> str:
    """A time for people: local, with its UTC offset (JSON keeps UTC ISO-8601)."""
    dt = _local(iso)
    if dt is None:
        return iso or "-"
    return dt.strftime("%Y-%m-%d %H:%M:%S ") + _offset(dt)


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
    import shlex
    rid = run.run_id
    if w.reason == WaitReason.USER and w.schema is not None:
        from ..ops.answers import form_fields

        fields = [f for f in form_fields(w.schema) if f.required]
        if fields:
            sets = []
            for f in fields:
                value = f.enum[0] if f.enum is not None else f.default if f.has_default else {
                    "number": "NUMBER", "integer": "NUMBER", "boolean": "true"}.get(
                        (f.types or [""])[0], "TEXT")
                text = value if isinstance(value, str) else json.dumps(value)
                sets.append(f"--set {shlex.quote(f'{f.name}={text}')}")
            return f"abstractrt resume {rid} " + " ".join(sets) + f"   (or: abstractrt answer {rid})"
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
    out_: List[Tuple[str, str]] = []
    if w.prompt:
        out_.append(("Prompt", w.prompt))
    if w.choices:
        out_.append(("Choices", "\n".join(f"{i}) {c}" for i, c in enumerate(w.choices, 1))))
        out_.append(("Free text", "allowed" if w.allow_free_text else "no — pick a choice"))
    out_.append(("Waiting for", {"user": "a person's answer", "event": "an event",
                                 "until": "a time", "job": "a job done elsewhere",
                                 "subworkflow": "a child run"}.get(w.reason.value, w.reason.value)
                 + f" ({w.reason.value})"))
    if w.wait_key:
        out_.append(("Wait key", w.wait_key))
    since = waiting_since(run)
    out_.append(("Waiting since", f"{clock(since)} ({ago(since)})"))
    if w.until:
        due = ago(w.until)
        out_.append(("Due", f"{clock(w.until)} ({'due now' if due.endswith('ago') else due})"))
    out_.extend(human_wait_fields(run, since))
    details = dict(w.details or {})
    retry = details.pop("retry", None)
    if retry:
        out_.append(("Retry", f"attempt {retry.get('next_attempt')} of {retry.get('max_attempts')} "
                              f"after: {compact(retry.get('last_error'), 80)}"))
    if w.reason == WaitReason.SUBWORKFLOW:
        sub = details.get("sub_waiting") or {}
        out_.append(("Child", f"{details.get('sub_run_id')} ({details.get('sub_workflow_id')})"))
        if sub.get("prompt"):
            out_.append(("Child asks", str(sub["prompt"])))
    elif w.reason == WaitReason.JOB:
        out_.append(("Job", compact(details, 200)))
    elif details and w.reason != WaitReason.UNTIL:
        out_.append(("Details", compact(details, 200)))
    return out_


def human_wait_fields(run: RunState, since: str) -> List[Tuple[str, str]]:
    """PRODUCT §8 for people: the deadline (local time, time left) and what happens then,
    who may answer, the reminders, the fields the payload needs."""
    w = run.waiting
    assert w is not None
    out_: List[Tuple[str, str]] = []
    if w.deadline:
        left = ago(w.deadline)
        when = (f"{left[3:]} left" if left.startswith("in ")
                else f"passed {left}; the next tick acts on it")
        out_.append(("Deadline", f"{clock(w.deadline)} ({when})"))
        out_.append(("Then", on_timeout_text(w.on_timeout)))
    if w.allowed_actors:
        out_.append(("Who may answer", ", ".join(w.allowed_actors)))
    if w.remind_every:
        from ..ops.queries import next_reminder

        nxt = next_reminder(since, w.remind_every, deadline=w.deadline)
        out_.append(("Reminders", f"every {w.remind_every}; "
                     + (f"next {clock(nxt)} ({ago(nxt)})" if nxt else "none left before the deadline")))
    if w.schema is not None:
        out_.append(("Payload", schema_text(w.schema)))
    return out_


def on_timeout_text(spec: Any) -> str:
    """What a deadline does, for people."""
    if isinstance(spec, dict) and "answer" in spec:
        return f"answered {spec['answer']!r} by the deadline"
    if isinstance(spec, dict) and "payload" in spec:
        return f"resumed by the deadline with {compact(spec['payload'], 80)}"
    if isinstance(spec, dict) and "goto" in spec:
        return f"escalates: goes on at node {spec['goto']!r}"
    return "the run fails"


def schema_text(schema: Dict[str, Any]) -> str:
    """An object schema's fields in order (type or values, required, default); any other
    schema as JSON."""
    from ..ops.answers import form_fields

    fields = form_fields(schema)
    if not fields:
        return "must match " + compact(schema, 120)
    parts = []
    for f in fields:
        what = ("one of " + "/".join(str(v) for v in f.enum)) if f.enum is not None \
            else "/".join(f.types) or "any"
        extra = [what] + (["required"] if f.required else []) + (
            [f"default {json.dumps(f.default, ensure_ascii=False)[:30]}"] if f.has_default else [])
        parts.append(f"{f.name} ({', '.join(extra)})")
    return "\n".join(parts)


def dry_run_table(moves: Sequence[Any]) -> Table:
    """``tick --all --dry-run``: each run that would move, and why."""
    t = Table(columns=["run", "workflow", "node", "why", "detail"])
    for m in moves:
        run, w = m.run, m.run.waiting
        detail = ""
        if m.reason == "deadline due" and w is not None:
            detail = f"deadline {clock(w.deadline)}; then {on_timeout_text(w.on_timeout)}"
        elif m.reason in ("timer due", "retry due") and w is not None and w.until:
            detail = f"due {clock(w.until)}"
        elif m.reason == "child ended" and w is not None:
            detail = f"child {short((w.details or {}).get('sub_run_id') or '')}"
        t.rows.append([short(m.run_id), run.workflow_id, run.current_node, m.reason, detail])
        t.styles.append(None)
    return t


def waiting_card(run: RunState) -> Card:
    cmd = answer_command(run)
    return Card(
        title=f"run {short(run.run_id)} · {run.workflow_id} · {run.current_node}",
        fields=[("Run", run.run_id)] + wait_fields(run),
        footer=[f"→ {cmd}"] if cmd else [],
        style="yellow",
    )


def waiting_on(run: RunState) -> str:
    """The "waiting on" column: what the run waits for, its reason said once."""
    w = run.waiting
    if w is None:
        return ""
    details = w.details or {}
    if w.reason == WaitReason.USER:
        return "user: " + compact(w.prompt or w.wait_key or "", 40)
    if w.reason == WaitReason.EVENT:
        return "event " + compact(w.wait_key or "", 40)
    if w.reason == WaitReason.UNTIL:
        return ("retry at " if details.get("retry") else "until ") + clock(w.until)
    if w.reason == WaitReason.JOB:
        return "job: " + str(details.get("effect_type") or compact(w.wait_key or "", 40))
    if w.reason == WaitReason.SUBWORKFLOW:
        child = details.get("sub_run_id") or ""
        return f"child {short(child)} ({details.get('sub_workflow_id') or '?'})"
    return f"{w.reason.value}: " + compact(w.wait_key or "", 40)


def runs_table(runs: Sequence[RunState], corrupt: Sequence[Any] = ()) -> Table:
    t = Table(columns=["run", "workflow", "status", "node", "updated", "waiting on"])
    for r in runs:
        on = waiting_on(r)
        if not on and r.status == RunStatus.FAILED:
            on = compact(r.error, 45)
        t.rows.append([short(r.run_id), r.workflow_id, r.status.value, r.current_node,
                       ago(r.updated_at), on])
        t.styles.append(STATUS_STYLE.get(r.status.value))
    for c in corrupt:
        rid = getattr(c, "run_id", None)
        t.rows.append([short(rid) if rid else "?", "?", "CORRUPT", "", "", compact(str(c), 60)])
        t.styles.append("bold red")
    return t


def corrupt_row(c: Any) -> Dict[str, Any]:
    """A corrupt run as a ``runs --json`` row: the id from its file name, the error."""
    return {"run_id": getattr(c, "run_id", None), "status": "corrupt",
            "path": getattr(c, "path", None), "error": c.message,
            "code": getattr(c, "code", "corrupt_run")}


def ledger_table(records: Sequence[Dict[str, Any]]) -> Table:
    t = Table(columns=["#", "time", "node", "what", "status", "try", "took", "detail"])
    for rec in records:
        kind = rec.get("kind") or "effect"
        eff = rec.get("effect") or {}
        what = eff.get("type") if kind == "effect" else kind
        status = rec.get("status") or ""
        res = rec.get("result") or {}
        by = f"by {rec.get('actor_id') or '?'}"
        detail = ""
        if rec.get("error"):
            detail = "error: " + compact(rec["error"], 70)
        elif kind == "start":
            start_vars = {k: v for k, v in (res.get("vars") or {}).items() if k != "_limits"}
            detail = f"{by}: vars " + compact(start_vars, 60)
        elif kind == "resume":
            detail = f"{by}: " + compact(res.get("payload"), 55)
        elif kind == "cancel":
            detail = f"{by}: " + compact(res.get("reason") or "", 50)
        elif kind == "limits":
            changes = res.get("changes") or {}
            detail = f"{by}: " + ", ".join(
                f"{k} {v.get('old')}→{v.get('new')}" for k, v in changes.items())
        elif status == "waiting":
            wait = res.get("wait") or {}
            detail = "waits: " + compact(wait.get("prompt") or wait.get("wait_key") or wait.get("until"), 60)
        elif kind == "complete":
            detail = "output: " + compact(res.get("output"), 60)
        else:
            detail = compact(rec.get("result"), 70)
        t.rows.append([str(rec.get("seq", "")), clock(rec.get("ended_at") or rec.get("started_at"))
                       if (rec.get("ended_at") or rec.get("started_at")) else "",
                       rec.get("node_id") or "", what or "", status,
                       str(rec.get("attempt") or "") if kind == "effect" else "",
                       "" if kind == "start" else _took(rec.get("started_at"), rec.get("ended_at")),
                       detail])
        t.styles.append({"failed": "red", "completed": "green", "waiting": "yellow",
                         "resumed": "cyan", "cancelled": "magenta"}.get(status))
    return t


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
    where = error_where(run)
    if where:
        fields.append(("Raised at", where))
    return Card(title=heading or f"run {short(run.run_id)}", fields=fields, code=code,
                style=STATUS_STYLE.get(run.status.value, "cyan"), field_styles=status_styles(run))


def status_styles(run: RunState) -> Dict[str, str]:
    """The status in its colour (failed in red), and the error too."""
    return {"Status": "bold " + STATUS_STYLE.get(run.status.value, "cyan"),
            "Error": "red", "Raised at": "red", "Traceback": "red"}


def error_where(run: RunState) -> Optional[str]:
    info = run.error_info or {}
    if info.get("file"):
        return f"{info['file']}, line {info.get('line')}" if info.get("line") else str(info["file"])
    return None


def traceback_text(run: RunState) -> Optional[str]:
    """The stored traceback of a node's exception (the last frames, bounded by the kernel)."""
    lines = (run.error_info or {}).get("traceback")
    if not lines or not isinstance(lines, list):
        return None
    return "\n".join(str(ln).rstrip("\n") for ln in lines)


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
    where = error_where(run)
    if where:
        fields.append(("Raised at", where))
    tb = traceback_text(run)
    if tb:
        fields.append(("Traceback", tb))
    lim = data.get("limits")
    if lim:
        fields.append(("Limits", limits_line(lim)))
    fields.append(("Ledger", f"{plural(run.ledger_count, 'record')} at last checkpoint"))
    user_vars = {k: v for k, v in run.vars.items() if k != "_limits"}
    cmd = answer_command(run)
    return Card(title=f"run {short(run.run_id)}", fields=fields,
                code=("Vars", json.dumps(user_vars, indent=2, ensure_ascii=False, default=str)),
                footer=[f"→ {cmd}"] if cmd else [],
                style=STATUS_STYLE.get(run.status.value, "cyan"), field_styles=status_styles(run))


def show_json(data: Dict[str, Any]) -> Dict[str, Any]:
    """``show --json``: the run's JSON plus its children and its limit status."""
    doc = data["run"].to_jsonable()
    doc["children"] = [{"run_id": c.run_id, "workflow_id": c.workflow_id,
                        "status": c.status.value} for c in data["children"]]
    doc["limit_status"] = data["limits"]
    return doc


def limits_line(st: Dict[str, Any]) -> str:
    it, tok = st["iterations"], st["tokens"]
    return (f"iterations {it['current']}/{it['max']} ({it['pct']}%), tokens "
            f"{tok['estimated_used']}/{tok['max']} ({tok['pct']}%)"
            + (" (warning)" if it.get("warning") or tok.get("warning") else ""))


def limits_table(data: Dict[str, Any]) -> Table:
    t = Table(columns=["limit", "value"], title=f"limits of run {data['run_id']}")
    for k, v in sorted(data["limits"].items()):
        if k.startswith("_"):  # bookkeeping (what a person let pass), not a limit
            continue
        t.rows.append([k, "null" if v is None else str(v)])
    return t


def verified_line(report: Dict[str, Any]) -> str:
    """``ledger --verify`` that passed: the chain, the state it proves, the signature."""
    parts = [str(report.get("message"))]
    state = report.get("state")
    if state == "proved":
        parts.append("checkpointed state proved")
    elif state:
        parts.append(f"checkpointed state {state}")
    if report.get("signature"):
        parts.append({"valid": "signature valid", "unsigned": "unsigned",
                      "no key": "signed, but no key to check it"}.get(report["signature"],
                                                                   str(report["signature"])))
    if report.get("pending"):
        parts.append(str(report["pending"]))
    return f"ledger of run {report['run_id']} verified: " + "; ".join(parts)


def tick_summary(summary: Any) -> str:
    return (f"tick --all: {summary.moved} moved ({summary.completed} completed, "
            f"{summary.waiting} waiting, {summary.failed} failed, {summary.running} still running), "
            f"{summary.skipped_busy} skipped busy")


def workflows_table(items: Sequence[Dict[str, Any]]) -> Table:
    t = Table(columns=["workflow", "entry", "nodes", "source", "description"])
    for it in items:
        src = os.path.relpath(it["source"]) if it.get("source") else ""
        if it.get("error"):
            t.rows.append([it.get("workflow_id") or "BROKEN", it.get("entry_node") or "",
                           ", ".join(it.get("nodes") or []), src, "error: " + it["error"]])
            t.styles.append("red")
            continue
        desc = (it.get("description") or "").strip().splitlines()
        t.rows.append([it["workflow_id"], it["entry_node"], ", ".join(it["nodes"]), src,
                       desc[0] if desc else ""])
        t.styles.append(None)
    return t


def config_table(report: Dict[str, Any]) -> Table:
    t = Table(columns=["setting", "value", "from"], title=f"abstractrt {report['version']}")
    for row in report["settings"]:
        value = "" if row["value"] is None else str(row["value"])
        if row["setting"] == "config_file" and row["value"] and not row.get("exists"):
            value += " (not found)"
        source = {"option": "option", "env": "environment", "config": "config file",
                  "default": "default"}.get(row["from"], row["from"])
        t.rows.append([row["setting"], value, source])
    return t


def answer_report_lines(report: Any) -> List[str]:
    """``answer --script`` / ``start --answers``: each prompt answered, and those left."""
    lines = [f"answered {plural(len(report.answered), 'prompt')}"]
    for a in report.answered:
        lines.append(f"  {a['run_id'][:8]}  {compact(a['prompt'], 50)!s}  → "
                     f"{compact(a['payload'], 40)}  (rule {a['rule']}; run {a['status']})")
    if report.unmatched:
        lines.append(f"{plural(len(report.unmatched), 'prompt')} left unanswered (no rule matched)")
        for u in report.unmatched:
            lines.append(f"  {u['run_id'][:8]}  {compact(u['prompt'], 60)}")
    return lines


def interactive_summary_lines(report: Any) -> List[str]:
    """Interactive ``answer``: each prompt answered (with the answer), each one skipped."""
    n, k = len(report.answered), len(report.skipped)
    head = f"answered {plural(n, 'prompt')}" + (f", skipped {k}" if k else "")
    lines = [head]
    for a in report.answered:
        lines.append(f"  ✓ {a['run_id'][:8]}  {compact(a['prompt'], 80)}  → "
                     f"{compact(a['response'], 60)}  (run {a['status']})")
    for sk in report.skipped:
        lines.append(f"  – {sk['run_id'][:8]}  {compact(sk['prompt'], 80)}  (skipped)")
    return lines


class ProgressBar:
    """A rich progress bar on stderr, only in a terminal and only when there is much to do."""

    THRESHOLD = 20

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < self.THRESHOLD:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(file=sys.stderr), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("ticking runs", total=total)
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
