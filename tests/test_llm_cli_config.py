"""PRODUCT §10's settings: the config key ``llm`` and a module's ``LLM``, ``TOOLS`` and
``TOOL_APPROVAL``, each refused with one line naming the file when malformed, and the
module's ``LLM`` overriding the config key by key."""

from __future__ import annotations

import json

import pytest

from cli_helpers import CLI, assert_one_line_error
from llm_fake import FakeLLM

from abstractrt_cli.loader import load_workflows
from abstractrt_cli.settings import llm_problem, read_config_file


@pytest.fixture
def cli(tmp_path, monkeypatch):
    return CLI(tmp_path, monkeypatch, copy_examples=False)


@pytest.fixture
def srv():
    with FakeLLM() as s:
        yield s


CHAT = '''
"""Asks the model once."""
from abstractrt_cli import Effect, StepPlan, WorkflowSpec

def ask(run, ctx):
    return StepPlan("ask", effect=Effect("llm_call", {"prompt": "hi"}, "reply"), next_node="done")

def done(run, ctx):
    return StepPlan("done", complete_output={"content": run.vars["reply"]["content"]})

chat = WorkflowSpec("chat", "ask", {"ask": ask, "done": done})
'''


# ---------------------------------------------------------------------------- module settings

BAD_MODULES = [
    ("LLM = {'base_url': 'http://x/v1', 'temprature': 0}",
     "LLM: unknown key(s) temprature (known: base_url, model, api_key_env, timeout)"),
    ("LLM = {'api_key': 'sk-abc'}", "LLM: api_key is not read from files"),
    ("LLM = {'api_key_env': 'sk-abc-123'}", "LLM: api_key_env must be the name of an environment variable"),
    ("LLM = {'base_url': 'localhost:11434'}", "LLM: base_url must start with http:// or https://"),
    ("LLM = {'timeout': 0}", "LLM: timeout must be a number of seconds above 0, not 0"),
    ("LLM = 'http://localhost:11434/v1'", "LLM: must be a mapping of base_url, model, api_key_env, timeout"),
    ("LLM = {'model': 'm'}\nEFFECT_HANDLERS = {'llm_call': lambda run, effect: {}}",
     "LLM and EFFECT_HANDLERS['llm_call'] both answer llm_call: keep one"),
    ("TOOLS = [print]", "TOOLS must be a dict of tool name to function, not list"),
    ("TOOLS = {'add': 3}", "TOOLS: not a function for add"),
    ("TOOLS = {'add': print}\nEFFECT_HANDLERS = {'tool_calls': lambda run, effect: {}}",
     "TOOLS and EFFECT_HANDLERS['tool_calls'] both run tool_calls: keep one"),
    ("TOOLS = {'add': print}\nTOOL_APPROVAL = {'add': 'yes'}",
     "TOOL_APPROVAL['add'] must be \"ask\" or \"deny\", not 'yes'"),
    ("TOOLS = {'add': print}\nTOOL_APPROVAL = {'rm': 'ask'}",
     "TOOL_APPROVAL names rm, not in TOOLS (tools: add)"),
    ("TOOL_APPROVAL = {'rm': 'deny'}", "TOOL_APPROVAL names rm, not in TOOLS (tools: none)"),
]


@pytest.mark.parametrize("extra, error", BAD_MODULES, ids=[e[1][:40] for e in BAD_MODULES])
def test_malformed_module_settings_make_the_file_broken_with_one_line(cli, extra, error):
    path = cli.write_workflow("chat.py", CHAT + extra + "\n")
    cli.write_workflow("other.py", CHAT.replace('"chat"', '"other"'))
    listed = cli("workflows", "--json")
    assert listed.exit_code == 1, listed.output  # a broken file is a problem reported
    items = {it["source"]: it for it in listed.json()}
    assert items[str(path.resolve())]["error"].startswith(error)
    assert items[str((cli.workflows_dir / "other.py").resolve())]["error"] is None  # not hidden
    line = assert_one_line_error(cli("start", "chat"), 1, "chat.py", error)
    assert "sk-abc" not in line


def test_tools_and_approvals_reach_the_registry_and_are_listed(cli):
    cli.write_workflow("chat.py", CHAT + "TOOLS = {'add': lambda a, b: a + b, 'rm': print}\n"
                                         "TOOL_APPROVAL = {'rm': 'ask'}\n"
                                         "LLM = {'model': 'mod-model'}\n")
    entry = load_workflows(cli.workflows_dir).entry("chat")
    assert sorted(entry.tools) == ["add", "rm"] and entry.tool_approval == {"rm": "ask"}
    assert entry.llm == {"model": "mod-model"}
    (item,) = cli.ok("workflows", "--json").json()
    assert item["tools"] == ["add", "rm"] and item["tool_approval"] == {"rm": "ask"}


