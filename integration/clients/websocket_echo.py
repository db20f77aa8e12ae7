"""WebSocket client for the echo endpoint, with the standard library only.

Usage: websocket_echo.py HOST PORT PATH TEXT BINARY_LEN

Sends the opening handshake (RFC 6455 section 4.1), then TEXT as one masked
text frame and BINARY_LEN bytes of a counter pattern as one masked binary
frame, reads each echo, sends a close frame and reads the close reply.
Prints one JSON object: the handshake status, whether Sec-WebSocket-Accept
was right, and for each echo its opcode, length and whether it equals what
was sent.
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
CLOSE_NORMAL = 1000


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.buffer)} of {n} bytes read")
            self.buffer += data
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed before the end of the response head")
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head

    def send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_frame(self) -> tuple[int, bytes]:
        first, second = self.read_exact(2)
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.read_exact(8))
        if second & 0x80:
            raise ValueError("the server sent a masked frame")
        return opcode, self.read_exact(length)


def main() -> None:
    host, port, path, text, binary_len = sys.argv[1:6]
    binary = bytes(i % 251 for i in range(int(binary_len)))
    key = base64.b64encode(os.urandom(16))
    expected_accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()

    with socket.create_connection((host, int(port)), timeout=30) as sock:
        connection = Connection(sock)
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        head = connection.read_head().decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        result = {
            "status": status,
            "accept_ok": headers.get("sec-websocket-accept") == expected_accept,
            "echoes": [],
        }
        if status != 101:
            print(json.dumps(result))
            return

        for opcode, payload in [(OPCODE_TEXT, text.encode()), (OPCODE_BINARY, binary)]:
            connection.send_frame(opcode, payload)
            echo_opcode, echo = connection.read_frame()
            result["echoes"].append(
                {"opcode": echo_opcode, "len": len(echo), "equal": echo == payload}
            )

        connection.send_frame(OPCODE_CLOSE, struct.pack("!H", CLOSE_NORMAL))
        opcode, payload = connection.read_frame()
        result["close_opcode"] = opcode
        result["close_code"] = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
