"""Date arithmetic: the date a number of days, weeks or a month before or after a given date."""

from __future__ import annotations

import datetime as dt
import random

START = dt.date(1995, 1, 1)


def generate(rng: random.Random) -> dict[str, str]:
    day = START + dt.timedelta(days=rng.randrange(365 * 40))
    unit = rng.choice(("days", "days", "weeks", "yesterday", "tomorrow"))
    if unit == "yesterday":
        question, answer = "What was the date yesterday?", day - dt.timedelta(days=1)
    elif unit == "tomorrow":
        question, answer = "What is the date tomorrow?", day + dt.timedelta(days=1)
    else:
        n = rng.randint(2, 20) if unit == "days" else rng.randint(1, 3)
        delta = dt.timedelta(days=n) if unit == "days" else dt.timedelta(weeks=n)
        if rng.random() < 0.5:
            question, answer = f"What is the date {n} {unit} from today?", day + delta
        else:
            question, answer = f"What was the date {n} {unit} ago?", day - delta
    return {
        "input": f"Today is {day:%m/%d/%Y}. {question} Give the date as MM/DD/YYYY.",
        "target": f"{answer:%m/%d/%Y}",
    }