def test_a_module_llm_overrides_the_config_key_by_key(cli, srv):
    cli.config.write_text(f"llm:\n  base_url: {srv.base_url}\n  model: config-model\n")
    cli.write_workflow("chat.py", CHAT + "LLM = {'model': 'module-model'}\n")
    srv.default = (200, srv.reply("hello"), {})
    run = cli.start("chat")
    assert run["status"] == "completed" and run["output"] == {"content": "hello"}
    assert srv.requests[0]["body"]["model"] == "module-model"


def test_a_module_llm_alone_turns_the_built_in_handler_on(cli, srv):
    cli.write_workflow("chat.py", CHAT + f"LLM = {{'base_url': {srv.base_url!r}, 'model': 'm'}}\n")
    assert cli.start("chat")["status"] == "completed" and len(srv.requests) == 1


def test_without_llm_anywhere_llm_call_stays_a_job(cli, srv):
    cli.write_workflow("chat.py", CHAT)
    run = cli.start("chat")
    assert run["waiting"]["reason"] == "job" and srv.requests == []


# ---------------------------------------------------------------------------- the config key

BAD_CONFIGS = [
    ("llm: http://localhost:11434/v1\n", "llm: must be a mapping of base_url"),
    ("llm:\n  model: m\n", "llm: base_url is required (e.g. http://localhost:11434/v1 for Ollama)"),
    ("llm:\n  base_url: http://h/v1\n  api_key: sk-abc\n", "llm: api_key is not read from files"),
    ("llm:\n  base_url: http://h/v1\n  api_key_env: sk-abc\n", "llm: api_key_env must be the name"),
    ("llm:\n  base_url: http://h/v1\n  timeout: soon\n", "llm: timeout must be a number of seconds"),
    ("llm:\n  base_url: http://h/v1\n  modle: m\n", "llm: unknown key(s) modle"),
]


@pytest.mark.parametrize("text, error", BAD_CONFIGS, ids=[e[1][:30] for e in BAD_CONFIGS])
def test_a_malformed_llm_config_is_refused_with_one_line_naming_the_file(cli, text, error):
    cli.config.write_text(text)
    cli.write_workflow("chat.py", CHAT)
    for args in (("start", "chat"), ("config",)):
        line = assert_one_line_error(cli(*args), 2, str(cli.config), error)
        assert "sk-abc" not in line
    assert not cli.data_dir.exists()  # refused before anything was created


def test_config_shows_the_llm_key_and_whether_its_variable_is_set(cli, monkeypatch):
    cli.config.write_text("llm:\n  base_url: http://localhost:11434/v1\n  model: llama3.2\n"
                          "  api_key_env: MY_LLM_KEY\n")
    monkeypatch.delenv("MY_LLM_KEY", raising=False)
    rows = {r["setting"]: r for r in cli.ok("config", "--json").json()["settings"]}
    assert rows["llm"]["from"] == "config"
    assert rows["llm"]["llm"] == {"base_url": "http://localhost:11434/v1", "model": "llama3.2",
                                  "api_key_env": "MY_LLM_KEY"}
    assert "api_key_env=MY_LLM_KEY (not set)" in rows["llm"]["value"]
    monkeypatch.setenv("MY_LLM_KEY", "sk-shown-nowhere")
    out = cli.ok("config")
    assert "api_key_env=MY_LLM_KEY (set)" in out.stdout and "sk-shown-nowhere" not in out.stdout
    cli.config.write_text("")
    rows = {r["setting"]: r for r in cli.ok("config", "--json").json()["settings"]}
    assert rows["llm"] == {"setting": "llm", "value": None, "from": "default", "llm": None}


def test_the_rules_themselves(tmp_path):
    assert llm_problem({"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
                        "api_key_env": "OPENAI_API_KEY", "timeout": 30.5}, whole=True) is None
    assert llm_problem({"model": "m"}, whole=False) is None
    assert llm_problem({"timeout": True}, whole=False).startswith("timeout must be")
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"llm": {"base_url": "http://h/v1", "model": "m"}}))
    assert read_config_file(path)["llm"] == {"base_url": "http://h/v1", "model": "m"}
