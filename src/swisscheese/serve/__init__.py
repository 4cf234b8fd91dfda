"""swisscheese.serve"""
