"""nftables through its JSON interface (`nft -j -f -`): one transaction per document.
Blocking (a subprocess): run in an executor."""

from __future__ import annotations

import json
import subprocess


class NftError(Exception):
    """nft is missing, did not answer, or refused the document; the message says which."""


def run_nft(document: dict, missing_ok: bool = False) -> None:
    """``missing_ok``: without nft there is nothing to undo (for deletions)."""
    try:
        result = subprocess.run(["nft", "-j", "-f", "-"], input=json.dumps(document),
                                capture_output=True, text=True, timeout=10)  # fmt: skip
    except FileNotFoundError:
        if missing_ok:
            return
        raise NftError("nft not found: install the nftables package") from None
    except subprocess.TimeoutExpired:
        raise NftError("nft did not answer within 10 s") from None
    if result.returncode != 0:
        raise NftError(f"nft failed: {result.stderr.strip() or result.returncode}")


def list_table(family: str, name: str) -> dict:
    """`nft -j list table`: the table's rules, sets and counters, as nft's JSON."""
    try:
        result = subprocess.run(["nft", "-j", "list", "table", family, name],
                                capture_output=True, text=True, timeout=10)  # fmt: skip
    except FileNotFoundError:
        raise NftError("nft not found: install the nftables package") from None
    except subprocess.TimeoutExpired:
        raise NftError("nft did not answer within 10 s") from None
    if result.returncode != 0:
        raise NftError(f"nft failed: {result.stderr.strip() or result.returncode}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise NftError("nft's answer is not JSON") from None


def named_counters(listed: dict) -> dict[str, int]:
    """Packets per named counter, from `nft -j list table`'s output (list_table)."""
    return {item["counter"]["name"]: item["counter"]["packets"]
            for item in listed.get("nftables", []) if "counter" in item}  # fmt: skip


def table_exists(family: str, name: str) -> bool:
    try:
        result = subprocess.run(["nft", "list", "table", family, name], capture_output=True,
                                text=True, timeout=10)  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def match(left: dict, right: object) -> dict:
    """An expression: ``left == right``."""
    return {"match": {"op": "==", "left": left, "right": right}}


def prefixes(networks) -> dict:
    """A set of CIDR prefixes, as a match's right-hand side."""
    return {"set": [{"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}
                    for n in networks]}  # fmt: skip


def replace_table(name: str) -> list[dict]:
    """The start of a document that replaces table ``inet name`` whole, in one transaction."""
    table = {"family": "inet", "name": name}
    # The first add makes the delete unable to fail on a table that is not there.
    return [{"add": {"table": table}}, {"delete": {"table": table}}, {"add": {"table": table}}]


def delete_table(name: str) -> dict:
    table = {"family": "inet", "name": name}
    return {"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]}
