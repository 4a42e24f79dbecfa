"""Send N requests at once to the local API (each on its own connection, all opened before
any answer is read, as a monitoring system and scripts firing together do) and print what
came back as JSON: {"answered": {status: count}, "failed": {reason: count}, "seconds": ...}.

Usage: python burst_requests.py PORT TOKEN N [PATH]
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter


async def one(port: int, request: bytes, answered: Counter, failed: Counter) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        parts = status_line.split()
        if len(parts) < 2:
            failed["closed without an answer"] += 1
        else:
            answered[parts[1].decode()] += 1
    except (ConnectionError, OSError) as exc:
        failed[type(exc).__name__] += 1
    except TimeoutError:
        failed["timed out"] += 1


async def burst(port: int, token: str, count: int, path: str) -> dict:
    request = (f"GET {path} HTTP/1.1\r\nX-ZT1-Auth: {token}\r\nConnection: close\r\n\r\n"
               .encode())  # fmt: skip
    answered: Counter = Counter()
    failed: Counter = Counter()
    started = time.monotonic()
    await asyncio.gather(*(one(port, request, answered, failed) for _ in range(count)))
    return {"answered": dict(answered), "failed": dict(failed),
            "seconds": round(time.monotonic() - started, 3)}  # fmt: skip


def main() -> None:
    port, token, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/status"
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    print(json.dumps(asyncio.run(burst(port, token, count, path))), flush=True)


if __name__ == "__main__":
    main()
