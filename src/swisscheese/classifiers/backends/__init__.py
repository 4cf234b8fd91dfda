"""The classifier backends, one module each; `classifiers.registry` names them lazily."""
