"""Models on servers of your own, in Python: Ollama, vLLM, LM Studio and llama.cpp's server.

    python examples/own_models/own_models.py llama_cpp "Three facts about tea."

Each server is an `Endpoint` (its URL, the environment variable of its key if it wants one, and
its price: (0, 0) for a model you do not pay per token) and a litellm model name whose prefix
says which API it speaks. The YAML files beside this one are the same recipes as workflows.
"""

from __future__ import annotations

import sys

from delegate import Agent, Endpoint, LiteLLMModel

# server → (base URL, litellm model, environment variable of its key or None: keyless)
SERVERS: dict[str, tuple[str, str, str | None]] = {
    "ollama": ("http://127.0.0.1:11434", "ollama_chat/llama3.2", None),
    "vllm": ("http://127.0.0.1:8000/v1", "hosted_vllm/Qwen/Qwen3-8B", "VLLM_API_KEY"),
    "lm_studio": ("http://127.0.0.1:1234/v1", "lm_studio/qwen2.5-7b-instruct", None),
    "llama_cpp": ("http://127.0.0.1:8080/v1", "openai/qwen2.5-1.5b", None),
}


def model(server: str, *, base_url: str | None = None) -> LiteLLMModel:
    """The recipe's model for `server` ("ollama", "vllm", "lm_studio", "llama_cpp"), on its
    default address or `base_url`."""
    default_url, name, key_env = SERVERS[server]
    endpoint = Endpoint(base_url or default_url, api_key_env=key_env, price=(0, 0), name=server)
    return LiteLLMModel(name, endpoint=endpoint, timeout=120)


def main(argv: list[str]) -> str:
    """Ask the server named by argv[0] the prompt in argv[1]; print and return the answer."""
    server = argv[0] if argv else "llama_cpp"
    prompt = argv[1] if len(argv) > 1 else "Three facts about tea, one line each."
    answer = Agent("local", model(server)).run_sync(prompt)
    print(answer.output)
    return str(answer.output)


if __name__ == "__main__":
    main(sys.argv[1:])
