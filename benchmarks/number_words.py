"""A seq2seq task a small model learns on a CPU: numbers to English words (deterministic).

Three forms, a third each, with the digits of the source spaced so that every tokenizer sees
one digit per token:

* cardinal ``4 0 5 1 2`` -> ``forty thousand five hundred twelve`` (0 to 999,999; the number of
  digits is uniform in 1-6, then the value is uniform among numbers with that many digits);
* ordinal ``4 0 5 1 2 th`` -> ``forty thousand five hundred twelfth``;
* year ``year 1 9 0 5`` -> ``nineteen oh five`` (1000-2099: ``nineteen hundred``, ``two thousand
  five``, ``twenty ten``).

The target vocabulary is about 60 words; the space of sources is over 2 million, so a training
set of 40,000 pairs holds under 2% of it and memorising is impossible. Splits are disjoint by
source and fixed by the seed: ``python benchmarks/number_words.py --out DIR`` writes DiffuSeq
jsonl ``{"src", "trg"}`` files ``DIR/{train,valid,test}.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
           "nine": "ninth", "twelve": "twelfth"}


def below_thousand(n: int) -> list[str]:
    """Words of 1 <= n < 1000 (no "and", no hyphens: ``five hundred twelve``)."""
    words: list[str] = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10])
        n %= 10
    if n:
        words.append(ONES[n])
    return words


def cardinal(n: int) -> str:
    """English words of 0 <= n < 1,000,000."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"{n} is out of range 0-999999")
    if n == 0:
        return "zero"
    words = below_thousand(n // 1000) + ["thousand"] if n >= 1000 else []
    return " ".join(words + (below_thousand(n % 1000) if n % 1000 else []))


def ordinal(n: int) -> str:
    """``cardinal(n)`` with its last word made ordinal (twenty -> twentieth, twelve -> twelfth)."""
    *head, last = cardinal(n).split()
    if last in ORDINAL:
        last = ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def year(n: int) -> str:
    """A year 1000-2099 as it is read: ``nineteen oh five``, ``nineteen hundred``, ``two thousand five``."""
    if not 1000 <= n <= 2099:
        raise ValueError(f"{n} is out of range 1000-2099")
    hi, lo = divmod(n, 100)
    if 2000 <= n <= 2009:
        return cardinal(n)
    if lo == 0:
        return f"{cardinal(hi)} hundred" if hi % 10 else cardinal(n)  # 1900, but 1000 / 2000 as cardinals
    return f"{cardinal(hi)} {'oh ' + ONES[lo] if lo < 10 else cardinal(lo)}"


def spaced(n: int) -> str:
    return " ".join(str(n))


def pair(rng: random.Random) -> tuple[str, str]:
    """One random (source, target) pair."""
    form = rng.randrange(3)
    if form == 2:
        y = rng.randint(1000, 2099)
        return f"year {spaced(y)}", year(y)
    digits = rng.randint(1, 6)
    n = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)
    return (spaced(n), cardinal(n)) if form == 0 else (f"{spaced(n)} th", ordinal(n))


def make_splits(seed: int = 0, n_train: int = 40000, n_valid: int = 1000, n_test: int = 1000) -> dict[str, list[tuple[str, str]]]:
    """Train / valid / test pairs, disjoint by source, the same for the same arguments."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: dict[str, list[tuple[str, str]]] = {}
    for name, n in (("test", n_test), ("valid", n_valid), ("train", n_train)):  # held-out first: same at any n_train
        rows: list[tuple[str, str]] = []
        while len(rows) < n:
            s, t = pair(rng)
            if s not in seen:
                seen.add(s)
                rows.append((s, t))
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for train.jsonl, valid.jsonl, test.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=40000)
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    a = p.parse_args(argv)
    folder = Path(a.out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in make_splits(a.seed, a.train, a.valid, a.test).items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"src": s, "trg": t}) + "\n" for s, t in rows), encoding="utf-8")
        print(f"{folder / name}.jsonl: {len(rows)} pairs")


if __name__ == "__main__":
    main()
