"""The workflow file format: the configs, the JSON Schema, and every rule's message and line."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import jsonschema
import pydantic
import pytest
import yaml
from click.testing import CliRunner

from delegate import Budget, WorkflowError
from delegate.cli import main
from delegate.workflows import (
    AgentStep,
    PlanStep,
    WorkflowSpec,
    expression_of,
    import_tool,
    load_workflow,
    load_workflow_text,
    output_model,
    workflow_json_schema,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
SCHEMA_COMMENT = "# yaml-language-server: $schema=./workflow.schema.json\n"

HEAD = """\
name: demo
inputs:
  market: {type: string}
  depth: {type: string, enum: [quick, deep], default: quick}
agents:
  scout: {model: openai/gpt-4o-mini}
  editor: {model: anthropic/claude-haiku-4-5}
"""


def problems(text: str, filename: str = "w.yaml") -> list[tuple[int, str]]:
    """(line, message) of every problem in `text`; fails when it is valid."""
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(textwrap.dedent(text), filename)
    assert all(p.file == filename for p in caught.value.problems)
    return [(p.line, p.message) for p in caught.value.problems]


def load(text: str) -> WorkflowSpec:
    return load_workflow_text(textwrap.dedent(text), "w.yaml").spec


# -- the shipped configs and the schema -----------------------------------------------------------


def test_there_are_three_configs() -> None:
    assert [path.name for path in CONFIGS] == [
        "due-diligence.yaml",
        "market-brief.yaml",
        "research-planner.yaml",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates_and_starts_with_the_schema_comment(path: Path) -> None:
    loaded = load_workflow(path)
    assert loaded.path == path
    assert path.read_text().startswith(SCHEMA_COMMENT)


def test_delegate_validate_accepts_the_configs() -> None:
    result = CliRunner().invoke(main, ["validate", *map(str, CONFIGS)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{CONFIGS[0]}: ok (4 steps, 4 agents)",
        f"{CONFIGS[1]}: ok (3 steps, 2 agents)",
        f"{CONFIGS[2]}: ok (planner mode, 3 agents)",
    ]
    assert result.stderr == ""


def test_the_configs_cover_the_three_shapes() -> None:
    diligence, brief, research = (load_workflow(path).spec for path in CONFIGS)
    assert brief.mode == "steps"
    assert research.mode == "planner"
    assert [type(step) for step in diligence.steps or ()] == [
        AgentStep,
        AgentStep,
        PlanStep,
        AgentStep,
    ]
    deep_dive = (diligence.steps or [])[2]
    assert isinstance(deep_dive, PlanStep)
    assert deep_dive.when is not None
    assert expression_of(deep_dive.when) == "inputs.depth == 'deep'"
    assert [s.verify for s in diligence.steps or () if isinstance(s, AgentStep)] == [
        None,
        None,
        "checker",
    ]


def test_market_brief_records_the_dependency_its_foreach_names() -> None:
    loaded = load_workflow(ROOT / "configs" / "market-brief.yaml")
    assert loaded.implicit_needs == {"dig": ("angles",)}
    assert loaded.spec.needs_of("dig") == ("angles",)
    assert loaded.spec.needs_of("brief") == ("dig",)
    assert loaded.spec.output == "brief"
    with pytest.raises(KeyError):
        loaded.spec.needs_of("nope")
    angles = (loaded.spec.steps or [])[0]
    assert isinstance(angles, AgentStep)
    assert angles.output is not None
    model = output_model(angles.output, "Angles")
    assert model.model_validate({"angles": ["price", "demand"]}).model_dump() == {
        "angles": ["price", "demand"]
    }
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"angles": "price"})
    assert loaded.spec.budget is not None
    assert loaded.spec.budget.to_budget() == Budget(usd=0.25, seconds=300)


def test_schema_command_prints_a_valid_json_schema_with_a_header() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == workflow_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "delegate workflow"
    assert schema["description"].startswith("A delegate workflow file")
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_committed_schema_file_is_up_to_date() -> None:
    committed = json.loads((ROOT / "configs" / "workflow.schema.json").read_text())
    assert committed == workflow_json_schema(), (
        "run: delegate schema > configs/workflow.schema.json"
    )


def test_every_field_has_a_description_and_optional_ones_a_default() -> None:
    schema = workflow_json_schema()
    models = {"WorkflowSpec": schema, **schema["$defs"]}
    for model_name, model in models.items():
        required = set(model.get("required", ()))
        for field, info in model["properties"].items():
            assert info.get("description"), f"{model_name}.{field} has no description"
            if field not in required and field != "default":
                assert "default" in info, f"{model_name}.{field} shows no default"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_editors_accept_the_configs_with_the_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    jsonschema.validate(data, workflow_json_schema())


def test_editors_flag_an_unknown_key_with_the_schema() -> None:
    data = yaml.safe_load((ROOT / "configs" / "market-brief.yaml").read_text())
    data["steps"][0]["promt"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, workflow_json_schema())


# -- agents, steps and modes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "line", "message"),
    [
        (
            "steps:\n  - {id: a, agent: scuot, prompt: hi}\n",
            9,
            "step 'a': agent 'scuot' is not an agent of this workflow (did you mean 'scout'?)",
        ),
        (
            "steps:\n  - {id: a, agent: scout, prompt: hi, verify: edtor}\n",
            9,
            "step 'a': verify 'edtor' is not an agent of this workflow (did you mean 'editor'?)",
        ),
        (
            "steps:\n  - {id: p, kind: plan, goal: g, planner: scot, workers: [scout]}\n",
            9,
            "step 'p': planner 'scot' is not an agent of this workflow (did you mean 'scout'?)",
        ),
        (
            "steps:\n  - {id: p, kind: plan, goal: g, planner: scout, workers: [editr]}\n",
            9,
            "step 'p': workers: 'editr' is not an agent of this workflow (did you mean 'editor'?)",
        ),
        (
            "planner: scout\nworkers: [scout, editors]\ngoal: g\n",
            9,
            "workers: 'editors' is not an agent of this workflow (did you mean 'editor'?)",
        ),
        (
            "planner: scouts\nworkers: [scout]\ngoal: g\n",
            8,
            "planner: 'scouts' is not an agent of this workflow (did you mean 'scout'?)",
        ),
        (
            "planner: scout\nworkers: [scout]\ngoal: g\nsynthesizer: edito\n",
            11,
            "synthesizer: 'edito' is not an agent of this workflow (did you mean 'editor'?)",
        ),
    ],
)
def test_unknown_agents_are_named_with_a_suggestion(snippet: str, line: int, message: str) -> None:
    found = problems(HEAD + snippet)
    assert len(found) == 1
    assert found[0][0] == line
    assert found[0][1].startswith(message)
    assert found[0][1].endswith("; define it under agents:")


def test_agent_references_fallback_verify_and_loops() -> None:
    found = problems(
        """\
        name: demo
        agents:
          a: {model: openai/gpt-4o-mini, fallback: b}
          b: {model: openai/gpt-4o-mini, fallback: c}
          c: {model: openai/gpt-4o-mini, fallback: a, verify: judg}
          d: {model: openai/gpt-4o-mini, fallback: d}
          judge: {model: openai/gpt-4o-mini}
        steps:
          - {id: s, agent: a, prompt: hi}
        """
    )
    assert found == [
        (
            3,
            "agents 'a' → 'b' → 'c' → 'a' fall back to each other in a loop; a fallback chain "
            "must end: remove one fallback",
        ),
        (
            5,
            "agent 'c': verify 'judg' is not an agent of this workflow (did you mean 'judge'?); "
            "define it under agents:",
        ),
        (6, "agent 'd' falls back to itself; a fallback chain must end: remove one fallback"),
    ]


def test_needs_unknown_self_twice_forward_and_cycles() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - {id: a, agent: scout, prompt: hi, needs: [b]}
  - {id: b, agent: scout, prompt: hi, needs: [a]}
  - {id: c, agent: scout, prompt: hi, needs: [c, angels, d, a, a]}
  - {id: d, agent: scout, prompt: hi}
  - {id: angles, agent: scout, prompt: hi}
"""
    )
    assert found == [
        (9, "steps 'a' → 'b' → 'a' form a cycle (each needs the next); remove one of these needs"),
        (11, "step 'c' needs itself; remove 'c' from its needs"),
        (
            11,
            "step 'c' needs 'angels', which is not a step of this workflow (did you mean "
            "'angles'?)",
        ),
        (
            11,
            "step 'c' needs 'd', which is listed after it; move step 'd' above step 'c' (steps "
            "are listed in the order they can run)",
        ),
        (11, "step 'c': needs lists 'a' twice; list it once"),
    ]
    assert problems(HEAD + "steps:\n  - {id: a, agent: scout, prompt: hi, needs: [zz]}\n") == [
        (9, "step 'a' needs 'zz', which is not a step of this workflow")
    ]


