"""Order objects from clues and pick the true statement (BIG-Bench Hard's logical_deduction)."""

from __future__ import annotations

import random

SETTINGS = (
    ("On a shelf, there are {n} books: {items}. The books are arranged in a fixed order.",
     ["a red book", "a green book", "a blue book", "a white book", "an orange book"],
     "leftmost", "rightmost", "to the left of", "to the right of"),
    ("In a golf tournament, there were {n} golfers: {items}.",
     ["Ana", "Eli", "Rob", "Mya", "Joe"], "first", "last", "finished above", "finished below"),
)
ORDINALS = ["first", "second", "third", "fourth", "fifth"]


def generate(rng: random.Random) -> dict[str, object]:
    intro, names, first_word, last_word, before, after = rng.choice(SETTINGS)
    n = rng.choice((3, 3, 4))
    items = rng.sample(names, n)
    order = items[:]  # order[i] is at position i
    rng.shuffle(order)
    clues: list[str] = []
    # Clues are added until they pin down the order (checked by brute force over permutations).
    from itertools import permutations

    def consistent(perm: tuple[str, ...]) -> bool:
        return all(check(perm) for _, check in clue_checks)

    clue_checks: list[tuple[str, object]] = []
    while sum(consistent(p) for p in permutations(items)) > 1:
        a, b = rng.sample(items, 2)
        kind = rng.random()
        if kind < 0.5:
            ia, ib = order.index(a), order.index(b)
            if ia > ib:
                a, b = b, a
            text = f"The {_strip(a)} is {before} the {_strip(b)}." if " " in a else f"{a} {before} {b}."
            clue_checks.append((text, lambda p, a=a, b=b: p.index(a) < p.index(b)))
        elif kind < 0.75:
            pos = order.index(a)
            word = first_word if pos == 0 else last_word if pos == n - 1 else ORDINALS[pos]
            if word in (first_word, last_word):
                text = f"The {_strip(a)} is the {word}." if " " in a else f"{a} finished {word}."
            else:
                text = (f"The {_strip(a)} is the {word} from the left." if " " in a
                        else f"{a} finished {word}.")
            clue_checks.append((text, lambda p, a=a, pos=pos: p.index(a) == pos))
        else:
            continue
        clues.append(text)
    target_pos = rng.randrange(n)
    options = []
    for item in items:
        word = ORDINALS[target_pos]
        options.append(f"The {_strip(item)} is the {word} from the left" if " " in item
                       else f"{item} finished {word}")
    correct = items.index(order[target_pos])
    letter = chr(65 + correct)
    question = (intro.format(n=n, items=", ".join(items)) + " "
                + " ".join(dict.fromkeys(clues)) + "\nWhich of the following is true?")
    return {"input": question, "choices": options, "target": letter}


def _strip(item: str) -> str:
    return item.split(" ", 1)[1] if item.startswith(("a ", "an ")) else item
