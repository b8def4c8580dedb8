"""A scripted model that answers every C3PO template (recognised by its wording).

Feedback: "Don't use emojis in emails to my boss".

- Generator: two categories; in-scope requests are "Write an email to my boss about ..." and
  near-scope ones "Write a text to my friend about ..." (only the REVISED_PROMPTS list counts).
- Base model: answers with an emoji for boss emails and friend texts ("Dear boss 😀 ...",
  "Hi friend 😀 ..."), plainly otherwise; asked to revise, it drops the emoji.
- In-context (feedback appended): boss emails lose the emoji, friend texts change a little
  ("(adjusted)"), general requests get the baseline answer unchanged.
- Judge: 5 when B dropped A's emoji, 4 for an "(adjusted)" B, else 3.

So for the In-Context baseline: every in-scope g = 1, near-scope |g| = 0.5, out-of-scope 0.
"""

from __future__ import annotations

import re

from agentopt.lm import register_script

FEEDBACK = "Don't use emojis in emails to my boss"
EMOJI = "\U0001F600"
CATEGORIES_REPLY = """THOUGHTS: The feedback covers emails written to a manager.
CATEGORIES:
1. Work emails
2. Status updates
REVISED_CATEGORIES:
1. **Emails to my boss about schedules**
2. "Emails to my boss about projects"
3. Emails to my boss asking for leave
"""


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def baseline(prompt: str) -> str:
    if "email to my boss" in prompt:
        return f"Dear boss {EMOJI} re: {prompt}"
    if "text to my friend" in prompt:
        return f"Hi friend {EMOJI} re: {prompt}"
    return f"Answer: {prompt}"


def model(messages, params) -> str:
    text = messages[-1].content
    sample = params.get("sample", 0)
    if "REVISED_CATEGORIES" in text:
        return CATEGORIES_REPLY
    if "REVISED_PROMPTS" in text:
        count = int(re.search(r"Write (\d+) requests", text).group(1))
        category = re.search(r'in the category "([^"]+)"', text).group(1)
        items = "\n".join(f"{i}. Write a text to my friend about {category.lower()} #{i}.{sample}"
                          for i in range(1, count + 1))
        return f"THOUGHTS: stay social.\nPROMPTS:\n1. junk that must be ignored\nREVISED_PROMPTS:\n{items}"
    if "ALWAYS be within" in text:
        count = int(re.search(r"Write (\d+) different requests", text).group(1))
        category = re.search(r'in the category "([^"]+)"', text).group(1)
        return "\n".join(f"{i}. Write an email to my boss about {category.lower()} #{i}.{sample}"
                         for i in range(1, count + 1))
    if "IMPROVED_RESPONSE" in text:
        response = _between(text, "RESPONSE:\n", "\n\nThe user gave")
        return f"EXPLANATION: The emoji must go.\nIMPROVED_RESPONSE: {response.replace(EMOJI + ' ', '')}"
    if "RATING: <1-5>" in text:
        a = _between(text, "RESPONSE_A:\n", "\n\nRESPONSE_B:")
        b = _between(text, "RESPONSE_B:\n", "\n\nCompared with")
        if EMOJI in a and EMOJI not in b:
            return "B has no emoji.\nRATING: 5"
        if "(adjusted)" in b:
            return "B changed a little.\nRATING: 4"
        return "Same.\nRATING: 3"
    if "follow this feedback" in text:
        prompt = text.split("\n\n(Where it applies", 1)[0]
        if "email to my boss" in prompt:
            return f"Dear boss, re: {prompt}"
        if "text to my friend" in prompt:
            return f"Hi friend {EMOJI} (adjusted)"
        return baseline(prompt)
    return baseline(text)


def register(name: str = "c3po-toy") -> str:
    return register_script(name, model)
