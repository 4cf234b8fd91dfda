"""swisscheese.serve: the OpenAI-compatible gateway in front of a guarded model.

    config.py      GatewayConfig, every field with its help text
    app.py         create_app(config) -> FastAPI: routes, error handlers, metrics, challenge
    routes.py      the HTTP routes (thin: who, what, then the serving classes)
    protocol.py    the OpenAI wire format (requests, replies, stream chunks)
    serving.py     ChatServing / GuardedRun: the model in a thread, the guard per delta
    moderation.py  POST /v1/moderations: the classifiers alone
    security.py    API keys, the admin key, body and max_tokens limits, rate limits
    errors.py      OpenAI-style error objects
    metrics.py     Prometheus metrics in a registry per app
    state.py       GatewayState: the deployed guard (hot swap), store, pools
    fleet.py       StoreSync: keys, deployments and heartbeats shared through the store
    workers.py     `serve --workers N`: N processes on one port, one store
    monitor.py     offline re-scoring of logged traffic with a heavier judge
    server.py      running an app under uvicorn (foreground or background thread)
    cli.py         `swisscheese serve`, `bundle deploy`, `monitor`, `keys`
    challenge.py   the challenge page (another module; app.py mounts it when present)
"""
