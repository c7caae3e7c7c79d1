"""YAML workflow files: the format, a safe loader with line-accurate errors, and its JSON Schema.

    from delegate.workflows import load_workflow

    loaded = load_workflow("configs/market-brief.yaml")   # WorkflowError lists every problem
    loaded.spec.agents["scout"].model, loaded.spec.needs_of("brief")

    compiled = compile_workflow(loaded, db="sqlite:///runs.db")   # simulate=True: fake models
    result = await run_workflow(compiled, {"topic": "batteries"})

`delegate validate FILE...` runs the same checks; `delegate schema` prints the JSON Schema.
"""

from __future__ import annotations

from delegate.workflows._templates import expression_of
from delegate.workflows._yaml import MAX_ALIAS_NODES, MAX_BYTES, MAX_DEPTH
from delegate.workflows.loader import LoadedWorkflow, load_workflow, load_workflow_text
from delegate.workflows.outputs import output_model, schema_problems
from delegate.workflows.problems import Problem
from delegate.workflows.runtime import (
    CompiledWorkflow,
    compile_workflow,
    missing_credentials,
    run_workflow,
)
from delegate.workflows.spec import (
    AgentSpec,
    AgentStep,
    BudgetSpec,
    InputSpec,
    PlanStep,
    Step,
    WorkflowSpec,
    workflow_json_schema,
)
from delegate.workflows.tools import import_tool, tool_problem

__all__ = [
    "MAX_ALIAS_NODES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "AgentSpec",
    "AgentStep",
    "BudgetSpec",
    "CompiledWorkflow",
    "InputSpec",
    "LoadedWorkflow",
    "PlanStep",
    "Problem",
    "Step",
    "WorkflowSpec",
    "compile_workflow",
    "expression_of",
    "import_tool",
    "load_workflow",
    "load_workflow_text",
    "missing_credentials",
    "output_model",
    "run_workflow",
    "schema_problems",
    "tool_problem",
    "workflow_json_schema",
]
