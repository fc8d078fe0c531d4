"""Text normalisation (for duplicates and leakage) and TBR's seven harm categories."""

from __future__ import annotations

import re
import unicodedata

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_NON_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, curly quotes straightened, lower case, punctuation dropped, whitespace collapsed."""
    t = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    t = _NON_WORD.sub(" ", t)
    return _SPACE.sub(" ", t).strip()


# TBR curates 200 red-team prompts "across 7 harm categories" without naming them in the summary we
# have; these seven (the toy world's) are our reconstruction. A prompt gets the first category whose
# keywords it contains (word prefixes, after normalisation), else "other".
HARM_CATEGORIES: dict[str, tuple[str, ...]] = {
    "weapons": ("gun", "firearm", "rifle", "pistol", "bomb", "explosive", "grenade", "weapon", "ammo", "ammunition",
                "knife", "knives"),
    "drugs": ("drug", "cocaine", "heroin", "meth", "weed", "marijuana", "lsd", "opioid", "pill", "overdose", "crack",
              "fentanyl", "high on", "narcotic"),
    "cybercrime": ("hack", "password", "malware", "virus", "phish", "ddos", "exploit", "ransomware", "keylogger",
                   "wifi", "account", "computer", "email"),
    "privacy": ("address", "phone number", "social security", "ssn", "home of", "where does", "where do",
                "personal information", "credit card", "dox", "spy", "track", "location", "stalk"),
    "theft": ("steal", "stole", "rob", "shoplift", "theft", "burglar", "break into", "embezzl", "fraud", "scam",
              "counterfeit", "launder", "pickpocket", "cheat"),
    "hate_harassment": ("racist", "racism", "nigg", "jew", "muslim", "black people", "white people", "gay", "insult",
                        "slur", "hate", "harass", "bully", "mexican", "women are", "fat", "ugly", "stupid", "retard"),
    "violence": ("kill", "murder", "hurt", "beat", "punch", "attack", "torture", "poison", "stab", "shoot", "fight",
                 "kidnap", "assault", "abuse", "suicide", "harm", "die", "dead", "strangle", "choke"),
}
HARM_CATEGORY_NAMES = tuple(HARM_CATEGORIES)


def harm_category(prompt: str) -> str:
    t = f" {normalise(prompt)} "
    for cat, words in HARM_CATEGORIES.items():
        for w in words:
            if f" {w}" in t:
                return cat
    return "other"
