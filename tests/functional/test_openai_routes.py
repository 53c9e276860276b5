"""OpenAI-compatible routes (issue 16 §5): the official `openai` client, unchanged but for its base URL and the
subscription key header, through the emulated gateway to the endpoint's /invocations (Databricks serves chat,
completions and embeddings OpenAI-compatibly: "Foundation model REST API reference"; chat streams as
chat.completion.chunk server-sent events)."""

from __future__ import annotations

import ssl
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from apimsync.emulators.sandbox import Sandbox


@pytest.fixture
def synced(sandbox: Sandbox) -> Sandbox:
    report = sandbox.engine().sync()
    assert report.ok
    notes = {c.endpoint: c.notes for c in report.plan.changes}
    assert "OpenAI route /chat/completions" in notes["openai-chat"]
    assert "OpenAI route /embeddings" in notes["openai-embeddings"]
    assert not any("OpenAI" in n for n in notes["churn-classifier"])
    return sandbox


def client(box: Sandbox, endpoint: str) -> OpenAI:
    """The client as a team writes it; only the TLS trust is the emulator's (its CA is local)."""
    trust = ssl.create_default_context(cafile=str(box.apim.ca_file))
    http = (getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient)(verify=trust)
    return OpenAI(base_url=f"{box.apim.gateway_url}/serving/{endpoint}", api_key="not-used-apim-holds-the-token",
                  default_headers={"Ocp-Apim-Subscription-Key": box.apim.subscription_key}, http_client=http,
                  max_retries=0)


def test_the_openai_client_chats_embeds_and_streams_through_apim(synced: Sandbox) -> None:
    chat = client(synced, "openai-chat").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    assert chat.choices[0].message.content == "Emulated answer from gpt-4o-mini."
    assert chat.usage is not None and chat.usage.total_tokens > 0
    chunks = list(client(synced, "openai-chat").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Emulated answer from gpt-4o-mini."
    vectors = client(synced, "openai-embeddings").embeddings.create(model="text-embedding-3-small",
                                                                    input=["a", "b"])
    assert [d.index for d in vectors.data] == [0, 1] and vectors.data[0].embedding
    calls = synced.databricks.stats()["invocations"]
    assert calls["openai-chat/gpt-4o-mini"] == 2 and calls["openai-embeddings/text-embedding-3-small"] == 1


def test_without_the_option_there_is_no_openai_route(sandbox: Sandbox) -> None:
    sandbox.engine(sandbox.settings(apis={"openai_routes": False})).sync()
    with pytest.raises(openai.NotFoundError, match=r"Resource not found"):
        client(sandbox, "openai-chat").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def test_a_streamed_answer_reaches_the_client_as_it_is_produced(synced: Sandbox) -> None:
    """The shipped templates forward with buffer-response="false" (Learn, "Configure API for server-sent events"):
    the first chunk reaches the OpenAI client before the model has produced the last one. With APIM's default
    (buffered) the client would get nothing until the whole answer was there."""
    import time

    stream = client(synced, "openai-chat").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True)
    first = None
    texts = []
    for chunk in stream:
        if first is None:
            first = time.monotonic()
        texts.extend(c.delta.content or "" for c in chunk.choices)
    produced = synced.databricks.data_plane.stream_times
    assert "".join(texts) == "Emulated answer from gpt-4o-mini."
    assert first is not None and len(produced) > 3 and first < produced[-1], "the stream was buffered"


def test_a_template_that_keeps_apims_default_buffers_the_stream(synced: Sandbox, tmp_path: Path) -> None:
    """What makes the test above able to fail: the emulated gateway buffers as APIM does by default."""
    import time

    from apimsync.policy import load_template

    template = tmp_path / "buffered.xml"
    template.write_text(load_template("named-value-auth")[0].replace(
        '<forward-request buffer-response="false" />', "<base />"), encoding="utf-8")
    assert synced.engine(synced.settings(policy={"template": str(template)})).sync().ok
    stream = client(synced, "openai-chat").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], stream=True)
    first = None
    for _chunk in stream:
        first = first or time.monotonic()
    assert first is not None and first >= synced.databricks.data_plane.stream_times[-1]
