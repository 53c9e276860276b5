"""Write verdicts.json: what MLflow's own code says of each request body in corpus.json.

Run it where MLflow is installed (it is not a dependency of apimsync or its tests):

    python -m venv /tmp/mlflow && /tmp/mlflow/bin/pip install "mlflow-skinny==3.18.0" pandas
    /tmp/mlflow/bin/python tests/data/payloads/mlflow_verdicts.py

The validator per task is the one MLflow applies to that kind of model:
- a custom pyfunc model (no task): the scoring server's JSON parsing (mlflow.pyfunc.scoring_server
  _parse_json_data), which takes exactly one of dataframe_split, dataframe_records, instances, inputs, or an
  unwrapped LLM body (messages, prompt, input: mlflow.pyfunc.utils.serving_data_parser);
- llm/v1/chat: mlflow.types.chat.ChatCompletionRequest (the OpenAI chat request MLflow models);
- llm/v1/completions, llm/v1/embeddings: the scoring server's unwrapped LLM input (prompt, input);
- agent/v1/chat (ChatModel): mlflow.types.llm.ChatCompletionRequest.from_dict;
- agent/v2/chat (ChatAgent): mlflow.types.agent.ChatAgentRequest;
- agent/v1/responses (ResponsesAgent): mlflow.types.responses.ResponsesAgentRequest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _pyfunc(body: Any) -> None:
    from mlflow.pyfunc.scoring_server import _parse_json_data

    _parse_json_data(json.dumps(body), None, None)


def _unified_llm(key: str) -> Any:
    def check(body: Any) -> None:
        from mlflow.pyfunc.utils.serving_data_parser import is_unified_llm_input

        if not isinstance(body, dict) or not is_unified_llm_input(body) or key not in body:
            raise ValueError(f"not an unwrapped LLM request with '{key}'")
        _pyfunc(body)
    return check


def _chat(body: Any) -> None:
    from mlflow.types.chat import ChatCompletionRequest

    ChatCompletionRequest(**body)
    if not body.get("messages"):
        raise ValueError("no messages")


def _chat_model(body: Any) -> None:
    from mlflow.types.llm import ChatCompletionRequest

    ChatCompletionRequest.from_dict(body)
    if not body.get("messages"):
        raise ValueError("no messages")


def _chat_agent(body: Any) -> None:
    from mlflow.types.agent import ChatAgentRequest

    ChatAgentRequest(**body)


def _responses(body: Any) -> None:
    from mlflow.types.responses import ResponsesAgentRequest

    ResponsesAgentRequest(**body)


VALIDATORS = {None: _pyfunc, "llm/v1/chat": _chat, "llm/v1/completions": _unified_llm("prompt"),
              "llm/v1/embeddings": _unified_llm("input"), "agent/v1/chat": _chat_model,
              "agent/v2/chat": _chat_agent, "agent/v1/responses": _responses}


def main() -> None:
    import mlflow

    corpus = json.loads((HERE / "corpus.json").read_text(encoding="utf-8"))["payloads"]
    verdicts = {}
    for entry in corpus:
        try:
            VALIDATORS[entry["task"]](entry["body"])
            verdicts[entry["id"]] = {"accepted": True}
        except Exception as exc:  # what MLflow raises is the verdict
            verdicts[entry["id"]] = {"accepted": False, "reason": f"{type(exc).__name__}: {str(exc)[:160]}"}
    out = {"mlflow": mlflow.__version__, "verdicts": verdicts}
    (HERE / "verdicts.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
