"""stateful-practices: which env names look like secrets (one name, and many at once)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.stateful_practices import looks_secret, secret_names

# The rule as first written (README: password, passwd, secret, token or key as a word).
SPEC = re.compile(r"pass(word|wd)?|secret|token|(^|_)key($|_)|apikey|api_key", re.I)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("MYSQL_ROOT_PASSWORD", True),
        ("PGPASSWD", True),
        ("client_secret", True),
        ("GITHUB_TOKEN", True),
        ("key", True),
        ("KEY_ID", True),
        ("TLS_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("API_KEY", True),
        ("ApiKey", True),
        ("MONKEY", False),
        ("KEYSPACE", False),
        ("HOSTNAME", False),
        ("POD_ORDINAL", False),
    ],
)
def test_examples(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="pasWORDwdsecrtkoyKEYiI_-9", max_size=14))
def test_same_names_as_the_rule(name: str) -> None:
    assert looks_secret(name) == bool(SPEC.search(name))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.text(alphabet="pasWORDwdsecrtkoynNyKEYiI_-9\n", max_size=14)
        | st.sampled_from(["GITHUB_TOKEN", "DB_PASSWORD", "api_key", "TLS_KEY", "MONKEY"]),
        max_size=6,
    )
)
def test_the_quick_scan_of_all_names_misses_none(names: list[str]) -> None:
    assert secret_names(names) == [name for name in names if looks_secret(name)]
