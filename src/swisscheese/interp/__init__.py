"""swisscheese.interp"""
