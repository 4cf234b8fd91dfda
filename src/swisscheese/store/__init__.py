"""swisscheese.store: runs, attempts, decisions, keys and deployments on SQLAlchemy Core.

    engine.py     open_store(path or URL): the engine, the reachability check, migrations
    schema.py     every table, and each component's migrations
    decisions.py  the gateway's decisions, deployments, workers and rate-limit buckets
    keys.py       client API keys (hashed)
    campaigns.py  the red team's runs and attempts
    challenge.py  the challenge page's attempts and universal flags
    reports.py    reported jailbreaks (challenge report button, admin API) until patched
"""
