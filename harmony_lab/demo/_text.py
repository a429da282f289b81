"""Plausible chat text from a seeded ``random.Random`` (no external data, no I/O).

Messages are built from small hand-written templates with slots (topics, times, people, emoji), so
a demo table looks like a team chat rather than lorem ipsum. Everything is drawn from the RNG that is
passed in, so the same RNG state always yields the same text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["EMOJI", "STATUS_TEXTS", "dm_message", "edit_of", "mention_message", "text_message"]

EMOJI: tuple[str, ...] = ("👍", "🎉", "❤️", "😂", "👀", "🚀", "✅", "🙏", "🔥", "😅")

STATUS_TEXTS: tuple[str, ...] = (
    "heads down on the release",
    "in meetings until 3",
    "on call this week",
    "reviewing PRs",
    "lunch 🥪",
    "working from the train",
    "back tomorrow",
    "pairing with the infra team",
    "",
)

_THINGS = (
    "the deploy",
    "the migration",
    "the flaky test",
    "CI",
    "the release notes",
    "the on-call rota",
    "the dashboard",
    "the websocket reconnect bug",
    "the staging database",
    "the design review",
    "the API docs",
    "the load test",
    "the retro",
    "the new onboarding flow",
    "the presence indicator",
    "the notification settings",
)
_PLACES = ("staging", "prod", "main", "the preview env", "my branch", "the nightly build")
_TIMES = ("after lunch", "in 10 minutes", "tomorrow morning", "before standup", "by EOD", "on Friday", "now")
_OPENERS = ("", "", "", "ok so ", "quick one: ", "fyi ", "hmm, ", "btw ", "heads up: ")
_CLOSERS = ("", "", "", "", " 🙏", " 🚀", " 😅", " 👀", "!", "?", " (no rush)")
_FOOD = ("pizza", "ramen", "tacos", "the salad place", "dumplings", "the food trucks")

_TEMPLATES = (
    "{opener}is anyone looking at {thing}?",
    "{opener}{thing} is green on {place}",
    "{opener}{thing} failed again on {place}",
    "I'll pick up {thing} {time}",
    "{opener}can someone review my PR for {thing}?",
    "merged the fix for {thing}, deploying to {place} {time}",
    "standup notes are in the doc, {thing} is the main blocker",
    "{opener}rolling back {place}, {thing} looks off",
    "does {thing} still need a second pair of eyes?",
    "nice work on {thing} everyone",
    "{opener}who wants {food} for lunch?",
    "coffee {time}?",
    "I think {thing} and {thing2} are related",
    "{opener}numbers for {thing} look much better today",
    "let's sync on {thing} {time}",
    "moved {thing} to next sprint",
    "anyone else seeing timeouts on {place}?",
    "+1",
    "sounds good",
    "on it",
    "lgtm",
    "thanks!",
    "haha",
    "one sec, in a call",
)
_MENTION_TEMPLATES = (
    "@{who} can you take a look at {thing}?",
    "@{who} are you around {time}?",
    "thanks @{who}, that fixed {thing}",
    "@{who} what's the status of {thing}?",
    "@{who} pinging you about {thing} {time}",
)
_DM_TEMPLATES = (
    "hey, got a minute {time}?",
    "did you see the thread about {thing}?",
    "can you cover for me {time}?",
    "thanks for the help with {thing}",
    "quick question about {thing}",
    "lunch? thinking {food}",
    "I pushed the changes to {place}",
)
_EDIT_SUFFIXES = (" (edited: typo)", " — actually, never mind", " *fixed link", " (updated)", "!")


def _fill(rng: random.Random, template: str, who: str = "") -> str:
    thing, thing2 = rng.sample(_THINGS, 2)
    text = template.format(
        opener=rng.choice(_OPENERS),
        thing=thing,
        thing2=thing2,
        place=rng.choice(_PLACES),
        time=rng.choice(_TIMES),
        food=rng.choice(_FOOD),
        who=who,
    )
    return text + rng.choice(_CLOSERS)


def text_message(rng: random.Random) -> str:
    """One message for a text channel."""
    return _fill(rng, rng.choice(_TEMPLATES))


def mention_message(rng: random.Random, username: str) -> str:
    """A message that mentions ``@username``."""
    return _fill(rng, rng.choice(_MENTION_TEMPLATES), who=username)


def dm_message(rng: random.Random) -> str:
    """A direct message."""
    return _fill(rng, rng.choice(_DM_TEMPLATES))


def edit_of(rng: random.Random, content: str) -> str:
    """The text of ``content`` after its author edited it."""
    return content + rng.choice(_EDIT_SUFFIXES)


def pick(rng: random.Random, options: Sequence[str]) -> str:
    return options[rng.randrange(len(options))]
