"""The organism recipe: guard bundles trained and measured on the synthetic world."""
