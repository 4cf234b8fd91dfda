"""Every registered model backend honours the ChatModel contract."""

import threading

import pytest

from swisscheese.models import MODEL_BACKENDS, ChatModel, GenerationParams, backend_for


def test_specs_route_to_the_right_backend(tmp_path):
    assert backend_for("http://127.0.0.1:8000/v1") == "openai"
    assert backend_for("https://example.invalid/v1#m") == "openai"
    assert backend_for(str(tmp_path)) == "hf"


@pytest.fixture(params=MODEL_BACKENDS.names())
def backend_model(request, tiny_model_dir):
    if request.param == "hf":
        yield MODEL_BACKENDS["hf"].load(str(tiny_model_dir))
        return
    # A real HTTP server on loopback speaking the OpenAI wire format.
    from tests.unit.test_openai_compat import FakeServer

    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield MODEL_BACKENDS["openai"].load(server.base_url + "#tiny-model", max_retries=0)
    finally:
        server.shutdown()
        server.server_close()


def test_contract(backend_model):
    assert isinstance(backend_model, ChatModel)
    p = GenerationParams(max_new_tokens=8)
    one = backend_model.generate([{"role": "user", "content": "hi"}], p)
    assert one.role == "assistant" and isinstance(one.content, str)
    assert "".join(backend_model.stream("hi", p)) == one.content
    batch = backend_model.generate_batch(["hi", "hi"], p)
    assert [m.content for m in batch] == [one.content, one.content]
    assert isinstance(backend_model.name, str) and backend_model.name
