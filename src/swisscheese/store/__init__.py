"""swisscheese.store"""
