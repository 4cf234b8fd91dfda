"""Image judges, one module each; `swisscheese.t2i.registry.IMAGE_JUDGES` names them all."""
