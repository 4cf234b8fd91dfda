"""Prompt writers, one module each; `swisscheese.t2i.registry.WRITERS` names them."""
