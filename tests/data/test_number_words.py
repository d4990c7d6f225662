"""The numbers-to-words seq2seq task (benchmarks/number_words.py): exact answers, an independent
inverse over the whole range, and fixed disjoint splits."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import number_words as NW  # noqa: E402

SMALL = {w: i for i, w in enumerate(NW.ONES)} | {w: 10 * i for i, w in enumerate(NW.TENS) if i >= 2}
ORD = {v: k for k, v in NW.ORDINAL.items()}


def words_to_number(text: str) -> int:
    """An independent reader of the generator's cardinals (and ordinals, via their cardinal word)."""
    *head, last = text.split()
    if last in ORD:
        last = ORD[last]
    elif last.endswith("ieth"):
        last = last[:-4] + "y"
    elif last.endswith("th") and last[:-2] in SMALL | {"hundred": 0, "thousand": 0}:
        last = last[:-2]
    total = part = 0
    for w in [*head, last]:
        if w == "hundred":
            part *= 100
        elif w == "thousand":
            total, part = (part or 1) * 1000, 0
        else:
            part += SMALL[w]
    return total + part


@pytest.mark.parametrize("n, card, ordn", [
    (0, "zero", "zeroth"), (12, "twelve", "twelfth"), (20, "twenty", "twentieth"), (21, "twenty one", "twenty first"),
    (105, "one hundred five", "one hundred fifth"), (40512, "forty thousand five hundred twelve", "forty thousand five hundred twelfth"),
    (700000, "seven hundred thousand", "seven hundred thousandth"),
    (999999, "nine hundred ninety nine thousand nine hundred ninety nine", "nine hundred ninety nine thousand nine hundred ninety ninth"),
])
def test_exact_cardinals_and_ordinals(n, card, ordn):
    assert NW.cardinal(n) == card and NW.ordinal(n) == ordn


@pytest.mark.parametrize("y, text", [(1905, "nineteen oh five"), (1900, "nineteen hundred"), (2000, "two thousand"),
                                     (2005, "two thousand five"), (2010, "twenty ten"), (1066, "ten sixty six"),
                                     (1000, "one thousand"), (1999, "nineteen ninety nine")])
def test_exact_years(y, text):
    assert NW.year(y) == text


def test_inverse_over_the_range():
    for n in list(range(0, 2000)) + list(range(0, 1_000_000, 997)) + [999_999]:
        assert words_to_number(NW.cardinal(n)) == n
        assert words_to_number(NW.ordinal(n)) == n


def test_out_of_range_is_refused():
    for bad in (-1, 1_000_000):
        with pytest.raises(ValueError):
            NW.cardinal(bad)
    with pytest.raises(ValueError):
        NW.year(2100)


def test_splits_fixed_disjoint_and_correct(tmp_path):
    a, b = NW.make_splits(0, 3000, 200, 200), NW.make_splits(0, 3000, 200, 200)
    assert a == b and NW.make_splits(1, 3000, 200, 200) != a
    srcs = [{s for s, _ in a[k]} for k in ("train", "valid", "test")]
    assert sum(map(len, srcs)) == 3400 and len(set().union(*srcs)) == 3400
    assert NW.make_splits(0, 500, 200, 200)["test"] == a["test"]  # held-out sets do not move with the train size
    for s, t in a["train"]:
        digits = int("".join(c for c in s if c.isdigit()))
        if s.startswith("year "):
            assert t == NW.year(digits)
        else:
            assert words_to_number(t) == digits and (t == NW.ordinal(digits)) == s.endswith(" th")
    NW.main(["--out", str(tmp_path), "--train", "50", "--valid", "5", "--test", "5"])
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 50
