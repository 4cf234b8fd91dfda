"""swisscheese.redteam"""
