"""Control messages: every kind that travels inside a control datagram, typed, and the one
place that turns them into bytes and back.

On the wire each is a msgpack map whose "t" names the kind (docs/PROTOCOL.md, "Control
messages"). decode() checks every field's type, so whoever handles a message never meets a
missing key or a string where a number belongs: anything else is MessageError, and the
receiver counts it (``control_malformed``) and drops it.
"""

from __future__ import annotations

import msgpack

from .records import record

# Bounds for what decode accepts: a control message is small, except a config (which comes
# in chunks, node/chunks.py, and is at most MAX_MESSAGE_BYTES whole: ~17,000 members).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_STRING = 4096
MAX_ITEMS = 4096
MAX_FIELDS = 64


class MessageError(ValueError):
    """Bytes that are no control message we know."""


@record
class Ping:
    """A path probe; ``preferred``: the sender sends its traffic over this path; ``seen``:
    where the sender sends it to ("ip/port"; empty over a relay), so that the receiver learns
    its public endpoint behind a NAT (as from a Pong); ``thin``: the sender takes thin relay
    frames (node/wire.py; older nodes leave it out, and get none)."""

    probe_id: int
    preferred: bool = False
    seen: str = ""
    thin: bool = False


@record
class Pong:
    """The answer to a ping; ``seen``: where the ping came from ("ip/port"; empty over a
    relay), so the pinger learns its public endpoint behind a NAT; ``thin``: as a Ping's."""

    probe_id: int
    seen: str = ""
    thin: bool = False


@record
class Goodbye:
    """The sender stops (or dropped us from its networks): its sessions with us are over."""


@record
class Whois:
    """To a root: who is ``address``, and where?"""

    address: str


@record
class WhoisAnswer:
    """A root's answer; no identity: unknown there (or not to be told)."""

    address: str
    identity: str | None = None
    endpoints: tuple[str, ...] = ()


@record
class Introduction:
    """From a root: this node is looking for you, and is reachable here."""

    identity: str
    endpoints: tuple[str, ...] = ()


@record
class ChunkRequest:
    """The chunks of message ``message_id`` that have not arrived (node/chunks.py)."""

    message_id: int
    indexes: tuple[int, ...]


@record
class ConfigRequest:
    """A member asks a network's controller for its config; ``revision``: the one it has
    (-1: none)."""

    network_id: str
    revision: int


@record
class ConfigAnswer:
    """The controller's answer: a signed config document (network/signed.py), or an error
    status (ACCESS_DENIED, NOT_FOUND) and nothing else."""

    network_id: str
    config: bytes | None = None
    signature: bytes | None = None
    error: str | None = None


@record
class ConfigDelta:
    """The controller's answer to a member at revision ``base``: what changed since (canonical
    JSON, network/signed.py), and the signature of the whole new config. The member applies
    it to the config it holds and checks the signature over the result: the same bytes it
    would have got whole."""

    network_id: str
    base: int
    changes: bytes
    signature: bytes


@record
class AddressQuery:
    """To a member of a shared network (a full tunnel's gateway, in a leak test): where do
    you see me, and where does what I send through you leave?"""

    query_id: int


@record
class AddressAnswer:
    """``seen``: where the query came from (``ip/port``, or ``relayed by <root>``);
    ``exits``: the answering node's uplink addresses, where what it forwards leaves;
    ``forwards``: whether it serves as exit node for a network it shares with the asker
    (None: an answer from a node that does not say)."""

    query_id: int
    seen: str
    exits: tuple[str, ...] = ()
    forwards: bool | None = None


@record
class LocalEndpoints:
    """To a member of a shared network: the sender's own uplink addresses with its port
    ("ip/port"), private ones included, so that members behind one NAT find each other, and
    where its routers map a port to it (``mapped``, also among ``endpoints``)."""

    endpoints: tuple[str, ...]
    mapped: tuple[str, ...] = ()
    # Its NAT gives each destination a port of its own ("hard": node/birthday.py).
    hard: bool = False


@record
class Birthday:
    """From a member behind a hard NAT, over a relayed session: it has just sent a probe from
    each of many sockets to ``to`` (our public endpoint, "ip/port"); probe random ports at
    ``at`` (its public IP) from there (node/birthday.py)."""

    at: str
    to: str


Message = (Ping | Pong | Goodbye | Whois | WhoisAnswer | Introduction | ChunkRequest
           | ConfigRequest | ConfigAnswer | ConfigDelta | AddressQuery
           | AddressAnswer | LocalEndpoints | Birthday)  # fmt: skip


def encode(message: Message) -> bytes:
    return msgpack.packb(_fields(message))


def decode(payload: bytes) -> Message:
    """The message in ``payload``; MessageError if it is not one."""
    try:
        fields = msgpack.unpackb(payload, raw=False, max_str_len=MAX_STRING,
                                 max_bin_len=MAX_MESSAGE_BYTES, max_array_len=MAX_ITEMS,
                                 max_map_len=MAX_FIELDS)  # fmt: skip
    except Exception as exc:  # msgpack raises several kinds, ValueError among them
        raise MessageError(f"not msgpack: {exc}") from None
    if not isinstance(fields, dict):
        raise MessageError("not a map")
    kind = fields.get("t")
    build = _DECODERS.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise MessageError(f"unknown kind {kind!r:.40}")
    return build(_Fields(fields))


