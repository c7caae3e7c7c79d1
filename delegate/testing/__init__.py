"""Models that never call a provider: fakes for tests, and simulated models for dry runs.

- `FunctionModel(fn)` and `ScriptedModel([...])` are fakes for tests (yours and delegate's own):
  deterministic and offline, they count and price tokens as the real path does, honour
  `max_output_tokens`, stream, and raise the errors a provider raises (429 with Retry-After,
  timeouts, context windows). `block_model_requests()` fails any call that would reach a real
  provider.
- `SimulatedModel(name)` and `simulate(model)` stand in for a real model at its prices and pace,
  with answers generated to fit each request: `delegate run --simulate` runs a whole workflow on
  them. `SimulatedPace` adds up how long a run would take at the models' pace.

    from delegate import Agent, Budget, Orchestrator, TaskGraph
    from delegate.testing import FunctionModel, simulate

    echo = Agent("echo", FunctionModel(lambda request: request.messages[-1]["content"].upper()))
    scout = Agent("scout", simulate("openai/gpt-4o-mini", time_scale=0))

`import delegate` loads this package (it exports `SimulatedModel`); nothing here imports litellm.
"""

from __future__ import annotations

from delegate.testing._fakes import (
    Answer,
    FunctionModel,
    ScriptedModel,
    block_model_requests,
    tool_call,
)
from delegate.testing._simulate import (
    ModelProfile,
    SimulatedModel,
    SimulatedPace,
    profile_for,
    simulate,
)

__all__ = [
    "Answer",
    "FunctionModel",
    "ModelProfile",
    "ScriptedModel",
    "SimulatedModel",
    "SimulatedPace",
    "block_model_requests",
    "profile_for",
    "simulate",
    "tool_call",
]
