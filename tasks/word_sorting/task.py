"""Sort a list of words alphabetically (BIG-Bench Hard's word_sorting, generated)."""

from __future__ import annotations

import random

WORDS = (
    "anchor", "basket", "candle", "dragon", "ember", "falcon", "garden", "harbor", "island",
    "jacket", "kettle", "lantern", "meadow", "napkin", "orchard", "pepper", "quarry", "river",
    "saddle", "timber", "umbrella", "valley", "walnut", "yonder", "zephyr", "absent", "bramble",
    "cobalt", "dimple", "elbow", "fossil", "goblet", "hollow", "indigo", "jigsaw", "kernel",
    "lumber", "marble", "nectar", "oyster", "pebble", "quiver", "ribbon", "salmon", "thimble",
    "unicorn", "velvet", "wander", "yearly", "zigzag", "almond", "beacon", "cactus", "dolphin",
    "engine", "fabric", "glacier", "hammer", "insect", "juggle", "kitten", "ladder", "mirror",
    "needle", "olive", "parrot", "quartz", "rocket", "silver", "tunnel", "upward", "violin",
    "window", "yellow", "zebra",
)


def generate(rng: random.Random) -> dict[str, str]:
    words = rng.sample(WORDS, rng.randint(3, 4))
    return {
        "input": "Sort the following words alphabetically: List: " + " ".join(words),
        "target": " ".join(sorted(words)),
    }
