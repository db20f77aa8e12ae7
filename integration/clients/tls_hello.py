"""TLS client that reports how each handshake attempt ended.

Usage: tls_hello.py HOST PORT SERVER_NAME...

For each SERVER_NAME in turn, connects to HOST:PORT and starts a TLS
handshake with that server name (SNI), without verifying any certificate.
Prints one JSON line per attempt: the server name and the outcome, one of
"reset" (ECONNRESET), "eof" (the connection closed during the handshake),
"refused", "timeout", "handshake completed" or "error", with the error text.
"""

import json
import socket
import ssl
import sys


def attempt(host: str, port: int, server_name: str) -> dict:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=20) as sock:
            with context.wrap_socket(sock, server_hostname=server_name):
                return {"outcome": "handshake completed", "error": None}
    except ConnectionResetError as err:
        return {"outcome": "reset", "error": str(err)}
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as err:
        return {"outcome": "eof", "error": str(err)}
    except ConnectionRefusedError as err:
        return {"outcome": "refused", "error": str(err)}
    except TimeoutError as err:
        return {"outcome": "timeout", "error": str(err)}
    except OSError as err:
        return {"outcome": "error", "error": f"{type(err).__name__}: {err}"}


def main() -> None:
    host, port, *server_names = sys.argv[1:]
    for server_name in server_names:
        result = {"server_name": server_name, **attempt(host, int(port), server_name)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
