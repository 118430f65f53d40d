"""stateful-practices: which env entries hold literal secrets (one name, and many at once)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.stateful_practices import looks_secret, secret_names, secret_value

# The rule as the README states it: the name ends in a secret word (a suffix of its last word
# for the long ones, the whole last word for pass and key), etcd's cluster token excepted.
SPEC = re.compile(
    r"(password|passwd|passphrase|secret|token|apikey|api_key)s?$|(^|_)(pass|keys?)$", re.I
)


def spec(name: str) -> bool:
    normal = name.lower().replace("-", "_").replace(".", "_")
    return bool(SPEC.search(normal)) and not normal.endswith("initial_cluster_token")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("MYSQL_ROOT_PASSWORD", True),
        ("PGPASSWD", True),
        ("client_secret", True),
        ("GITHUB_TOKEN", True),
        ("key", True),
        ("TLS_KEY", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("API_KEY", True),
        ("ApiKey", True),
        ("DB_PASS", True),
        ("KAFKA_CLIENT_PASSWORDS", True),
        ("KEY_ID", False),  # names a key, is not one
        ("MYSQL_ROOT_PASSWORD_FILE", False),  # where the secret is
        ("REPMGR_PASSFILE_PATH", False),
        ("REPMGR_USE_PASSFILE", False),
        ("ETCD_INITIAL_CLUSTER_TOKEN", False),  # etcd's cluster id, documented in plain text
        ("BYPASS", False),
        ("MONKEY", False),
        ("KEYSPACE", False),
        ("HOSTNAME", False),
        ("POD_ORDINAL", False),
    ],
)
def test_names(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("hunter2", True),
        ("s3cr3t,Pa55", True),
        ("", False),
        ("  ", False),
        ("yes", False),
        ("no", False),
        ("true", False),
        ("256", False),
        ("0.5", False),
        ("/opt/bitnami/redis/secrets/redis-password", False),
        ("./secret.txt", False),
        ("$(ROOT_PASSWORD)", False),
        ("jwt,priv-key=/opt/bitnami/etcd/certs/token/jwt-token.pem,sign-method=RS256", False),
    ],
)
def test_values(value: str, secret: bool) -> None:
    assert secret_value(value) is secret


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="pasWORDwdsecrtkoyKEYiI_-9", max_size=14))
def test_same_names_as_the_rule(name: str) -> None:
    assert looks_secret(name) == spec(name)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(alphabet="pasWORDwdsecrtkoynNyKEYiI_-9\n", max_size=14)
            | st.sampled_from(["GITHUB_TOKEN", "DB_PASSWORD", "api_key", "TLS_KEY", "MONKEY"]),
            st.sampled_from(["hunter2", "", "yes", "/a/path", "42"]),
        ),
        max_size=6,
    )
)
def test_the_quick_scan_of_all_names_misses_none(env: list[tuple[str, str]]) -> None:
    assert secret_names(env) == [n for n, v in env if looks_secret(n) and secret_value(v)]
