"""Prompt filters, one module each; `swisscheese.t2i.registry.PROMPT_FILTERS` names them."""
