"""Constants shared by training, export and serving, defined once here (stdlib only).

``HORIZONS``: the direction heads' horizons, in ticks ahead; ``CLASSES``: direction classes, in the
order of the last axis of every direction probability tensor (0 = down, 1 = flat, 2 = up).
"""
HORIZONS = (10, 50, 100)
CLASSES = ("down", "flat", "up")
