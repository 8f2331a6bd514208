"""``python -m supportbot.engine --port PORT``: serve the offline engine until Ctrl-C."""

from __future__ import annotations

import argparse

from supportbot.engine.core import DEFAULT_MODELS_FILE, OfflineEngine, load_windows
from supportbot.engine.server import bind, make_server


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m supportbot.engine", description=__doc__)
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before each chat response")
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds between streamed deltas")
    parser.add_argument("--no-usage", action="store_true", help="omit usage so clients must estimate it")
    parser.add_argument(
        "--models",
        default=str(DEFAULT_MODELS_FILE),
        help="catalog file whose model ids and context windows to serve (default: assets/models.json)",
    )
    args = parser.parse_args(argv)
    engine = OfflineEngine(
        latency_s=args.latency,
        send_usage=not args.no_usage,
        stream_delay_s=args.stream_delay,
        context_windows=load_windows(args.models),
    )
    sock = bind(args.host, args.port)
    server = make_server(engine, log_level="info")
    print(f"offline demo engine: http://{args.host}:{sock.getsockname()[1]}/v1  (Ctrl-C to stop)", flush=True)
    server.run(sockets=[sock])  # in the main thread uvicorn handles Ctrl-C itself


if __name__ == "__main__":
    main()
