"""swisscheese.guard"""
