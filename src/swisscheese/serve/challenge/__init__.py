"""The public jailbreak challenge at /challenge: eight levels against the guarded model.

`serving` holds the rules (levels, grading, the attempts store, one attempt's stream);
`router` the page and its API; `template` how a prompt becomes a reusable template.
"""

from swisscheese.serve.challenge.router import (
    PAGE_HEADERS,
    PLAYER_COOKIE,
    PLAYER_HEADER,
    challenge_router,
    create_challenge_app,
)
from swisscheese.serve.challenge.serving import Challenge, ChallengeDeps, ChallengeError

__all__ = ["PAGE_HEADERS", "PLAYER_COOKIE", "PLAYER_HEADER", "Challenge", "ChallengeDeps",
           "ChallengeError", "challenge_router", "create_challenge_app"]