def _fields(message: Message) -> dict:
    match message:
        case Ping(probe_id, preferred, seen, thin):
            return {"t": "ping", "i": probe_id, **({"p": 1} if preferred else {}),
                    **({"s": seen} if seen else {}), **({"r": 1} if thin else {})}  # fmt: skip
        case Pong(probe_id, seen, thin):
            return {"t": "pong", "i": probe_id, **({"s": seen} if seen else {}),
                    **({"r": 1} if thin else {})}  # fmt: skip
        case Goodbye():
            return {"t": "bye"}
        case Whois(address):
            return {"t": "whois", "a": address}
        case WhoisAnswer(address, None, _):
            return {"t": "whoisr", "a": address}
        case WhoisAnswer(address, identity, endpoints):
            return {"t": "whoisr", "a": address, "id": identity, "e": list(endpoints)}
        case Introduction(identity, endpoints):
            return {"t": "intro", "id": identity, "e": list(endpoints)}
        case ChunkRequest(message_id, indexes):
            return {"t": "chunks", "m": message_id, "i": list(indexes)}
        case ConfigRequest(network_id, revision):
            return {"t": "ncr", "n": network_id, "r": revision}
        case ConfigAnswer(network_id, _, _, str() as error):
            return {"t": "nc", "n": network_id, "err": error}
        case ConfigAnswer(network_id, config, signature, None):
            return {"t": "nc", "n": network_id, "c": config, "s": signature}
        case ConfigDelta(network_id, base, changes, signature):
            return {"t": "ncd", "n": network_id, "b": base, "d": changes, "s": signature}
        case AddressQuery(query_id):
            return {"t": "whoami", "i": query_id}
        case AddressAnswer(query_id, seen, exits, forwards):
            return {"t": "whoamir", "i": query_id, "s": seen, "x": list(exits),
                    **({} if forwards is None else {"f": int(forwards)})}  # fmt: skip
        case LocalEndpoints(endpoints, mapped, hard):
            return {"t": "here", "e": list(endpoints), **({"m": list(mapped)} if mapped else {}),
                    **({"h": 1} if hard else {})}  # fmt: skip
        case Birthday(at, to):
            return {"t": "bday", "a": at, "to": to}
    raise TypeError(f"not a control message: {type(message).__name__}")


class _Fields:
    """A decoded map, read with the type each field must have."""

    def __init__(self, fields: dict) -> None:
        self._fields = fields

    def get(self, key: str, kind: type, default: object = ...) -> object:
        value = self._fields.get(key, default)
        if value is ...:
            raise MessageError(f"no field {key!r}")
        # bool is an int to Python, but never a number here.
        wrong = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        if value is not default and wrong:
            raise MessageError(f"field {key!r} is not {kind.__name__}")
        return value

    def flag(self, key: str) -> bool:
        return bool(self._fields.get(key))

    def optional_flag(self, key: str) -> bool | None:
        """A 0/1 field that older senders leave out (None then)."""
        value = self.get(key, int, None)
        return None if value is None else bool(value)

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if not all(isinstance(v, str) for v in values):  # type: ignore[union-attr]
            raise MessageError(f"field {key!r} is not a list of strings")
        return tuple(values)  # type: ignore[arg-type]

    def numbers(self, key: str) -> tuple[int, ...]:
        values = self.get(key, list)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):  # type: ignore[union-attr]
            raise MessageError(f"field {key!r} is not a list of numbers")
        return tuple(values)  # type: ignore[arg-type]


def _config_answer(f: _Fields) -> ConfigAnswer:
    network_id = f.get("n", str)
    error = f.get("err", str, None)
    if error is not None:
        return ConfigAnswer(network_id, error=error)  # type: ignore[arg-type]
    return ConfigAnswer(network_id, f.get("c", bytes), f.get("s", bytes))  # type: ignore[arg-type]


_DECODERS = {
    "ping": lambda f: Ping(f.get("i", int), f.flag("p"), f.get("s", str, ""), f.flag("r")),
    "pong": lambda f: Pong(f.get("i", int), f.get("s", str, ""), f.flag("r")),
    "bye": lambda f: Goodbye(),
    "whois": lambda f: Whois(f.get("a", str)),
    "whoisr": lambda f: WhoisAnswer(f.get("a", str), f.get("id", str, None), f.strings("e")),
    "intro": lambda f: Introduction(f.get("id", str), f.strings("e")),
    "chunks": lambda f: ChunkRequest(f.get("m", int), f.numbers("i")),
    "ncr": lambda f: ConfigRequest(f.get("n", str), f.get("r", int)),
    "nc": _config_answer,
    "ncd": lambda f: ConfigDelta(f.get("n", str), f.get("b", int), f.get("d", bytes),
                                 f.get("s", bytes)),
    "whoami": lambda f: AddressQuery(f.get("i", int)),
    "whoamir": lambda f: AddressAnswer(f.get("i", int), f.get("s", str), f.strings("x"),
                                       f.optional_flag("f")),
    "here": lambda f: LocalEndpoints(f.strings("e"), f.strings("m"), f.flag("h")),
    "bday": lambda f: Birthday(f.get("a", str), f.get("to", str)),
}
