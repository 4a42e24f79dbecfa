"""Random numbers from os.urandom alone (oneservice/randomness.py)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from oneservice.randomness import random_below, random_sample, random_token, random_u32


def test_each_number_below_a_limit_comes_about_equally_often():
    # 3 is the worst case for a draw of whole bits (2 bits, a quarter drawn again), and a
    # remainder would favour the small numbers of a limit just above a power of two.
    for limit in (3, 5, 257):
        draws = 200 * limit
        counts = Counter(random_below(limit) for _ in range(draws))
        assert set(counts) == set(range(limit))
        expected = draws / limit
        chi_square = sum((counts[n] - expected) ** 2 / expected for n in range(limit))
        # Far above the 99.99th percentile of the chi-square with limit - 1 degrees of freedom
        # (a good draw fails here about once in ten thousand runs or less).
        assert chi_square < limit + 12 * limit**0.5 + 20, (limit, chi_square)
    assert random_below(1) == 0


def test_a_limit_below_1_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        random_below(0)


def test_a_sample_takes_distinct_places_and_every_member_can_come_first():
    population = list(range(20000, 20300))
    sample = random_sample(population, 256)
    assert len(sample) == len(set(sample)) == 256 and set(sample) <= set(population)
    firsts = Counter(random_sample("abcd", 1)[0] for _ in range(2000))
    assert set(firsts) == set("abcd") and min(firsts.values()) > 350
    # A few of many: places drawn until distinct, not a shuffle of the whole population.
    few = Counter(n for _ in range(2000) for n in random_sample(range(40), 3))
    assert set(few) == set(range(40)) and min(few.values()) > 80  # 150 expected each
    ports = random_sample(range(20000, 60000), 3)
    assert len(set(ports)) == 3 and all(20000 <= port < 60000 for port in ports)
    assert sorted(random_sample(range(5), 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot take 6 of 5"):
        random_sample(range(5), 6)


def test_numbers_and_tokens_differ_and_tokens_are_url_safe():
    assert len({random_u32() for _ in range(1000)}) > 990
    assert all(0 <= random_u32() < 2**32 for _ in range(100))
    tokens = {random_token(24) for _ in range(100)}
    assert len(tokens) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", token) for token in tokens)