def test_a_cycle_through_a_template_is_named() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - {id: a, agent: scout, prompt: hi, needs: [c]}
  - {id: b, agent: scout, prompt: "{{ steps.a.output }}"}
  - {id: c, agent: scout, prompt: "{{ steps.b.output }}"}
"""
    )
    assert found == [
        (
            9,
            "steps 'a' → 'c' → 'b' → 'a' form a cycle (each needs the next); remove one of "
            "these needs",
        )
    ]


def test_step_ids_are_unique_and_not_template_names() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - {id: a, agent: scout, prompt: hi}
  - {id: a, agent: scout, prompt: hi}
  - {id: steps, agent: scout, prompt: hi}
  - {id: "bad id", agent: scout, prompt: hi}
"""
    )
    assert found == [
        (10, "duplicate step id 'a': step #1 has it too; give every step its own id"),
        (11, "step id 'steps' is a name templates use; choose another id"),
        (
            12,
            "step 'bad id': id 'bad id' must be 1–200 letters, digits or `_ . : - [ ]`, "
            "starting with a letter, digit or underscore",
        ),
    ]


def test_steps_and_planner_mode_are_exclusive() -> None:
    mixed = HEAD + "planner: scout\nsteps:\n  - {id: a, agent: scout, prompt: hi}\n"
    assert problems(mixed) == [
        (
            8,
            "this workflow has steps and planner-mode keys (planner); a workflow is static "
            "(steps) or planner mode (planner, workers, goal), not both — for a planned sub-goal "
            "among steps, use a step with kind: plan",
        )
    ]
    assert problems(HEAD) == [
        (
            1,
            "the workflow has neither steps nor a planner: give steps: [...] (static), or "
            "planner:, workers: and goal: (planner mode)",
        )
    ]
    assert problems(HEAD + "planner: scout\nmax_tasks: 5\n") == [
        (1, 'planner mode needs workers, goal: planner: <agent>, workers: [<agents>], goal: "..."')
    ]


