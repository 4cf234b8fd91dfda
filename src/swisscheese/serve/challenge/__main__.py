"""`python -m swisscheese.serve.challenge`: the challenge alone, for development."""

from swisscheese.serve.challenge.router import main

main()
