"""Agent loop: the model answers or asks for tools, the tools run, and again until it stops asking.

llm_call, then tool_calls with the calls the model made, then llm_call with their results,
until an answer comes without tool calls. ``save_note`` writes a file, so each of its
calls waits for a person first (``TOOL_APPROVAL``): approve or deny.

With the config key ``llm`` (any OpenAI-compatible server, e.g. Ollama at
http://localhost:11434/v1) the runtime calls the model; without it each llm_call waits as
a job that someone answers with ``abstractrt resume RUN --payload '{"content": "..."}'``.
The run's limits guard the loop: at max_iterations model calls or max_tokens tokens it
asks a person whether to go on.

Vars: ``task`` (what to do), ``model`` (default: the one configured).
Try it:  abstractrt start agent_loop --set task="What is 17 + 25? Save it as a note."
"""

import json
import os
import re

from abstractrt_cli import Effect, EffectType, StepPlan, WorkflowSpec

DEFAULT_TASK = "What is 17 + 25? Save the answer as a note titled 'sum'."
SYSTEM = ("You are a careful assistant. Use the tools when they help; when you are done, "
          "answer in one short sentence.")


# ---------------------------------------------------------------------------- tools
# Run as fn(**arguments); what they return goes back to the model, and what they raise
# goes back as a failed call (the run goes on).


def add(a, b):
    return a + b


def word_count(text):
    return len(str(text).split())


def save_note(title, text):
    # Notes land in $AGENT_NOTES_DIR (default: ./notes), under a name made safe for a file.
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(title)).strip("_")
    if not name:
        raise ValueError("a note needs a title with letters or digits")
    folder = os.environ.get("AGENT_NOTES_DIR") or "notes"
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(str(text) + "\n")
    return {"saved": path}


TOOLS = {"add": add, "word_count": word_count, "save_note": save_note}
TOOL_APPROVAL = {"save_note": "ask"}  # a person approves each note before it is written


def _spec(name, description, **params):
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": {k: {"type": t} for k, t in params.items()},
                       "required": list(params)}}}


# The tools as the model sees them (OpenAI's format, sent unchanged).
TOOL_SPECS = [
    _spec("add", "Add two numbers.", a="number", b="number"),
    _spec("word_count", "Count the words of a text.", text="string"),
    _spec("save_note", "Save a short note to a file (a person approves it first).",
          title="string", text="string"),
]


# ---------------------------------------------------------------------------- nodes
# think and act change nothing: each may run again for the same step (after an
# approval, or at a limit), so only observe, once the tools have run, adds to the
# conversation.


def think(run, ctx):
    v = run.vars
    v.setdefault("task", DEFAULT_TASK)
    v.setdefault("messages", [{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": v["task"]}])
    payload = {"messages": v["messages"], "tools": TOOL_SPECS}
    if v.get("model"):
        payload["model"] = v["model"]
    return StepPlan(node_id="think", effect=Effect(EffectType.LLM_CALL, payload, result_key="reply"),
                    next_node="act")


def act(run, ctx):
    reply = run.vars.get("reply") or {}
    calls = reply.get("tool_calls") or []
    if not calls:
        return StepPlan(node_id="act", complete_output={
            "answer": reply.get("content"), "rounds": run.vars.get("rounds", 0)})
    # The llm_call result's tool_calls are passed on as they are.
    return StepPlan(node_id="act",
                    effect=Effect(EffectType.TOOL_CALLS, {"tool_calls": calls}, result_key="tools"),
                    next_node="observe")


def observe(run, ctx):
    v = run.vars
    reply = v["reply"]
    v["messages"].append({"role": "assistant", "content": reply.get("content"), "tool_calls": [
        {"id": r["call_id"], "type": "function",
         "function": {"name": r["name"], "arguments": json.dumps(_arguments(c))}}
        for c, r in zip(reply["tool_calls"], v["tools"]["results"], strict=True)]})
    for r in v["tools"]["results"]:
        told = r["output"] if r["success"] else {"error": r["error"]}
        v["messages"].append({"role": "tool", "tool_call_id": r["call_id"],
                              "content": json.dumps(told)})
    v["rounds"] = v.get("rounds", 0) + 1
    return StepPlan(node_id="observe", next_node="think")


def _arguments(call):
    # A model's call as llm_call returns it holds an object; a job's answer may hold text.
    args = call.get("arguments") or {}
    return json.loads(args) if isinstance(args, str) and args.strip() else args or {}


agent_loop = WorkflowSpec(workflow_id="agent_loop", entry_node="think",
                          nodes={"think": think, "act": act, "observe": observe})