def test_output_names_a_step() -> None:
    assert problems(HEAD + "output: brif\nsteps:\n  - {id: brief, agent: scout, prompt: hi}\n") == [
        (8, "output 'brif' is not a step of this workflow (did you mean 'brief'?)")
    ]
    planner = HEAD + "planner: scout\nworkers: [scout]\ngoal: g\noutput: x\n"
    assert problems(planner) == [
        (
            11,
            "output names a step, but a planner-mode workflow has no steps (its output is the "
            "synthesis); remove output:",
        )
    ]


def test_planner_mode_defaults() -> None:
    spec = load(
        HEAD + "planner: scout\nworkers: [scout, editor]\ngoal: 'Study {{ inputs.market }}'\n"
    )
    assert (spec.mode, spec.max_replans, spec.max_tasks, spec.synthesizer, spec.judge_goal) == (
        "planner",
        2,
        20,
        None,
        False,
    )
    assert spec.implicit_needs == {}


# -- templates ------------------------------------------------------------------------------------


def test_template_names_are_checked_with_suggestions() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - id: angles
    agent: scout
    prompt: "{{ market }} {{ inputs.markt }} {{ secret }} {{ item }}"
  - id: dig
    agent: scout
    prompt: "{{ steps.angels.output }} {{ steps.later.output }} {{ steps.angles.result }}"
  - id: later
    agent: scout
    prompt: "{{ steps }} {% include 'x.txt' %} {% set inputs = 1 %}"
"""
    )
    messages = [message for _, message in found]
    assert messages == [
        "step 'angles': prompt uses {{ market }}, which is not defined (did you mean "
        "inputs.market?); templates can use inputs.<name>, steps.<id>.output",
        "step 'angles': prompt uses inputs.markt, which is not a declared input (did you mean "
        "inputs.market?); declare it under inputs:",
        "step 'angles': prompt uses {{ secret }}, which is not defined; templates can use "
        "inputs.<name>, steps.<id>.output",
        "step 'angles': prompt uses item, which is only defined in the prompt of a step with "
        "foreach",
        "step 'dig': prompt uses steps.angels, which is not a step of this workflow (did you "
        "mean steps.angles?)",
        "step 'dig': prompt uses steps.later, which is listed after step 'dig'; move step "
        "'later' above it",
        "step 'dig': prompt uses steps.angles.result; a step's output is steps.angles.output",
        "step 'later': prompt uses steps without naming a step; write steps.<id>.output (or "
        "steps['<id>'].output), so the dependency is known",
        "step 'later': prompt includes or imports another template; templates stand alone",
        "step 'later': prompt assigns to 'inputs', a name templates read from; rename it",
    ]
    assert [line for line, _ in found] == [11] * 4 + [14] * 3 + [17] * 3


def test_sandbox_escapes_are_refused_before_running() -> None:
    for template in (
        "{{ ''.__class__.__mro__ }}",
        "{{ inputs.market['__class__'] }}",
        "{{ inputs.market | attr('__class__') }}",
        "{{ [inputs.market] | map(attribute='__class__') | list }}",
    ):
        found = problems(HEAD + f'steps:\n  - id: a\n    agent: scout\n    prompt: "{template}"\n')
        assert found == [
            (
                11,
                "step 'a': prompt reaches for '__class__': names starting with '_' are "
                "internal and not available to templates",
            )
        ], template


def test_template_syntax_and_unknown_filters() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - {id: a, agent: scout, prompt: "{{ inputs.market "}
  - {id: b, agent: scout, prompt: "{{ inputs.market | uper }}"}
"""
    )
    assert found == [
        (
            9,
            "step 'a': prompt is not a valid template: unexpected end of template, expected "
            "'end of print statement'.",
        ),
        (10, "step 'b': prompt is not a valid template: No filter named 'uper'."),
    ]


def test_a_problem_in_a_literal_block_points_at_its_own_line() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - id: a
    agent: scout
    prompt: |
      Study {{ inputs.market }}.
        Then {{ inputs.depht }}.
"""
    )
    assert found == [
        (
            13,
            "step 'a': prompt uses inputs.depht, which is not a declared input (did you mean "
            "inputs.depth?); declare it under inputs:",
        )
    ]
    assert load_workflow_text(
        textwrap.dedent(HEAD + "steps:\n  - {id: a, agent: scout, prompt: hi}\n"), "w.yaml"
    ).spec.steps


def test_foreach_when_and_their_dependencies() -> None:
    spec = load(
        HEAD
        + """\
steps:
  - id: angles
    agent: scout
    prompt: "Angles of {{ inputs.market }}"
    output:
      type: object
      properties: {angles: {type: array, items: {type: string}}, count: {type: integer}}
  - id: dig
    agent: scout
    foreach: "{{ steps.angles.output.angles }}"
    prompt: "Research {{ item }} ({{ loop.index }} of {{ loop.length }})"
  - id: deep
    agent: editor
    when: "{{ inputs.depth == 'deep' and steps.dig.output | length > 2 }}"
    prompt: "Go deeper."
  - id: brief
    agent: editor
    needs: [deep]
    prompt: "{% for note in steps.dig.output %}{{ note }} {{ loop.index }}{% endfor %}"
