"""swisscheese.whitebox"""
