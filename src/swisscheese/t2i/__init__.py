"""Automatic red-teaming of text-to-image models (ART) on a synthetic visual world.

    from swisscheese.t2i.world import VisualWorld
    from swisscheese.t2i.organism import train_organism
    from swisscheese.t2i.config import get_preset
    from swisscheese.t2i.run import T2IRun
"""

import os

# OpenMP threads that spin while they wait make torch many times slower when the two cores
# are shared with other work; waiting passively costs little when they are not. Read when
# torch first runs a parallel region, so it only helps if set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