"""
    )
    assert spec.implicit_needs == {"dig": ("angles",), "deep": ("dig",), "brief": ("dig",)}
    assert spec.needs_of("brief") == ("deep", "dig")


def test_foreach_and_when_forms_and_lists() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - id: angles
    agent: scout
    prompt: hi
    output:
      type: object
      properties: {angles: {type: array}, count: {type: integer}}
  - {id: a, agent: scout, prompt: "{{ item }}", foreach: "{{ inputs.market }}"}
  - {id: b, agent: scout, prompt: "{{ item }}", foreach: "{{ steps.angles.output.count }}"}
  - {id: c, agent: scout, prompt: "{{ item }}", foreach: "{{ steps.angles.output }}"}
  - {id: d, agent: scout, prompt: hi, when: "inputs.depth == 'deep'"}
  - {id: e, agent: scout, prompt: hi, when: "{{ item }}"}
  - {id: f, agent: scout, prompt: "{{ steps.angles.output.cuont }} {{ steps.a.output.x }}"}
"""
    )
    assert found == [
        (15, "step 'a': foreach needs a list, but input 'market' is of type string"),
        (
            16,
            "step 'b': foreach needs a list, but steps.angles.output.count is of type integer "
            "in the output schema of step 'angles'",
        ),
        (
            17,
            "step 'c': foreach needs a list, but steps.angles.output is an object; name its "
            "list property, steps.angles.output.<property>",
        ),
        (
            18,
            "step 'd': when must be one jinja2 expression in {{ }}, e.g. \"{{ inputs.depth == "
            "'deep' }}\"",
        ),
        (
            19,
            "step 'e': when uses item, which is only defined in the prompt of a step with foreach",
        ),
        (
            20,
            "step 'f': prompt uses steps.angles.output.cuont, but the output schema of step "
            "'angles' has no property 'cuont' (did you mean 'count'?)",
        ),
        (
            20,
            "step 'f': prompt uses steps.a.output.x, but step 'a' has foreach, so its output "
            "is a list (one output per item): loop over it, or index it (steps.a.output[0])",
        ),
    ]


def test_expression_of() -> None:
    assert expression_of("{{ inputs.depth == 'deep' }}") == "inputs.depth == 'deep'"
    assert expression_of("  {{- steps.a.output | length -}}  ") == "steps.a.output | length"
    assert expression_of("{{ -1 }}") == "-1"


def test_an_unquoted_template_gets_a_hint() -> None:
    found = problems(
        HEAD + "steps:\n  - id: a\n    agent: scout\n    prompt: {{ inputs.market }}\n"
    )
    assert found == [
        (
            11,
            "a mapping cannot be a key; a template written without quotes reads as a mapping: "
            'quote it, prompt: "{{ inputs.topic }}"',
        )
    ]


def test_a_goal_in_planner_mode_names_inputs_only() -> None:
    text = HEAD + "planner: scout\nworkers: [scout]\ngoal: '{{ inputs.q }} {{ steps.a.output }}'\n"
    assert problems(text) == [
        (10, "goal uses inputs.q, which is not a declared input; declare it under inputs:"),
        (10, "goal uses steps, but a planner-mode workflow has no steps"),
    ]


# -- output schemas -------------------------------------------------------------------------------


def test_output_schemas_must_be_sane_objects() -> None:
    found = problems(
        HEAD
        + """\
steps:
  - {id: a, agent: scout, prompt: hi, output: {type: array}}
  - id: b
    agent: scout
    prompt: hi
    output:
      type: object
      properties:
        n: {type: integr}
  - id: c
    agent: scout
    prompt: hi
    output:
      type: object
      properties: {n: {$ref: "#/defs/n"}}
      required: [n, m]
"""
    )
    assert found == [
        (
            9,
            "step 'a': output must be a JSON Schema with type: object at the top (the answer is "
            "a JSON object); put a list or a value in a property",
        ),
        (
            16,
            "step 'b': output is not a valid JSON Schema: 'integr' is not valid under any of "
            "the given schemas",
        ),
        (
            22,
            "step 'c': output schema keyword '$ref' is not supported; use "
            "additionalProperties, default, description, enum, examples, exclusiveMaximum, "
            "exclusiveMinimum, format, items, maxItems, maxLength, maximum, minItems, minLength, "
            "minimum, pattern, properties, required, title, type",
        ),
        (
            23,
            "step 'c': output schema requires 'm', which is not in its properties; add it to "
            "properties or drop it from required",
        ),
    ]


