"""Rapid response: reported jailbreaks -> their form -> proliferated variants -> a retrained,
recalibrated next bundle version (`patch.patch_bundle`, `swisscheese patch`).
"""
