"""Client for the exchange fixture server.

Usage: exchange.py HOST PORT SEND_BYTES REPLY_BYTES

Sends exactly SEND_BYTES bytes: a first line with REPLY_BYTES in decimal,
padded with filler. Then shuts down the write side, reads the reply until
end-of-file and prints one JSON object: bytes sent, bytes received, and the
reply's SHA-256 in hex.
"""

import hashlib
import json
import socket
import sys


def main() -> None:
    host, port, send_bytes, reply_bytes = sys.argv[1:5]
    send_bytes = int(send_bytes)

    header = f"{int(reply_bytes)}\n".encode()
    if send_bytes < len(header):
        sys.exit(f"SEND_BYTES must be at least {len(header)}")
    request = header + b"x" * (send_bytes - len(header))

    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        digest = hashlib.sha256()
        received = 0
        while chunk := sock.recv(1 << 16):
            digest.update(chunk)
            received += len(chunk)

    result = {"sent": len(request), "received": received, "sha256": digest.hexdigest()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
