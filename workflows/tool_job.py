"""Tool and LLM jobs: ``tool_calls`` run by this module's handler, ``llm_call`` passed through.

``EFFECT_HANDLERS`` registers a handler for ``tool_calls`` (it counts words). There is no
handler for ``llm_call``, so the run waits with reason ``job``, the request in
``waiting.details``; whoever does the work answers with
``abstractrt resume RUN --payload-file result.json``.

Vars: ``text`` (default: a short sentence).
"""

from abstractrt_cli import Effect, EffectType, NonRetryableError, StepPlan, WorkflowSpec


def run_tools(run, effect):
    # (run, effect) signature; returning a dict means "completed with this result", and
    # raising means failed (retried as the effect policy says).
    results = []
    for call in effect.payload.get("calls", []):
        if call.get("name") == "word_count":
            results.append({"name": "word_count", "output": len(call["arguments"]["text"].split())})
        else:
            # Retrying cannot make an unknown tool known: fail at once, whatever the policy.
            raise NonRetryableError(f"unknown tool {call.get('name')!r}")
    return {"results": results}


EFFECT_HANDLERS = {"tool_calls": run_tools}


def count(run, ctx):
    run.vars.setdefault("text", "durable workflows survive crashes and cron")
    return StepPlan(
        node_id="count",
        effect=Effect(EffectType.TOOL_CALLS,
                      {"calls": [{"name": "word_count", "arguments": {"text": run.vars["text"]}}]},
                      result_key="tools"),
        next_node="summarise",
    )


def summarise(run, ctx):
    words = run.vars["tools"]["results"][0]["output"]
    return StepPlan(
        node_id="summarise",
        effect=Effect(EffectType.LLM_CALL,
                      {"prompt": f"Summarise in one line ({words} words): {run.vars['text']}",
                       "model": "any"},
                      result_key="llm"),
        next_node="done",
    )


def done(run, ctx):
    return StepPlan(node_id="done", complete_output={
        "words": run.vars["tools"]["results"][0]["output"],
        "summary": (run.vars.get("llm") or {}).get("content")})


tool_job = WorkflowSpec(
    workflow_id="tool_job", entry_node="count",
    nodes={"count": count, "summarise": summarise, "done": done})
