"""Training recipes: how a guard bundle is trained from data and measured on held-out data.

One registry (`recipes.registry.RECIPES`): `organism` (the synthetic world) and
`realworld` (the public datasets), and whatever users add.
"""
