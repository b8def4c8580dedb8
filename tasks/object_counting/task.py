"""Count the objects of one kind in a list of possessions (BIG-Bench Hard's object_counting)."""

from __future__ import annotations

import random

KINDS = {
    "animals": ["cat", "dog", "goat", "rabbit", "cow", "pig", "snake", "fish", "chicken", "donkey",
                "mouse", "frog", "duck", "snail", "bear"],
    "fruits": ["apple", "banana", "peach", "plum", "grape", "orange", "strawberry", "blackberry",
               "raspberry", "nectarine"],
    "vegetables": ["carrot", "potato", "onion", "cabbage", "yam", "garlic", "celery", "lettuce head",
                   "cauliflower", "broccoli"],
    "musical instruments": ["piano", "flute", "trumpet", "violin", "drum", "clarinet", "trombone",
                            "accordion"],
}
NUMBER_WORDS = ["a", "two", "three", "four", "five"]


def _phrase(name: str, count: int) -> str:
    if count == 1:
        article = "an" if name[0] in "aeiou" else "a"
        return f"{article} {name}"
    plural = name + ("es" if name.endswith(("sh", "ch", "s", "o")) and name not in ("piano",) else "s")
    if name == "mouse":
        plural = "mice"
    elif name == "fish":
        plural = "fish"
    elif name == "strawberry" or name.endswith("berry"):
        plural = name[:-1] + "ies"
    return f"{NUMBER_WORDS[count - 1]} {plural}"


def generate(rng: random.Random) -> dict[str, str]:
    asked = rng.choice(list(KINDS))
    items: list[tuple[str, int, str]] = []
    for kind, names in KINDS.items():
        n_names = rng.randint(1, 2) if kind == asked else int(rng.random() < 0.4)
        for name in rng.sample(names, n_names):
            items.append((name, rng.choice((1, 1, 2)), kind))
    rng.shuffle(items)
    listed = [_phrase(name, count) for name, count, _ in items]
    text = ", ".join(listed[:-1]) + f" and {listed[-1]}" if len(listed) > 1 else listed[0]
    total = sum(count for _, count, kind in items if kind == asked)
    return {"input": f"I have {text}. How many {asked} do I have?", "target": str(total)}
