"""swisscheese.training"""