def test_output_model_keeps_odd_property_names_and_constraints() -> None:
    model = output_model(
        {
            "type": "object",
            "properties": {
                "first-name": {"type": "string", "minLength": 1},
                "json": {"type": ["integer", "null"], "minimum": 0},
                "kind": {"enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "where": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            "required": ["first-name", "kind"],
            "additionalProperties": False,
        }
    )
    value = model.model_validate({"first-name": "Ada", "kind": "a", "where": {"city": "Rome"}})
    assert value.model_dump(by_alias=True) == {
        "first-name": "Ada",
        "json": None,
        "kind": "a",
        "tags": None,
        "where": {"city": "Rome"},
    }
    for bad in (
        {"first-name": "", "kind": "a"},
        {"first-name": "A", "kind": "c"},
        {"first-name": "A", "kind": "a", "json": -1},
        {"first-name": "A", "kind": "a", "tags": ["x", "y", "z"]},
        {"first-name": "A", "kind": "a", "extra": 1},
    ):
        with pytest.raises(pydantic.ValidationError):
            model.model_validate(bad)


# -- inputs, budgets, prices, unknown keys, values ------------------------------------------------


def test_inputs_defaults_and_requirements() -> None:
    spec = load(HEAD + "steps:\n  - {id: a, agent: scout, prompt: hi}\n")
    assert spec.inputs["market"].required is True
    assert spec.inputs["depth"].required is False
    assert spec.inputs["depth"].default == "quick"
    found = problems(
        """\
        name: demo
        inputs:
          a: {type: integer, default: "3"}
          b: {type: string, default: x, required: true}
          c: {type: string, enum: [x, 2]}
          d: {type: boolean, enum: [true], default: false}
          e: {type: integer, default: true}
        agents: {scout: {model: openai/gpt-4o-mini}}
        steps:
          - {id: s, agent: scout, prompt: hi}
        """
    )
    assert found == [
        (3, "input 'a': default '3' is not of type integer"),
        (4, "input 'b': an input with a default is optional: drop required: true, or the default"),
        (5, "input 'c': enum value 2 is not of type string"),
        (6, "input 'd': default False is not one of True"),
        (7, "input 'e': default True is not of type integer"),
    ]


def test_budgets() -> None:
    found = problems(
        """\
        name: demo
        agents:
          scout: {model: openai/gpt-4o-mini, budget: {usd: -1}}
        budget: {seconds: 10, reserve_seconds: 20}
        steps:
          - {id: a, agent: scout, prompt: hi, budget: {usdd: 1}}
        """
    )
    assert found == [
        (3, "agent 'scout': budget.usd should be greater than or equal to 0, got -1"),
        (
            4,
            "budget: reserve_seconds (20) is more than seconds (10); keep back less time than "
            "the whole budget",
        ),
        (6, "unknown key 'usdd' in budget of step 'a'; did you mean 'usd'?"),
    ]


def test_models_under_a_usd_budget_need_a_price() -> None:
    text = textwrap.dedent(
        """\
        name: demo
        agents:
          local: {model: ollama/llama3-not-priced, cheaper: ollama/tiny-not-priced}
          priced: {model: openai/gpt-4o-mini}
        steps:
          - {id: a, agent: local, prompt: hi}
        """
    )
    assert load(text).agents["local"].model == "ollama/llama3-not-priced"  # no usd budget
    with_budget = text + "budget: {usd: 0.10}\n"
    assert problems(with_budget) == [
        (
            3,
            "agent 'local': model 'ollama/llama3-not-priced' has no known price, so its calls "
            "cannot be checked against the workflow's budget (an unknown price is never taken as "
            "free); give its price: prices: {ollama/llama3-not-priced: [input_usd_per_million, "
            "output_usd_per_million]}",
        ),
        (
            3,
            "agent 'local': model 'ollama/tiny-not-priced' has no known price, so its calls "
            "cannot be checked against the workflow's budget (an unknown price is never taken as "
            "free); give its price: prices: {ollama/tiny-not-priced: [input_usd_per_million, "
            "output_usd_per_million]}",
        ),
    ]
    priced = with_budget + (
        "prices: {ollama/llama3-not-priced: [0.1, 0.2], ollama/tiny-not-priced: [0, 0]}\n"
    )
    assert load(priced).prices["ollama/llama3-not-priced"] == (0.1, 0.2)
    step_budget = text.replace("prompt: hi}", "prompt: hi, budget: {usd: 0.01}}")
    assert [line for line, _ in problems(step_budget)] == [3, 3]


def _agents(**models: str) -> str:
    lines = [f"  {name}: {{model: {model}}}" for name, model in models.items()]
    first = next(iter(models))
    return (
        "name: demo\nagents:\n"
        + "\n".join(lines)
        + f"\nsteps:\n  - {{id: a, agent: {first}, prompt: x}}\n"
    )


UNLISTED = (
    "correct the name, or, for a model litellm does not list (a new model, a deployment), give "
    "its price: prices: {{{model}: [input_usd_per_million, output_usd_per_million]}}"
)


@pytest.mark.parametrize(
    ("model", "suggestion"),
    [
        ("openai/gpt-4o-mni", "openai/gpt-4o-mini"),
        ("anthropic/claude-haiku-4.5", "anthropic/claude-haiku-4-5"),
        ("gpt-4o-mni", "gpt-4o-mini"),  # no provider: litellm's names without one
        ("openai/zzz-no-such-model", None),
    ],
)
def test_a_model_litellm_does_not_know_is_a_problem_with_the_closest_name(
    model: str, suggestion: str | None
) -> None:
    hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
    assert problems(_agents(scout=model)) == [
        (
            3,
            f"agent 'scout': model {model!r} is not one litellm knows{hint}; "
            + UNLISTED.format(model=model),
        )
    ]


def test_an_unknown_provider_suggests_the_one_meant() -> None:
    text = _agents(scout="opnai/gpt-4o-mini")
    assert problems(text) == [
        (
            3,
            "agent 'scout': model 'opnai/gpt-4o-mini' names the provider 'opnai', which litellm "
            "does not know (did you mean 'openai/gpt-4o-mini'?); write it as litellm's "
            "'<provider>/<model>'",
        )
    ]


def test_local_servers_priced_models_and_routes_are_known() -> None:
    text = _agents(
        scout="ollama/my-homegrown-llama",  # a local server's models are its own
        vllm="hosted_vllm/meta-llama/Llama-3.1-8B-Instruct",
        finetune="openai/ft-my-finetune",  # priced below
        routed="bedrock/converse/anthropic.claude-haiku-4-5-20251001-v1:0",  # an API route
        mini="openai/gpt-4o-mini",
    )
    spec = load(text + "prices: {openai/ft-my-finetune: [0.3, 1.2]}\n")
    assert spec.agents["finetune"].model == "openai/ft-my-finetune"
    # A price does not make an unknown provider known.
    bad = text.replace("openai/ft-my-finetune", "opneai/ft-my-finetune")
    [(line, message)] = problems(bad + "prices: {opneai/ft-my-finetune: [0.3, 1.2]}\n")
    assert line == 5
    assert "names the provider 'opneai', which litellm does not know" in message


def test_an_unknown_cheaper_model_is_reported_once_even_under_a_usd_budget() -> None:
    text = _agents(scout="openai/gpt-4o-mini").replace(
        "{model: openai/gpt-4o-mini}", "{model: openai/gpt-4o-mini, cheaper: openai/gpt-4o-nano}"
    )
    text = text + "budget: {usd: 0.1}\n"
    [(line, message)] = problems(text)
    assert line == 3
    assert message.startswith("agent 'scout': model 'openai/gpt-4o-nano' is not one litellm")


def test_unknown_keys_suggest_or_list_the_allowed_ones() -> None:
    found = problems(
        """\
        name: demo
        descripton: x
        agents:
          scout: {model: openai/gpt-4o-mini, instrucions: be brief}
        steps:
          - {id: a, agent: scout, prompt: hi, colour: blue}
          - {id: p, kind: plan, goal: g, planner: scout, workers: [scout], prompt: x}
        """
    )
    assert found == [
        (2, "unknown key 'descripton' in the workflow; did you mean 'description'?"),
        (4, "unknown key 'instrucions' in agent 'scout'; did you mean 'instructions'?"),
        (
            6,
            "unknown key 'colour' in step 'a'; allowed keys: id, kind, agent, prompt, needs, "
            "foreach, output, timeout, retries, when, verify, votes, strategy, budget",
        ),
        (
            7,
            "unknown key 'prompt' in step 'p'; allowed keys: id, kind, goal, planner, workers, "
            "max_tasks, needs, when, budget",
        ),
    ]


def test_values_and_names() -> None:
    found = problems(
        """\
        name: Demo Flow
        memory: not-a-url
        max_concurrency: 0
        prices: {m: [1]}
        agents:
          "bad name": {model: openai/gpt-4o-mini}
          scout: {model: "", reasoning_effort: extreme, tools: [not a path], votes: 0}
        steps:
          - {id: a, agent: scout, prompt: hi, timeout: -1, retries: 1.5}
          - {id: b, kind: chain, agent: scout}
          - just a string
        """
    )
    assert found == [
        (
            1,
            "name 'Demo Flow' must be lowercase letters, digits, '-' or '_' (at most 100), "
            "starting with a letter or digit",
        ),
        (2, "memory 'not-a-url' must be a database URL such as sqlite:///runs.db, or :memory:"),
        (3, "max_concurrency should be greater than or equal to 1, got 0"),
        (4, "prices['m'] of the workflow has too few items: #2 is missing"),
        (6, "agent name 'bad name' must be letters, digits, '_', '-' or '.' (at most 100)"),
        (7, "agent 'scout': model should have at least 1 character, got ''"),
        (
            7,
            "agent 'scout': reasoning_effort should be 'minimal', 'low', 'medium' or 'high', "
            "got 'extreme'",
        ),
        (7, "agent 'scout': tools[0] 'not a path' must be an import path, package.module:function"),
        (7, "agent 'scout': votes should be greater than or equal to 1, got 0"),
        (9, "step 'a': timeout should be greater than 0, got -1"),
        (9, "step 'a': retries should be a valid integer, got a number with a fractional part"),
        (10, "step 'b': kind must be 'agent' or 'plan', got 'chain'"),
        (11, "step #3 should be a mapping (key: value, ...), got 'just a string'"),
    ]


def test_yaml_keys_stay_text_and_merge_keys_work() -> None:
    spec = load(
        """\
        name: demo
        inputs:
          on: {type: boolean, default: no}
        agents:
          base: &base {model: openai/gpt-4o-mini, max_output_tokens: 100}
          scout:
            <<: *base
            max_output_tokens: 200
        steps:
          - {id: a, agent: scout, prompt: "{{ inputs.on }}"}
        """
    )
    assert spec.inputs["on"].default is False
    assert spec.agents["scout"].model == "openai/gpt-4o-mini"
    assert spec.agents["scout"].max_output_tokens == 200


def test_workflow_spec_validates_on_its_own() -> None:
    data = yaml.safe_load(HEAD + "steps:\n  - {id: a, agent: scuot, prompt: '{{ inputs.x }}'}\n")
    with pytest.raises(pydantic.ValidationError) as caught:
        WorkflowSpec.model_validate(data)
    errors = caught.value.errors()
    assert [(error["type"], error["loc"]) for error in errors] == [
        ("workflow", ("steps", 0, "agent")),
        ("workflow", ("steps", 0, "prompt")),
    ]


def test_workflow_error_is_a_config_error_with_every_problem() -> None:
    from delegate.errors import ConfigError, DelegateError

    with pytest.raises(WorkflowError) as caught:
        load_workflow(ROOT / "no-such-workflow.yaml")
    assert isinstance(caught.value, ConfigError)
    assert isinstance(caught.value, DelegateError)
    assert str(caught.value) == (
        f"{ROOT / 'no-such-workflow.yaml'}:1:1: cannot read the file: No such file or directory"
    )


# -- tools ----------------------------------------------------------------------------------------


def test_tools_are_found_next_to_the_file_without_importing_them(tmp_path: Path) -> None:
    (tmp_path / "mytools.py").write_text(
        "raise RuntimeError('imported during validation')\n\n"
        "def search(q: str) -> str:\n    return q\n"
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "web.py").write_text(
        "try:\n    import json\nexcept ImportError:\n    json = None\n\n"
        "async def fetch(url: str) -> str:\n    return url\n"
    )
    workflow = tmp_path / "flow.yaml"
    workflow.write_text(
        "name: tools\n"
        "agents:\n"
        "  scout:\n"
        "    model: openai/gpt-4o-mini\n"
        "    tools: [mytools:search, pkg.web:fetch, pkg.web:json, json:dumps, os.path:join]\n"
        "steps:\n"
        "  - {id: a, agent: scout, prompt: hi}\n"
    )
    loaded = load_workflow(workflow)
    assert loaded.base_dir == tmp_path
    assert "mytools" not in sys.modules
    assert "pkg.web" not in sys.modules

    workflow.write_text(
        workflow.read_text().replace(
            "[mytools:search, pkg.web:fetch, pkg.web:json, json:dumps, os.path:join]",
            "[mytools:serch, pkg.nope:x, notinstalled_xyz:f]",
        )
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(workflow)
    assert [p.message for p in caught.value.problems] == [
        f"agent 'scout': tool 'mytools:serch': module 'mytools' ({tmp_path / 'mytools.py'}) "
        "defines no 'serch' (did you mean 'search'?)",
        "agent 'scout': tool 'pkg.nope:x': no module 'pkg.nope' in the workflow's folder or the "
        "installed packages; check the spelling, put the module next to the workflow file, or "
        "install its package",
        "agent 'scout': tool 'notinstalled_xyz:f': no module 'notinstalled_xyz' in the "
        "workflow's folder or the installed packages; check the spelling, put the module next "
        "to the workflow file, or install its package",
    ]


def test_import_tool_imports_from_the_workflow_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "wf_tools_demo.py").write_text(
        "def shout(text: str) -> str:\n    return text.upper()\n"
    )
    try:
        shout = import_tool("wf_tools_demo:shout", tmp_path)
        assert shout("hi") == "HI"
        from delegate.errors import ConfigError

        with pytest.raises(
            ConfigError, match="has no function 'shot' \\(did you mean 'shout'\\?\\)"
        ):
            import_tool("wf_tools_demo:shot", tmp_path)
    finally:
        sys.modules.pop("wf_tools_demo", None)


def test_odd_inputs_are_problems_not_crashes() -> None:
    # Each of these once raised something other than a WorkflowError (found by fuzzing).
    steps = """\
steps:
  - id: a
    agent: scout
    prompt: "{{ ''.__clas }}"
    output:
      type: object
      properties: {any: true, never: false, list: {type: array, items: false}}
"""
    assert problems(HEAD + "budget: {tokens: !!int }\n" + steps) == [
        (8, "'' is not a valid !!int; fix the value")
    ]
    assert problems(HEAD + steps) == [
        (
            11,
            "step 'a': prompt reaches for '__clas': names starting with '_' are internal and "
            "not available to templates",
        ),
        (
            14,
            "step 'a': property 'never' has the schema false, which no value matches; remove "
            "the property",
        ),
        (14, "step 'a': output schema items must be one schema (a mapping)"),
    ]
    schema = {
        "type": "object",
        "properties": {"any": True, "list": {"type": "array", "items": True}},
    }
    assert output_model(schema).model_validate(
        {"any": {"x": [1]}, "list": [1, "a"]}
    ).model_dump() == {
        "any": {"x": [1]},
        "list": [1, "a"],
    }


# -- votes and strategies -------------------------------------------------------------------------

SETTINGS = """\
name: demo
agents:
  writer: {model: openai/gpt-4o-mini, votes: {max_samples: 6, confidence: 0.9}}
  critic: {model: openai/gpt-4o-mini, strategy: {self_refine: }}
  other: {model: anthropic/claude-haiku-4-5}
steps:
  - id: best
    agent: writer
    prompt: Write.
    strategy: {best_of_n: {n: 3, judge: critic}}
  - id: mixed
    agent: writer
    prompt: Write.
    strategy:
      mixture_of_agents: {proposers: [writer, other], aggregator: critic}
  - id: counted
    agent: writer
    prompt: Count.
    votes: 5
"""


def test_votes_and_strategies_are_read_from_steps_and_agents() -> None:
    from delegate.orchestrator.strategies import (
        AdaptiveVotes,
        BestOfN,
        MixtureOfAgents,
        SelfRefine,
    )

    spec = load(SETTINGS)
    writer, critic = spec.agents["writer"], spec.agents["critic"]
    best, mixed, counted = spec.steps or []
    assert isinstance(best, AgentStep)
    assert isinstance(mixed, AgentStep)
    assert isinstance(counted, AgentStep)
    assert not isinstance(writer.votes, int)
    assert writer.votes.to_votes() == AdaptiveVotes(max_samples=6, confidence=0.9)
    assert critic.strategy is not None
    assert critic.strategy.to_strategy() == SelfRefine()
    assert best.strategy is not None
    assert best.strategy.to_strategy() == BestOfN(n=3, judge="critic")
    assert mixed.strategy is not None
    assert mixed.strategy.to_strategy() == MixtureOfAgents(
        proposers=("writer", "other"), aggregator="critic"
    )
    assert (counted.votes, counted.strategy) == (5, None)


def test_a_step_task_takes_its_own_settings_else_its_agents() -> None:
    from delegate.orchestrator.strategies import AdaptiveVotes, BestOfN, SelfRefine
    from delegate.workflows._driver import WorkflowRun

    spec = load(
        SETTINGS
        + "  - {id: refined, agent: critic, prompt: Check.}\n"
        + "  - {id: once, agent: critic, prompt: Once., votes: 1}\n"
        + "  - {id: sampled, agent: critic, prompt: Sample., votes: {max_samples: 4}}\n"
    )
    run = WorkflowRun(run_id="r", workflow=spec, by_name={}, inputs={}, output_types={}, source={})
    tasks = {
        step.id: run._spec(step, step.id, [])  # type: ignore[arg-type]
        for step in spec.steps or []
    }
    settings = {task_id: (task.votes, task.strategy) for task_id, task in tasks.items()}
    assert settings == {
        "best": (None, BestOfN(n=3, judge="critic")),
        "mixed": (None, tasks["mixed"].strategy),
        "counted": (5, None),
        "refined": (None, SelfRefine()),  # the agent's strategy
        "once": (None, None),  # the step's one vote turns its agent's strategy off
        "sampled": (AdaptiveVotes(max_samples=4), None),
    }


def test_strategy_and_votes_problems_have_their_line_and_a_suggestion() -> None:
    found = problems(
        """\
        name: demo
        agents:
          writer: {model: openai/gpt-4o-mini, votes: {max_sample: 3}}
          critic: {model: openai/gpt-4o-mini}
        steps:
          - id: draft
            agent: writer
            prompt: Write.
            votes: {min_samples: 5, max_samples: 3}
          - id: best
            agent: writer
            prompt: Write.
            strategy: {best_of_nn: {n: 4}}
          - id: judged
            agent: writer
            prompt: Write.
            strategy: {best_of_n: {n: 1, jugde: critic}}
          - id: none
            agent: writer
            prompt: Write.
            strategy: {}
          - id: zero
            agent: writer
            prompt: Write.
            votes: 0
        """
    )
    assert found == [
        (3, "unknown key 'max_sample' in votes of agent 'writer'; did you mean 'max_samples'?"),
        (
            9,
            "step 'draft': votes: min_samples (5) is more than max_samples (3); lower "
            "min_samples or raise max_samples",
        ),
        (13, "unknown key 'best_of_nn' in strategy of step 'best'; did you mean 'best_of_n'?"),
        (17, "step 'judged': strategy.best_of_n.n should be greater than or equal to 2, got 1"),
        (17, "unknown key 'jugde' in strategy.best_of_n of step 'judged'; did you mean 'judge'?"),
        (
            21,
            "step 'none': strategy: a strategy is one of best_of_n, mixture_of_agents or "
            "self_refine, but this one is empty; give exactly one, e.g. {best_of_n: {n: 4, "
            "judge: critic}}",
        ),
        (25, "step 'zero': votes should be greater than or equal to 1, got 0"),
    ]


def test_a_strategys_agents_and_votes_beside_it_are_checked_with_their_place() -> None:
    text = textwrap.dedent(
        """\
        name: demo
        agents:
          writer: {model: openai/gpt-4o-mini, votes: 3, strategy: {self_refine: {critic: critc}}}
          critic: {model: openai/gpt-4o-mini}
        steps:
          - id: draft
            agent: critic
            prompt: Write.
            votes: {max_samples: 3}
            strategy: {best_of_n: {judge: critic}}
          - id: best
            agent: critic
            prompt: Write.
            strategy: {best_of_n: {n: 4, judge: critc}}
          - id: mixed
            agent: critic
            prompt: Write.
            strategy: {mixture_of_agents: {proposers: [writer, writr], aggregator: critik}}
        """
    )
    expected = [
        "w.yaml:3:49: agent 'writer' has votes: and strategy:; give one of them (a strategy "
        "picks its own answer)",
        "w.yaml:3:82: agent 'writer': strategy self_refine critic 'critc' is not an agent of this "
        "workflow (did you mean 'critic'?); define it under agents:",
        "w.yaml:10:5: step 'draft' has votes: and strategy:; give one of them (a strategy picks "
        "its own answer)",
        "w.yaml:14:41: step 'best': strategy best_of_n judge 'critc' is not an agent of this "
        "workflow (did you mean 'critic'?); define it under agents:",
        "w.yaml:18:56: step 'mixed': strategy mixture_of_agents proposers 'writr' is not an "
        "agent of this workflow (did you mean 'writer'?); define it under agents:",
        "w.yaml:18:76: step 'mixed': strategy mixture_of_agents aggregator 'critik' is not an "
        "agent of this workflow (did you mean 'critic'?); define it under agents:",
    ]
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(text, "w.yaml")
    assert [str(problem) for problem in caught.value.problems] == expected


def test_delegate_validate_names_a_strategys_unknown_agent(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: demo\n"
        "agents:\n"
        "  writer: {model: openai/gpt-4o-mini}\n"
        "steps:\n"
        "  - {id: a, agent: writer, prompt: Hi., strategy: {self_refine: {critic: critic}}}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}:5:74: step 'a': strategy self_refine critic 'critic' is not an agent of this "
        "workflow; define it under agents:"
    ]
    assert "Traceback" not in result.output


def test_a_strategys_agents_spend_under_the_steps_usd_budget() -> None:
    found = problems(
        """\
        name: demo
        agents:
          writer: {model: openai/gpt-4o-mini}
          local: {model: ollama/llama3-not-priced}
        steps:
          - id: a
            agent: writer
            prompt: Hi.
            strategy: {best_of_n: {judge: local}}
            budget: {usd: 0.01}
        """
    )
    assert found == [
        (
            4,
            "agent 'local': model 'ollama/llama3-not-priced' has no known price, so its calls "
            "cannot be checked against the budget of step 'a' (an unknown price is never taken "
            "as free); give its price: prices: {ollama/llama3-not-priced: "
            "[input_usd_per_million, output_usd_per_million]}",
        )
    ]
